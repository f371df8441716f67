"""Scheduling's collections and every read and write over them.

- `venues`: venues with their rooms.
- `sessions`: the programme calendar, instants in UTC; `room_key` and `trainer_key` say what a
  session holds.
- `offerings` and `agreements`: what partners' events said (whether an offering is published and on
  which agreement, each agreement's dates and last day, and when an ended one stopped covering);
  never partners' database.
- `agreement_warnings`: one document per warning sent (`<agreement>:<last day>:<threshold>`): its
  unique _id is what sends each warning once, across replicas and sweeps. `sweeps` says which local
  day the warnings sweep last looked at.
- `locks`: one document per room and per trainer that a booking writes, so that racing bookings
  conflict in the database (see `claim`).
- `feeds`: the generation of each calendar feed that was ever rotated (`<kind>:<id>`; none: 0). Its
  token is derived from it (rules.feed_token); no token is stored.
"""
from datetime import timedelta

from pymongo import ASCENDING, IndexModel

from backbone.clock import local_midnight, utcnow
from backbone.database import new_id, one_or_404
from backbone.migrate import Migration
from backbone.errors import rule_broken
from backbone.events import is_newer
from backbone.paging import page
from services.scheduling import rules, schemas

INDEXES = {
    "venues": [IndexModel([("name", ASCENDING), ("_id", ASCENDING)])],
    "sessions": [
        IndexModel([("room_key", ASCENDING), ("starts_at", ASCENDING)]),
        IndexModel([("trainer_key", ASCENDING), ("starts_at", ASCENDING)]),
        IndexModel([("offering_id", ASCENDING), ("starts_at", ASCENDING)]),
        IndexModel([("starts_at", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("venue_id", ASCENDING), ("starts_at", ASCENDING)]),
        IndexModel([("partner_id", ASCENDING), ("starts_at", ASCENDING)]),
        # A month's calendar: the months a session takes place in (an equality, not a range).
        IndexModel([("months", ASCENDING), ("starts_at", ASCENDING)]),
        # A unit's month: `month|unit` and `month|*` (rules.calendar_keys).
        IndexModel([("calendar_keys", ASCENDING), ("starts_at", ASCENDING)]),
    ],
    "offerings": [IndexModel([("agreement_id", ASCENDING)])],
    "agreements": [IndexModel([("partner_id", ASCENDING)]), IndexModel([("last_day", ASCENDING)])],
    "agreement_warnings": [IndexModel([("agreement_id", ASCENDING), ("last_day", ASCENDING)])],
}


# -- venues -----------------------------------------------------------------------------------------

def add_venue(db, fields, now):
    """Store a new venue with its rooms; returns it."""
    venue = dict(fields, id=new_id("venue"), created_at=now)
    venue["_id"] = venue["id"]
    db.venues.insert_one(venue)
    return venue


def venue(db, venue_id):
    """The venue, or 404."""
    return one_or_404(db.venues, venue_id, "venue")


def named_venue(db, venue_id):
    """The venue a body names, or 422 `unknown_venue` (the body is wrong, not the URL)."""
    found = db.venues.find_one({"_id": venue_id})
    if found is None:
        raise rule_broken("unknown_venue", "No such venue.", {"venue_id": ["Unknown venue."]})
    return found


def venue_page(db, limit, cursor=None):
    """One page of venues by name: (venues, next_cursor)."""
    return page(db.venues, {}, ["name", "_id"], limit, cursor)


# -- calendar feeds ---------------------------------------------------------------------------------

def _feed_key(kind, target_id):
    return "{}:{}".format(kind, target_id)


def feed_generation(db, kind, target_id):
    """The feed's generation: how often it was rotated."""
    found = db.feeds.find_one({"_id": _feed_key(kind, target_id)}, {"generation": 1})
    return found["generation"] if found else 0


def rotate_feed(db, kind, target_id, now):
    """The next generation of the feed (its old token stops opening it); returns it."""
    db.feeds.update_one({"_id": _feed_key(kind, target_id)},
                        {"$inc": {"generation": 1}, "$set": {"rotated_at": now}}, upsert=True)
    return feed_generation(db, kind, target_id)


# -- sessions: reads ----------------------------------------------------------------------------------

def session(db, session_id):
    """The session, or 404."""
    return one_or_404(db.sessions, session_id, "session")


def session_in(tx, session_id):
    """The session as the transaction sees it: a change that won a race is seen here, and one that
    commits later conflicts with this transaction's write and re-runs it."""
    return tx.sessions.find_one({"_id": session_id})


def _fill_months(db):
    """Sessions stored before `months` existed get theirs."""
    for session in db.sessions.find({"months": {"$exists": False}}, {"starts_at": 1, "ends_at": 1}):
        db.sessions.update_one({"_id": session["_id"]}, {"$set": {
            "months": rules.months_of(session["starts_at"], session["ends_at"])}})


def _fill_calendar_keys(db):
    """Sessions stored before `calendar_keys` existed get theirs."""
    for session in db.sessions.find({"calendar_keys": {"$exists": False}},
                                    {"starts_at": 1, "ends_at": 1, "eligible_units": 1}):
        db.sessions.update_one({"_id": session["_id"]}, {"$set": rules.calendar_fields(
            session["starts_at"], session["ends_at"], session.get("eligible_units"))})


MIGRATIONS = [Migration("scheduling-0001-session-months", "sessions: the months they take place in", _fill_months),
              Migration("scheduling-0002-session-calendar-keys", "sessions: the months and units they are open to",
                        _fill_calendar_keys)]


def _delivered_or_hosted(partner_id):
    return {"$or": [{"partner_id": partner_id}, {"host_partner_id": partner_id}]}


def _seen_by(partner_id):
    """The sessions seen by the partner `partner_id`, or by the operator (None): all."""
    return {} if partner_id is None else _delivered_or_hosted(partner_id)


def session_page(db, seen_by, filters, during=None, open_to=None):
    """One page of the programme calendar by start time: (sessions, next_cursor). `seen_by`: the
    partner whose sessions these are (None: all); `during`: (begins, ends), sessions taking place at
    least partly in it; `filters`: `unit` (sessions naming it, and those open to every unit),
    `partner_id`, `venue_id`, `status`, and `limit` and `cursor`; `open_to`: units (a coordinator's)
    whose sessions alone are listed."""
    clauses = [_seen_by(seen_by)]
    month = rules.months_of(*during)[0] if during else None
    units = _units_asked(filters.get("unit"), open_to)
    if month and units is not None:
        # A unit's month, one index range per key (rules.calendar_keys).
        clauses.append({"calendar_keys": {"$in": sorted(rules.open_to_key(month, unit) for unit in units | {None})}})
    else:
        if month:
            clauses.append({"months": month})
        if "unit" in filters:
            clauses.append({"$or": [{"eligible_units": filters["unit"]}, {"eligible_units": []}]})
        if open_to is not None:
            clauses.append({"$or": [{"eligible_units": {"$in": list(open_to)}}, {"eligible_units": []}]})
    clauses.extend({key: filters[key]} for key in ("partner_id", "venue_id", "status") if key in filters)
    return page(db.sessions, _side_by_side(clauses), ["starts_at", "_id"], filters["limit"], filters.get("cursor"))


def _units_asked(unit, open_to):
    """The units whose sessions (with those open to every unit) a unit filter and a coordinator's
    units ask for, or None when that is not one set (no unit asked, or one outside `open_to`)."""
    if open_to is None:
        return None if unit is None else {unit}
    if unit is None:
        return set(open_to)
    return {unit} if unit in open_to else None


def _side_by_side(clauses):
    """The clauses as one document when no field repeats (SecantusDB's planner uses an index for the
    fields of one document, and scans for the same fields inside an $and), else their $and."""
    merged = {}
    for clause in clauses:
        if set(clause) & set(merged):
            return {"$and": clauses}
        merged.update(clause)
    return merged


def venue_sessions(db, venue_id, seen_by):
    """Every session at the venue that `seen_by` sees (see `session_page`), by start time."""
    return db.sessions.find({"$and": [_seen_by(seen_by), {"venue_id": venue_id}]}).sort("starts_at")


def partner_sessions(db, partner_id):
    """Every session the partner delivers or hosts, by start time."""
    return db.sessions.find(_delivered_or_hosted(partner_id)).sort("starts_at")


def offering(db, offering_id):
    """What partners told us of the offering, or None."""
    return db.offerings.find_one({"_id": offering_id})


# -- sessions: writes -------------------------------------------------------------------------------

def claim(tx, session):
    """Book `session`'s offering, room and trainer inside the transaction `tx`, or raise the refusal.

    Each claim writes a document before it reads (the offering, then one lock document per room and
    per trainer), so two bookings racing for any of them write-conflict in the database: one commits
    and the transaction re-runs the other, which then sees the winner. Without those writes both
    could read "free" and both commit. Withdrawing an offering or ending its agreement writes the
    offering too, so no session slips in beside a withdrawal."""
    tx.offerings.update_one({"_id": session["offering_id"]}, {"$inc": {"bookings": 1}})
    refusal = rules.offering_refusal(tx.offerings.find_one({"_id": session["offering_id"]}), session)
    if refusal:
        raise refusal
    for key in ("room_key", "trainer_key"):
        tx.locks.update_one({"_id": "{}:{}".format(key, session[key])}, {"$inc": {"v": 1}}, upsert=True)
    for key, field in (("room_key", "room"), ("trainer_key", "trainer")):
        # [a, b) and [c, d) overlap when a < d and c < b: a session may start as another ends.
        other = tx.sessions.find_one({
            key: session[key], "status": "scheduled", "_id": {"$ne": session["id"]},
            "starts_at": {"$lt": session["ends_at"]}, "ends_at": {"$gt": session["starts_at"]}})
        if other:
            raise rules.double_booking(field, session, other)


def add_session(tx, session):
    """Store a new session (once `claim` has booked it)."""
    tx.sessions.insert_one(session)


def move_session(tx, latest, change, now):
    """Move the session (`latest`, as the transaction sees it) as `change` says, claiming its room and
    trainer at the new times; returns it as it is now."""
    moved = dict(latest, **change, updated_at=now, sequence=latest["sequence"] + 1, revision=next_revision(latest))
    claim(tx, moved)
    tx.sessions.update_one({"_id": latest["_id"]}, {"$set": dict(change, updated_at=now),
                                                    "$inc": {"sequence": 1, "revision": 1}})
    return moved


def resize_session(tx, latest, capacity, now):
    """Set the session's seats; returns it as it is now."""
    tx.sessions.update_one({"_id": latest["_id"]}, {"$set": {"capacity": capacity, "updated_at": now},
                                                    "$inc": {"revision": 1}})
    return dict(latest, capacity=capacity, updated_at=now, revision=next_revision(latest))


def next_revision(latest):
    """The session's revision after one more change (`latest` as the transaction read it; a session
    stored before revisions were counted has none, and $inc starts it at 1)."""
    return latest.get("revision", 0) + 1


def cancel_sessions(tx, query, reason, cause):
    """Cancel the scheduled sessions matching `query`, each with its session_cancelled event; their
    rooms and trainers are free again. `cause`: who or what cancelled (`cancelled` by a person,
    `offering_withdrawn`, `agreement_expired`, `agreement_terminated`). Returns them as they are now."""
    now = utcnow()
    change = {"status": "cancelled", "cancel_reason": reason, "cancel_cause": cause, "cancelled_at": now,
              "updated_at": now}
    cancelled = []
    for found in tx.sessions.find(dict(query, status="scheduled")):
        tx.sessions.update_one({"_id": found["_id"]}, {"$set": change, "$inc": {"sequence": 1, "revision": 1}})
        found.update(change, sequence=found["sequence"] + 1, revision=next_revision(found))
        tx.emit("session_cancelled", schemas.cancelled_payload(found, reason, cause))
        cancelled.append(found)
    return cancelled


def cancel_session(tx, session_id, reason):
    """Cancel one session at a person's request."""
    return cancel_sessions(tx, {"_id": session_id}, reason, "cancelled")


# -- what partners tell us ------------------------------------------------------------------------------

def remember_offering(tx, payload):
    """Keep (or refresh) our copy of a published offering, unless it was withdrawn (for good). Its
    agreement may have ended before this event arrived (events can overtake each other): then the
    copy starts with that end. An offering_updated older than our copy (by `revision`) changes nothing."""
    known = tx.offerings.find_one({"_id": payload["offering_id"]}, {"status": 1, "revision": 1})
    if known and rules.withdrawal_is_final(known.get("status")):
        return
    if known and not is_newer(known.get("revision"), payload.get("revision")):
        return  # an older version than our copy's (retried or redelivered late): ours stays
    agreement = tx.agreements.find_one({"_id": payload["agreement_id"]}) if payload["agreement_id"] else None
    tx.offerings.update_one({"_id": payload["offering_id"]}, {"$set": {
        "partner_id": payload["partner_id"], "agreement_id": payload["agreement_id"],
        "title": payload["title"], "audience_groups": payload["audience_groups"], "status": "published",
        "starts_from": payload["starts_from"].isoformat(), "ends_by": payload["ends_by"].isoformat(),
        "covered_until": (agreement or {}).get("ends_at"), "revision": payload.get("revision")}}, upsert=True)


def remember_agreement(tx, payload, as_of, terminated_on=None):
    """Keep our copy of an agreement as the newest event about it says: partner, title, dates and
    its last day. `as_of`: when the event was written; an older event arriving late changes nothing
    (an amendment overtaken by the expiry it led to, a signing by its amendment). Returns the copy."""
    known = tx.agreements.find_one({"_id": payload["agreement_id"]})
    if known and known.get("as_of") and known["as_of"] > as_of:
        return known
    fields = {"partner_id": payload["partner_id"], "title": payload["title"],
              "valid_from": payload["valid_from"].isoformat(), "valid_until": payload["valid_until"].isoformat(),
              "last_day": rules.last_day(payload["valid_until"], terminated_on).isoformat(), "as_of": as_of}
    if terminated_on is not None:
        fields["terminated_on"] = terminated_on.isoformat()
    tx.agreements.update_one({"_id": payload["agreement_id"]}, {"$set": fields}, upsert=True)
    return dict(known or {"_id": payload["agreement_id"]}, **fields)


def withdraw_offering(tx, offering_id, partner_id, reason, now):
    """Mark the offering withdrawn and cancel its sessions still to come (after `now`)."""
    tx.offerings.update_one({"_id": offering_id}, {"$set": {"status": "withdrawn", "partner_id": partner_id}},
                            upsert=True)
    return cancel_sessions(tx, {"offering_id": offering_id, "starts_at": {"$gt": now}}, reason, "offering_withdrawn")


def end_agreement(tx, agreement_id, partner_id, ends_at, reason, cause, now, offering_ids=None):
    """From `ends_at` the agreement covers nothing: the offerings it still carried may not have
    sessions ending later, and their scheduled sessions that start later (and are still to come) are
    cancelled with `reason`. `offering_ids`: the offerings partners says it carried when it ended
    (an offering moved onto a renewal is not among them, whether or not we heard of the move yet);
    None (an event from before partners said so): those our copy has on it."""
    # $min: an agreement that is terminated and later also expires ends at the earlier time.
    tx.agreements.update_one({"_id": agreement_id}, {
        "$min": {"ends_at": ends_at}, "$set": {"partner_id": partner_id, "ended": True}}, upsert=True)
    if offering_ids is None:
        offering_ids = [o["_id"] for o in tx.offerings.find({"agreement_id": agreement_id}, {"_id": 1})]
    # Only copies still on this agreement: one we already know moved on is covered by its new one.
    # Not $min here: an offering covered without end has covered_until None, which sorts first.
    tx.offerings.update_many(
        {"_id": {"$in": offering_ids}, "agreement_id": agreement_id,
         "$or": [{"covered_until": None}, {"covered_until": {"$gt": ends_at}}]},
        {"$set": {"covered_until": ends_at}})
    return cancel_sessions(
        tx, {"offering_id": {"$in": offering_ids}, "starts_at": {"$gte": rules.first_lost_start(ends_at, now)}},
        reason, cause)


# -- agreements about to end: the warnings ----------------------------------------------------------

def agreements_ending(db, today, horizon):
    """Our copies of the agreements not ended whose last day is from `today` to `horizon` (dates)."""
    return list(db.agreements.find({"ended": {"$ne": True}, "last_day": {
        "$gte": today.isoformat(), "$lte": horizon.isoformat()}}).sort([("last_day", ASCENDING), ("_id", ASCENDING)]))


def partner_agreements(db, partner_id):
    """Our copies of every agreement of the partner."""
    return list(db.agreements.find({"partner_id": partner_id}))


def _warning_key(agreement_id, last_day, threshold):
    return "{}:{}:{}".format(agreement_id, last_day, threshold)


def warned(db, agreement_id, last_day):
    """The thresholds already warned of for the agreement ending on `last_day` (an ISO day)."""
    return {doc["threshold"] for doc in db.agreement_warnings.find(
        {"agreement_id": agreement_id, "last_day": last_day}, {"threshold": 1})}


def record_warning(tx, agreement, threshold, today, now):
    """Record the warning of `threshold` for the agreement's current last day. Raises
    DuplicateKeyError when it was recorded already (by another replica, or an earlier sweep)."""
    tx.agreement_warnings.insert_one({
        "_id": _warning_key(agreement["_id"], agreement["last_day"], threshold), "agreement_id": agreement["_id"],
        "partner_id": agreement["partner_id"], "last_day": agreement["last_day"], "threshold": threshold,
        "day": today.isoformat(), "at": now})


def carried_offerings(tx, agreement_id, today):
    """Our copies of the published offerings on the agreement whose window has not ended by `today`."""
    return list(tx.offerings.find({"agreement_id": agreement_id, "status": "published",
                                   "ends_by": {"$gte": today.isoformat()}}).sort([("starts_from", ASCENDING), ("_id", ASCENDING)]))


def sessions_after(tx, offering_ids, last_day):
    """The scheduled sessions of these offerings that start after the local day `last_day` (a date)."""
    return list(tx.sessions.find({
        "offering_id": {"$in": offering_ids}, "status": "scheduled",
        "starts_at": {"$gte": local_midnight(last_day + timedelta(days=1))}}).sort("starts_at"))


def note_swept(db, today, now):
    """Record the local day the warnings sweep last looked at (what operators and tests read)."""
    db.sweeps.update_one({"_id": "agreement-warnings"}, {"$set": {"day": today.isoformat(), "at": now}}, upsert=True)


def last_swept(db):
    """The local day (ISO) the warnings sweep last looked at, or None."""
    found = db.sweeps.find_one({"_id": "agreement-warnings"})
    return found["day"] if found else None
