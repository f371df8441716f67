"""Scheduling's database: the indexes, how a booking claims its offering, room and trainer so that
nothing is booked twice, how sessions are cancelled, and the shapes that leave the service."""
import base64
import binascii
import unicodedata
from datetime import date, datetime, time, timedelta, timezone

from bson import json_util
from bson.errors import BSONError
from pymongo import ASCENDING, IndexModel

from backbone.errors import conflict, invalid, rule_broken
from backbone.clock import utcnow
from services.scheduling.calendars import LOCAL

INDEXES = {
    "venues": [IndexModel([("name", ASCENDING), ("_id", ASCENDING)])],
    "sessions": [
        IndexModel([("room_key", ASCENDING), ("starts_at", ASCENDING)]),
        IndexModel([("trainer_key", ASCENDING), ("starts_at", ASCENDING)]),
        IndexModel([("offering_id", ASCENDING), ("starts_at", ASCENDING)]),
        IndexModel([("starts_at", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("venue_id", ASCENDING), ("starts_at", ASCENDING)]),
        IndexModel([("partner_id", ASCENDING), ("starts_at", ASCENDING)]),
    ],
    "offerings": [IndexModel([("agreement_id", ASCENDING)])],
}


# -- time -----------------------------------------------------------------------------------------

def local_midnight(day):
    """The instant (UTC) a local calendar day begins in Ho Chi Minh City."""
    return datetime.combine(day, time(), LOCAL).astimezone(timezone.utc)


def month_span(month):
    """`2025-03` → the instants (UTC) that month begins and ends in Ho Chi Minh City."""
    year, number = (int(part) for part in month.split("-"))
    return local_midnight(date(year, number, 1)), local_midnight(date(year + number // 12, number % 12 + 1, 1))


def in_utc(moment):
    return moment.astimezone(timezone.utc)


def utc_parts(parts):
    return [{"starts_at": in_utc(part["starts_at"]), "ends_at": in_utc(part["ends_at"])} for part in parts]


def trainer_key(name):
    """One trainer however the name is spaced, cased or its Vietnamese accents encoded (composed or
    not), so a double booking is not missed by a typing difference."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def shown(moment):
    return moment.astimezone(LOCAL).strftime("%d/%m/%Y %H:%M")


# -- booking ----------------------------------------------------------------------------------------

def not_published():
    return rule_broken("offering_not_published", "The offering is not published.",
                       {"offering_id": ["Unknown or not published."]})


def offering_refusal(offering, session):
    """Why `offering` cannot have `session`, as the error to raise, or None."""
    if offering is None or offering["status"] != "published":
        return not_published()
    opens = local_midnight(date.fromisoformat(offering["starts_from"]))
    closes = local_midnight(date.fromisoformat(offering["ends_by"]) + timedelta(days=1))
    if session["starts_at"] < opens or session["ends_at"] > closes:
        return rule_broken(
            "outside_offering_dates",
            "The offering runs from {} to {}.".format(offering["starts_from"], offering["ends_by"]),
            {"starts_at": ["Outside the offering's dates."]})
    covered_until = offering.get("covered_until")
    if covered_until and session["ends_at"] > covered_until:
        return rule_broken(
            "no_active_agreement",
            "The agreement covering this offering ended at {}.".format(shown(covered_until)),
            {"starts_at": ["After the offering's agreement ended."]})
    if not set(session["audience_groups"]) <= set(offering["audience_groups"]):
        return rule_broken(
            "audience_not_offered", "The offering is for {}.".format(", ".join(offering["audience_groups"])),
            {"audience_groups": ["Not an audience of the offering."]})
    return None


def claim(tx, session):
    """Book `session`'s offering, room and trainer inside the transaction `tx`, or raise the refusal.

    Each claim writes a document before it reads (the offering, then one lock document per room and
    per trainer), so two bookings racing for any of them write-conflict in the database: one commits
    and the transaction re-runs the other, which then sees the winner. Without those writes both
    could read "free" and both commit. Withdrawing an offering or ending its agreement writes the
    offering too, so no session slips in beside a withdrawal."""
    tx.offerings.update_one({"_id": session["offering_id"]}, {"$inc": {"bookings": 1}})
    refusal = offering_refusal(tx.offerings.find_one({"_id": session["offering_id"]}), session)
    if refusal:
        raise refusal
    for key in ("room_key", "trainer_key"):
        tx.locks.update_one({"_id": "{}:{}".format(key, session[key])}, {"$inc": {"v": 1}}, upsert=True)
    for key, field, code in (("room_key", "room", "room_conflict"),
                             ("trainer_key", "trainer", "trainer_conflict")):
        # [a, b) and [c, d) overlap when a < d and c < b: a session may start as another ends.
        other = tx.sessions.find_one({
            key: session[key], "status": "scheduled", "_id": {"$ne": session["id"]},
            "starts_at": {"$lt": session["ends_at"]}, "ends_at": {"$gt": session["starts_at"]}})
        if other:
            booked = "Booked by session {} ({}), {} to {}.".format(
                other["_id"], other["title"], shown(other["starts_at"]), shown(other["ends_at"]))
            raise conflict(code, "The {} {} is taken. {}".format(field, session[field], booked),
                           {field: [booked], "other_session_id": [other["_id"]]})


def cancel_sessions(tx, query, reason, cause):
    """Cancel the scheduled sessions matching `query`, each with its session_cancelled event; their
    rooms and trainers are free again. `cause`: who or what cancelled (`cancelled` by a person,
    `offering_withdrawn`, `agreement_expired`, `agreement_terminated`). Returns them as they are now."""
    now = utcnow()
    change = {"status": "cancelled", "cancel_reason": reason, "cancel_cause": cause, "cancelled_at": now,
              "updated_at": now}
    cancelled = []
    for session in tx.sessions.find(dict(query, status="scheduled")):
        tx.sessions.update_one({"_id": session["_id"]}, {"$set": change, "$inc": {"sequence": 1}})
        session.update(change, sequence=session["sequence"] + 1)
        tx.emit("session_cancelled", {
            "session_id": session["id"], "offering_id": session["offering_id"],
            "partner_id": session["partner_id"], "starts_at": session["starts_at"], "reason": reason,
            "cause": cause})
        cancelled.append(session)
    return cancelled


# -- what leaves the service ------------------------------------------------------------------------

def public_session(doc):
    return {k: doc.get(k) for k in (
        "id", "offering_id", "partner_id", "title", "venue_id", "venue_name", "address", "room", "trainer",
        "starts_at", "ends_at", "parts", "capacity", "eligible_units", "audience_groups",
        "registration_closes_at", "status", "cancel_reason", "cancelled_at")}


def public_venue(doc):
    return {k: doc.get(k) for k in ("id", "name", "address", "host_partner_id", "rooms")}


def event_payload(session):
    """The session as the session_scheduled / session_rescheduled contract carries it."""
    payload = {k: session[k] for k in (
        "offering_id", "partner_id", "title", "venue_id", "venue_name", "address", "room", "trainer",
        "starts_at", "ends_at", "parts", "capacity", "eligible_units", "audience_groups",
        "registration_closes_at")}
    payload["session_id"] = session["id"]
    return payload


# -- paging -----------------------------------------------------------------------------------------

def page(collection, query, key, limit, cursor=None):
    """One page of `query` in (`key`, _id) order, and the cursor of the next page (None at the end).
    The cursor holds where the page ended, so rows added meanwhile neither repeat nor go missing."""
    if cursor:
        after, after_id = read_cursor(cursor)
        query = {"$and": [query, {"$or": [{key: {"$gt": after}}, {key: after, "_id": {"$gt": after_id}}]}]}
    docs = list(collection.find(query).sort([(key, ASCENDING), ("_id", ASCENDING)]).limit(limit + 1))
    if len(docs) <= limit:
        return docs, None
    last = docs[limit - 1]
    return docs[:limit], base64.urlsafe_b64encode(json_util.dumps([last[key], last["_id"]]).encode()).decode()


def read_cursor(cursor):
    try:
        after, after_id = json_util.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, TypeError, BSONError):
        after = after_id = None
    # Only plain values: a cursor is client input and must not smuggle an operator into the query.
    if not (isinstance(after, (str, datetime)) and isinstance(after_id, str)):
        raise invalid({"cursor": ["Not a cursor of this list."]})
    return after, after_id
