"""Registration's collections: units, officials, its copy of the sessions (with the seat, quota and
waitlist counters), registrations, attendance, certificates and the history of merges. Every read
and write of them is here, named for what it does; the rules decide (`rules`), these carry it out,
and the writes that publish take the transaction (`tx`) and emit their events in it."""
import re
import time
from collections import defaultdict
from datetime import timedelta

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne, UpdateOne
from pymongo.errors import DuplicateKeyError

from backbone.clock import local_date, utcnow
from backbone.database import new_id, one_or_404
from backbone.migrate import Migration
from backbone.outbox import pending_events, published_after
from backbone.errors import conflict
from backbone.events import is_newer
from backbone.paging import page
from services.registration import certificates, coverage, reorganisation, reports, rules
from services.registration.schemas import session_ref

INDEXES = {
    "units": [],  # _id is the code
    "officials": [
        IndexModel([("email", ASCENDING)], unique=True),
        IndexModel([("phone", ASCENDING)], unique=True),
        IndexModel([("unit_code", ASCENDING)]),
        # Search: the words of name, email and phone (multikey), matched by prefix as an index range
        # (one-word and contact queries); a name's keys (`rules.search_keys`) for name queries.
        IndexModel([("search_words", ASCENDING)]),
        IndexModel([("search_keys", ASCENDING)]),
        # Officials whose share of coverage's read model is to be worked out again (sparse: few).
        IndexModel([("coverage_stale", ASCENDING)], sparse=True),
    ],
    # Few indexes: every index is rewritten on every registration. "One registration per official
    # per session" is the _id (derived from both), and the QR token carries the registration's id,
    # so neither needs an index of its own.
    "registrations": [
        # The waitlist in order, and the per-status listings of a session.
        IndexModel([("session_id", ASCENDING), ("status", ASCENDING), ("waitlist_position", ASCENDING)]),
        # An official's registrations: their record, and their share of coverage's read model.
        IndexModel([("official_id", ASCENDING)]),
    ],
    # A coordinator is found by its token's digest (each request it sends) and listed by unit.
    "coordinators": [
        IndexModel([("token_digest", ASCENDING)], unique=True),
        IndexModel([("unit_codes", ASCENDING)]),
    ],
    # By month (an operator's coverage), by unit (a coordinator's: its units' counters only).
    "coverage_counters": [IndexModel([("month", ASCENDING)]), IndexModel([("unit", ASCENDING)])],
    # The read models' fold reads registration's events from a checkpoint (fold_read_models): written
    # by the relay, after the fact, never by a registration's transaction.
    "published_events": [IndexModel([("published_at", ASCENDING)])],
    # By kind (an operator's report reads one kind: per session, or per unit and partner), by unit
    # (a coordinator's: its units' counters).
    "report_counters": [IndexModel([("kind", ASCENDING)]), IndexModel([("unit", ASCENDING)])],
    # attendance: _id "<registration_id>:<part>" is what makes a repeated check-in the same one.
    # certificates: _id is the verification code.
}


def _fill_search_words(db):
    """Officials stored before search words existed get theirs (a page of ids at a time)."""
    last = ""
    while True:
        batch = list(db.officials.find({"_id": {"$gt": last}, "search_words": {"$exists": False}},
                                       {"search": 1}).sort("_id", ASCENDING).limit(1000))
        if not batch:
            return
        db.officials.bulk_write([UpdateOne({"_id": o["_id"]}, {"$set": {
            "search_words": rules.search_words(o.get("search") or "")}}) for o in batch], ordered=False)
        last = batch[-1]["_id"]


def _fill_search_keys(db):
    """Officials stored before name queries read keys get their name's words and keys (an erased
    official has none: their name is gone). One pass, written a thousand at a time: SecantusDB scans
    the collection for a range of the _id, so paging by _id would scan it once per page. Each write
    costs what an official's edit does (2-6 ms on the loaded 2-core test machine: 250,000 officials
    take 10-25 minutes, once, before the new version serves)."""
    writes = []
    for official in db.officials.find({"search_keys": {"$exists": False}}, {"full_name": 1, "erasure": 1}):
        words = [] if official.get("erasure") else rules.name_words(official.get("full_name") or "")
        # Still without keys: an edit made since they were read wrote the new name's.
        writes.append(UpdateOne({"_id": official["_id"], "search_keys": {"$exists": False}}, {"$set": {
            "name_words": words, "search_keys": rules.search_keys(words)}}))
        if len(writes) == 1000:
            db.officials.bulk_write(writes, ordered=False)
            writes = []
    if writes:
        db.officials.bulk_write(writes, ordered=False)


MIGRATIONS = [
    Migration("registration-0001-official-search-words", "officials: search_words for the search index",
              _fill_search_words),
    Migration("registration-0002-official-search-keys", "officials: name_words and search_keys for name queries",
              _fill_search_keys),
]


# -- sessions (registration's copy of scheduling's) ------------------------------------------------------------

def find_session(db, session_id):
    """The session, or 404."""
    return one_or_404(db.sessions, session_id, "session")


def heard_session(tx, session_id):
    """The session an event of scheduling's is about; one not heard of yet (events overtaking each
    other) raises LookupError, so the event is retried, then dead-lettered."""
    session = tx.sessions.find_one({"_id": session_id})
    if session is None:
        raise LookupError("session {} not known yet".format(session_id))
    return session


def session_counters(db, session_id):
    """The session's seat, quota and waitlist counters, or None for a session not heard of."""
    return db.sessions.find_one({"_id": session_id})


def upcoming_sessions(db, now):
    """Scheduled sessions that have not started, with their counters."""
    return list(db.sessions.find({"status": "scheduled", "starts_at": {"$gte": now}},
                                 {"seats_taken": 1, "waitlist_length": 1, "capacity": 1}))


def over_capacity_sessions(db):
    """Scheduled sessions whose capacity fell below their confirmed seats, soonest first."""
    return list(db.sessions.find({"over_capacity": {"$gt": 0}, "status": "scheduled"}).sort("starts_at"))


SESSION_FIELDS = ("offering_id", "partner_id", "title", "venue_name", "address", "room", "starts_at", "ends_at",
                  "parts", "capacity", "audience_groups", "registration_closes_at")
MOVED_FIELDS = ("title", "venue_name", "address", "room", "starts_at", "ends_at", "parts", "registration_closes_at")
# The parts of the copy that scheduling's state-carrying events set, each with the session revision
# that last set it: a reschedule sets the time and place, a resize the seats. Kept per part because a
# resize (revision 3) overtaken by an older reschedule (revision 2) must still let that reschedule's
# time in, while a second, older reschedule must not undo a newer one.
SESSION_PARTS = ("time", "capacity")


def newer_for(session, part, revision):
    """Whether an event of `revision` may set `part` of our copy (backbone.events.is_newer)."""
    return is_newer((session.get("revisions") or {}).get(part), revision)


def remember_session(tx, scheduled, eligible_units):
    """Keep a copy of a scheduled session (once: a repeated event changes nothing), with no seat taken."""
    session = {k: scheduled[k] for k in SESSION_FIELDS}
    session.update(eligible_units=eligible_units, status="scheduled", seats_taken=0, waitlist_length=0,
                   waitlist_next=0, quotas={}, unit_seats={},
                   revisions={part: scheduled.get("revision") for part in SESSION_PARTS})
    tx.sessions.update_one({"_id": scheduled["session_id"]}, {"$setOnInsert": session}, upsert=True)


def live_registrations(tx, session_id):
    return tx.registrations.find({"session_id": session_id, "status": {"$in": list(rules.LIVE)}})


def move_session(tx, rescheduled):
    """Move the copy; every live registration stays and `registration_rescheduled` tells its official."""
    session_id = rescheduled["session_id"]
    moved = {k: rescheduled[k] for k in MOVED_FIELDS}
    session = heard_session(tx, session_id)
    if not newer_for(session, "time", rescheduled.get("revision")):
        return False  # an older time than ours, retried or redelivered: nobody is told of it
    tx.sessions.update_one({"_id": session_id}, {"$set": dict(moved, **{"revisions.time": rescheduled.get("revision")})})
    session.update(moved)
    for registration in live_registrations(tx, session_id):
        tx.emit("registration_rescheduled", {
            "registration_id": registration["_id"], "session": session_ref(session),
            "official": registration["official"], "status": registration["status"],
            "previous_starts_at": rescheduled.get("previous_starts_at"),
            "previous_ends_at": rescheduled.get("previous_ends_at")})
    return True


def resize_session(tx, session_id, capacity, revision=None):
    """A new capacity: the excess over it is recorded (nobody is dropped), free seats promote. One
    older than the capacity we have (`revision`) changes nothing (False)."""
    session = heard_session(tx, session_id)
    if not newer_for(session, "capacity", revision):
        return False
    over = rules.over_capacity(session["seats_taken"], capacity)
    tx.sessions.update_one({"_id": session_id}, {"$set": {"capacity": capacity, "over_capacity": over,
                                                          "revisions.capacity": revision}})
    promote(tx, session_id)
    return True


def cancel_session(tx, session_id, reason, now):
    """The session is cancelled and so is each of its live registrations, each with its event."""
    session = heard_session(tx, session_id)
    tx.sessions.update_one({"_id": session_id}, {"$set": {
        "status": "cancelled", "cancel_reason": reason, "cancelled_at": now}})
    for registration in live_registrations(tx, session_id):
        tx.registrations.update_one({"_id": registration["_id"]}, {"$set": rules.cancellation(
            registration["status"], reason, "session_cancelled", now)})
        tx.emit("registration_cancelled", {
            "registration_id": registration["_id"], "session": session_ref(session),
            "official": registration["official"], "reason": reason, "cause": "session_cancelled"})


def set_quotas(tx, session_id, quotas):
    """Set (or, for 0, remove) units' quotas on a session; a raised quota promotes from the waitlist."""
    change = {"$set": {}, "$unset": {}}
    for code, seats in quotas.items():
        key = "quotas." + rules.unit_key(code)
        if seats:
            change["$set"][key] = seats
        else:
            change["$unset"][key] = ""
    tx.sessions.update_one({"_id": session_id}, {k: v for k, v in change.items() if v})
    promote(tx, session_id)


# -- seats and the waitlist ------------------------------------------------------------------------------------

def seat_filter(session_id, unit_code):
    """The session, only while `rules.seat_free` holds for `unit_code`. `$expr` reads capacity and
    quota from the document itself, so a concurrent capacity change is respected: the database
    decides, never a value read earlier."""
    key = rules.unit_key(unit_code)
    under_quota = {"$lt": [{"$ifNull": ["$unit_seats." + key, 0]}, {"$ifNull": ["$quotas." + key, rules.NO_QUOTA]}]}
    return {"_id": session_id, "status": "scheduled",
            "$expr": {"$and": [{"$lt": ["$seats_taken", "$capacity"]}, under_quota]}}


def take_seat(tx, session_id, unit_code):
    """One seat for an official of `unit_code`, atomically; True if taken."""
    return bool(tx.sessions.update_one(
        seat_filter(session_id, unit_code),
        {"$inc": {"seats_taken": 1, "unit_seats." + rules.unit_key(unit_code): 1}}).modified_count)


def free_seat(tx, session_id, unit_code):
    tx.sessions.update_one({"_id": session_id},
                           {"$inc": {"seats_taken": -1, "unit_seats." + rules.unit_key(unit_code): -1}})


def first_waitlisted(tx, session_id, except_units):
    """The waitlisted registration with the lowest position whose unit is not in `except_units`, as
    a list of at most one."""
    query = {"session_id": session_id, "status": "waitlisted"}
    if except_units:
        query["unit_code"] = {"$nin": except_units}
    return list(tx.registrations.find(query).sort("waitlist_position", ASCENDING).limit(1))


def promote(tx, session_id):
    """Fill free seats from the waitlist (`rules.promoted_next`), each seat taken with the same
    conditional update as a registration, each promotion published. Returns how many were promoted."""
    promoted = 0
    while True:
        session = tx.sessions.find_one({"_id": session_id})
        if not rules.has_open_seat(session):
            return promoted
        candidate = rules.promoted_next(session, first_waitlisted(tx, session_id, rules.full_units(session)))
        if candidate is None or not take_seat(tx, session_id, candidate["unit_code"]):
            return promoted
        tx.sessions.update_one({"_id": session_id}, {"$inc": {"waitlist_length": -1}})
        tx.registrations.update_one({"_id": candidate["_id"]}, {
            "$set": {"status": "confirmed", "promoted": True}, "$unset": {"waitlist_position": ""}})
        tx.emit("registration_promoted", {
            "registration_id": candidate["_id"], "session": session_ref(session),
            "official": candidate["official"], "qr_token": candidate["qr_token"]})
        promoted += 1


# -- units ----------------------------------------------------------------------------------------------------

def find_unit(db, code):
    return db.units.find_one({"_id": code})


def units_by_code(db, codes):
    return {u["_id"]: u for u in db.units.find({"_id": {"$in": list(codes)}})}


def all_units(db):
    return list(db.units.find({}).sort("_id", ASCENDING))


def units_page(db, status=None, kind=None, q=None, limit=50, cursor=None):
    """One page of units by code: (units, next_cursor). `status` active|dissolved; `q` words of the
    name or code, accents and case ignored."""
    clauses = []
    if status == "active":
        clauses.append({"status": "active"})
    elif status == "dissolved":
        clauses.append({"status": {"$in": ["dissolved", "merged"]}})
    if kind:
        clauses.append({"kind": kind})
    clauses += words_query(q, "search")
    return page(db.units, {"$and": clauses} if clauses else {}, ["_id"], limit, cursor)


def successors_map(db):
    """{code: successors' codes} of every dissolved unit."""
    return {u["_id"]: rules.successors_of(u) for u in db.units.find(
        {"status": {"$in": ["dissolved", "merged"]}}, {"successors": 1, "merged_into": 1})}


def unit_record(fields, now):
    """A unit as stored: its code its key, active unless said otherwise, with its search text."""
    unit = dict({"status": "active", "successors": [], "predecessors": []}, **fields)
    unit.update(_id=fields["code"], created_at=now, search=rules.unit_search_text(fields))
    return unit


def insert_unit(db, unit):
    """Store a new unit; 409 `unit_exists` for a known code."""
    try:
        db.units.insert_one(unit)
    except DuplicateKeyError:
        raise conflict("unit_exists", "Unit {} exists.".format(unit["code"]), {"code": ["Already taken."]})


def load_map(db, units, now):
    """Store the units of the map that are not known yet. A unit known already is left as it is (a
    later reorganisation may have changed it): loading twice changes nothing. Returns how many were
    new and how many known."""
    known = {u["_id"] for u in db.units.find({"_id": {"$in": [u["code"] for u in units]}}, {"_id": 1})}
    new = [unit_record(u, now) for u in units if u["code"] not in known]
    for unit in new:
        for successor in unit["successors"]:
            db.units.update_one({"_id": successor}, {"$addToSet": {"predecessors": unit["code"]}})
    if new:
        db.units.insert_many(new, ordered=False)
    for unit in units:
        # A unit loaded by an earlier map without positions gets its place, once.
        if unit["code"] in known and unit.get("position"):
            db.units.update_one({"_id": unit["code"], "position": None}, {"$set": {"position": unit["position"]}})
        # A unit of today loaded before the history learns its predecessors now.
        if unit["code"] in known and unit.get("successors"):
            db.units.update_many({"_id": {"$in": unit["successors"]}}, {"$addToSet": {"predecessors": unit["code"]}})
    return {"created": len(new), "known": len(known)}


def set_headcount(db, code, audience_group, staff):
    """The declared number of officials of a group in a unit (coverage counts against it)."""
    db.units.update_one({"_id": code}, {"$set": {"headcount." + audience_group: staff}})


def reorganize(tx, steps, effective_on, now):
    """Apply a checked plan (`reorganisation.plan`) in one transaction. Dissolved units stay for
    history (status `dissolved`, `valid_until`, `successors`); made units begin on `effective_on`;
    officials move (a split as told, the rest listed to reassign); live and past registrations move
    their current unit and keep the one they were made under (`unit_code_then`); sessions' eligible
    units, seat counts and quotas follow (a split unit's quota is dropped and listed: how to divide it
    is the operator's call). Publishes `units_reorganized`. Returns what changed."""
    until = (effective_on - timedelta(days=1)).isoformat()
    summary = {"changes": [], "officials_moved": 0, "to_reassign": [], "quotas_dropped": []}
    for step in steps:
        olds, codes = step["from"], [u["code"] for u in step["into"]]
        for new in step["into"]:
            if step["kind"] == reorganisation.ABSORB:
                tx.units.update_one({"_id": new["code"]}, {"$addToSet": {"predecessors": {"$each": olds}}})
            else:
                tx.units.insert_one(unit_record(dict(new, valid_from=effective_on.isoformat(), predecessors=olds), now))
        tx.units.update_many({"_id": {"$in": olds}}, {"$set": {
            "status": "dissolved", "valid_until": until, "successors": codes, "dissolved_at": now}})
        tx.units.update_many({"parent_code": {"$in": olds}}, {"$set": {"parent_code": codes[0]}})
        for code in olds:  # what a registration was made under stays, whatever moves next
            tx.registrations.update_many({"unit_code": code, "unit_code_then": {"$exists": False}},
                                         {"$set": {"unit_code_then": code}})
        if step["kind"] == reorganisation.SPLIT:
            officials = list(tx.officials.find({"unit_code": {"$in": olds}}, {"_id": 1}))
            reorganisation.require_known_officials(step, {o["_id"] for o in officials})
            placed, unplaced = reorganisation.where_officials_go(step, officials)
            for code in codes:
                moving = [official_id for official_id, to in placed.items() if to == code]
                tx.officials.update_many({"_id": {"$in": moving}}, {"$set": {"unit_code": code},
                                                                    "$inc": {"coverage_stale": 1}})
                tx.registrations.update_many({"official_id": {"$in": moving}}, {"$set": {"unit_code": code}})
            tx.officials.update_many({"_id": {"$in": unplaced}}, {"$set": {"to_reassign": True},
                                                                  "$inc": {"coverage_stale": 1}})
            moved = len(placed)
            summary["to_reassign"] += unplaced
        else:
            moved = tx.officials.update_many({"unit_code": {"$in": olds}}, {"$set": {
                "unit_code": codes[0]}, "$inc": {"coverage_stale": 1}}).modified_count
            tx.registrations.update_many({"unit_code": {"$in": olds}}, {"$set": {"unit_code": codes[0]}})
        summary["officials_moved"] += moved
        summary["changes"].append({"kind": step["kind"], "from": olds, "into": codes, "officials_moved": moved})
    _move_sessions(tx, steps, summary)
    tx.unit_history.insert_one({"_id": new_id("reorganisation"), "effective_on": effective_on.isoformat(),
                                "changes": summary["changes"], "at": now})
    tx.emit("units_reorganized", {"effective_on": effective_on, "changes": [
        {"kind": c["kind"], "from_codes": c["from"], "into_codes": c["into"]} for c in summary["changes"]]})
    return summary


def _move_sessions(tx, steps, summary):
    """Sessions naming a dissolved unit: eligible units, seat counts and quotas as the plan says."""
    olds = [code for step in steps for code in step["from"]]
    keys = [rules.unit_key(c) for c in olds]
    touched = tx.sessions.find({"$or": [{"eligible_units": {"$in": olds}}] + [
        {"unit_seats." + k: {"$exists": True}} for k in keys] + [{"quotas." + k: {"$exists": True}} for k in keys]})
    for session in touched:
        quotas, seats = dict(session.get("quotas") or {}), dict(session.get("unit_seats") or {})
        for step in steps:
            into = [rules.unit_key(u["code"]) for u in step["into"]]
            old_keys = [rules.unit_key(c) for c in step["from"]]
            if step["kind"] == reorganisation.SPLIT:
                for key in old_keys:
                    if key in quotas:
                        summary["quotas_dropped"].append({"session_id": session["_id"], "unit": step["from"][0],
                                                          "seats": quotas.pop(key)})
                # Seats are counted again where the officials went (some may still be in the old unit).
                for key in into + old_keys:
                    seats[key] = tx.registrations.count_documents({
                        "session_id": session["_id"], "status": "confirmed", "unit_code": rules.unit_code_of(key)})
                    if not seats[key]:
                        del seats[key]
            else:
                if any(k in quotas for k in old_keys):
                    quotas[into[0]] = quotas.get(into[0], 0) + sum(quotas.pop(k, 0) for k in old_keys)
                taken = sum(seats.pop(k, 0) for k in old_keys)
                if taken:
                    seats[into[0]] = seats.get(into[0], 0) + taken
        tx.sessions.update_one({"_id": session["_id"]}, {"$set": {
            "eligible_units": reorganisation.eligible_after(session.get("eligible_units", []), steps),
            "quotas": quotas, "unit_seats": seats}})


# -- coordinators ---------------------------------------------------------------------------------------------

def insert_coordinator(db, coordinator):
    db.coordinators.insert_one(coordinator)


def find_coordinator(db, coordinator_id):
    """The coordinator, or 404."""
    return one_or_404(db.coordinators, coordinator_id, "coordinator")


def coordinator_by_token(db, digest):
    """The active coordinator whose token has this digest, or None (unknown or revoked)."""
    return db.coordinators.find_one({"token_digest": digest, "status": "active"})


def coordinators_page(db, unit_code, limit, cursor):
    """A page of the coordinators acting for `unit_code`, by id."""
    return page(db.coordinators, {"unit_codes": unit_code}, ["_id"], limit, cursor)


def revoke_coordinator(db, coordinator_id, revoked_by, now):
    """Revoke its token (once: revoking again changes nothing). Returns the coordinator as it is now."""
    db.coordinators.update_one({"_id": coordinator_id, "status": "active"}, {"$set": {
        "status": "revoked", "revoked_at": now, "revoked_by": revoked_by}})
    return find_coordinator(db, coordinator_id)


# -- officials --------------------------------------------------------------------------------------------------

def find_official(db, official_id):
    """The official, or 404."""
    return one_or_404(db.officials, official_id, "official")


def insert_official(db, official):
    """Store a new official; 409 `official_exists` for a known email or phone."""
    try:
        db.officials.insert_one(official)
    except DuplicateKeyError as exc:
        field = "phone" if "phone" in str(exc) else "email"
        raise conflict("official_exists", "An official with this {} exists.".format(field),
                       {field: ["Already registered."]})


def change_official(db, official, change, now):
    """Write `change` to `official` (its search text follows) and to the copy its live registrations
    keep, so the notices still to come reach the corrected name and address; a registration keeps the
    unit it was made under. 409 `official_exists` for an email or phone another official has. The
    official as it is now."""
    updated = dict(official, **change)
    # Marked for the read models' next fold: a new unit or audience group moves the official's
    # share of coverage's counters (their registrations keep their unit, so the reports' stay).
    try:
        db.officials.update_one({"_id": official["_id"]}, {
            "$set": dict(change, **rules.search_fields(updated), updated_at=now),
            "$inc": {"coverage_stale": 1}})
    except DuplicateKeyError as exc:
        field = "phone" if "phone" in str(exc) else "email"
        raise conflict("official_exists", "Another official has this {}.".format(field),
                       {field: ["Already registered to another official."]})
    copied = {"official." + k: updated[k] for k in ("full_name", "email", "phone", "language") if k in change}
    if copied:
        db.registrations.update_many({"official_id": official["_id"], "status": {"$in": ["confirmed", "waitlisted"]}},
                                     {"$set": copied})
    return find_official(db, official["_id"])


def words_query(q, field="search"):
    """Clauses for: every word of `q` (folded) begins a word of the folded `field`."""
    return [{field: {"$regex": r"(^|[ .@_+-]){}".format(re.escape(word))}} for word in rules.fold(q or "").split()]


def officials_page(db, filters, units=None):
    """A page of officials by id, matching `q` and `unit_code` when given; of `units` only (a
    coordinator's) unless None. Accents and case are ignored, words may come in any order.

    A name query (`rules.is_name_query`: several words, no digit, no @ . _ + -) finds the officials
    whose name has every word but the last as a whole word and a word the last begins ("van an":
    Nguyễn Văn An and Nguyễn Văn Anh; "ngu van an": neither). It reads the range of the name keys
    that holds exactly those (`rules.name_key_range`), so its cost is the number of officials it
    finds, not a word's share of the city. Any other query (one word; an email or phone number,
    whole or in part) matches as before: each word begins a word of the name, email or phone; its
    leading word (`rules.leading_word`) is a range of the `search_words` index and every word is
    then checked against the text, so its cost is that word's share of the city.

    SecantusDB reads a whole index range before it sorts and limits (measured: 20 of a range of
    1,000 keys took 22 ms, of 10,000 283 ms), so what keeps a search cheap is a narrow range, not a
    limit. A unit filter (a coordinator's, `unit_code`) is checked on what the range holds: it costs
    the officials of that name in the whole city, not in the unit."""
    query = {}
    q = filters.get("q")
    words = rules.query_words(q)
    if rules.is_name_query(q):
        query["search_keys"], rest = rules.name_key_range(words)
        if rest:
            query["name_words"] = {"$all": rest}
    elif words:
        query["search_words"] = rules.prefix_range(rules.leading_word(words))
        # One document of fields, no $and: SecantusDB's planner then reads the index range (the
        # first field it can).
        query["search"] = {"$all": [re.compile(clause["search"]["$regex"]) for clause in words_query(q)]}
    if units is not None:
        asked = {filters["unit_code"]} if filters.get("unit_code") else set(units)
        query["unit_code"] = {"$in": sorted(asked & set(units))}
    elif filters.get("unit_code"):
        query["unit_code"] = filters["unit_code"]
    return page(db.officials, query, ["_id"], filters["limit"], filters.get("cursor"))


# -- registrations ----------------------------------------------------------------------------------------------

def find_registration(db, registration_id):
    """The registration, or 404."""
    return one_or_404(db.registrations, registration_id, "registration")


def registration_by_token(db, session_id, token):
    """The registration a QR token names (None if none); a legacy token is looked up in the session."""
    registration = db.registrations.find_one({"_id": rules.registration_of_token(token)})
    if registration is None and rules.is_legacy_token(token):
        registration = db.registrations.find_one({"session_id": session_id, "qr_token": token})
    return registration


def registrations_page(db, session_id, filters):
    """A page of a session's registrations (of one status if asked): the waitlist in its order,
    anything else by id."""
    match = {"session_id": session_id}
    if filters.get("status"):
        match["status"] = filters["status"]
    order = ["waitlist_position", "_id"] if filters.get("status") == "waitlisted" else ["_id"]
    return page(db.registrations, match, order, filters["limit"], filters.get("cursor"))


def cancel_registration(tx, registration_id, reason, cause, now):
    """Cancel a registration (`rules.must_cancel`): a confirmed seat is freed and promotes from the
    waitlist, a waitlist place shortens it, `registration_cancelled` is published. Returns the
    registration as it is now."""
    current = tx.registrations.find_one({"_id": registration_id})
    if not rules.must_cancel(current):
        return current
    session_id, status = current["session_id"], current["status"]
    change = rules.cancellation(status, reason, cause, now)
    tx.registrations.update_one({"_id": registration_id, "status": status},
                                {"$set": change, "$unset": {"waitlist_position": ""}})
    if status == "confirmed":
        free_seat(tx, session_id, current["unit_code"])
    else:
        tx.sessions.update_one({"_id": session_id}, {"$inc": {"waitlist_length": -1}})
    session = tx.sessions.find_one({"_id": session_id})
    tx.emit("registration_cancelled", {
        "registration_id": registration_id, "session": session_ref(session),
        "official": current["official"], "reason": reason, "cause": cause})
    if status == "confirmed":
        promote(tx, session_id)
        if session.get("over_capacity"):
            # The freed seat was one too many: the excess shrinks.
            tx.sessions.update_one({"_id": session_id, "over_capacity": {"$gt": 0}}, {"$inc": {"over_capacity": -1}})
    current.update(change)
    return current


# -- attendance and certificates ------------------------------------------------------------------------------

def record_attendance(tx, registration, session, part, now):
    """Record `part` attended (a repeat raises DuplicateKeyError), publish `attendance_recorded`;
    attending every part (`rules.completes_course`) issues the certificate and publishes
    `course_completed`. Returns the registration as it is now."""
    tx.attendance.insert_one({"_id": rules.attendance_id(registration["_id"], part),
                              "registration_id": registration["_id"], "session_id": session["_id"],
                              "official_id": registration["official_id"], "part": part, "checked_in_at": now})
    tx.registrations.update_one({"_id": registration["_id"]}, {
        "$addToSet": {"attended_parts": part}, "$min": {"first_checkin_at": now}})
    tx.emit("attendance_recorded", {"registration_id": registration["_id"], "session_id": session["_id"],
                                    "official_id": registration["official_id"], "part": part, "checked_in_at": now})
    current = tx.registrations.find_one({"_id": registration["_id"]})
    if rules.completes_course(current["status"], current["attended_parts"], rules.parts_of(session)):
        code = certificates.new_code()
        tx.certificates.insert_one({
            "_id": code, "registration_id": registration["_id"], "session_id": session["_id"],
            "official": registration["official"], "unit_code": registration["unit_code"],
            "session": session_ref(session), "partner_id": session.get("partner_id"), "issued_at": now})
        tx.registrations.update_one({"_id": registration["_id"]}, {"$set": {
            "status": "completed", "certificate_code": code, "completed_at": now}})
        tx.emit("course_completed", {
            "registration_id": registration["_id"], "session": session_ref(session),
            "official": registration["official"], "certificate_code": code,
            "certificate_url": certificates.url(code)})
        current.update(status="completed", certificate_code=code)
    return current


def find_attendance(db, registration_id, part):
    return db.attendance.find_one({"_id": rules.attendance_id(registration_id, part)})


def find_certificate(db, code):
    """The certificate with this verification code, or 404."""
    return one_or_404(db.certificates, code, "certificate")


# -- the programme and its coverage -----------------------------------------------------------------------------

def programme(db):
    """The programme record (name, legal basis, period, targets), or None before it is set."""
    return db.programme.find_one({"_id": "programme"})


def save_programme(db, record, now):
    db.programme.update_one({"_id": "programme"}, {"$set": dict(record, updated_at=now)}, upsert=True)


def coverage_inputs(db):
    """What coverage counts: officials, units, registrations (with their first check-in and
    completion), and which partner delivers each session."""
    officials = db.officials.find({}, {"unit_code": 1, "audience_group": 1})
    units = {u["_id"]: u for u in db.units.find({}, {"name": 1, "headcount": 1, "status": 1})}
    registrations = list(db.registrations.find({}, {
        "official_id": 1, "session_id": 1, "status": 1, "created_at": 1, "cancelled_at": 1,
        "first_checkin_at": 1, "completed_at": 1}))
    sessions = {s["_id"]: s.get("partner_id") for s in db.sessions.find({}, {"partner_id": 1})}
    return officials, units, registrations, sessions


def report_units(db):
    """The units as reports group by them: name, kind, parent, status and successors, by code."""
    return {u["_id"]: u for u in db.units.find({}, {"name": 1, "kind": 1, "parent_code": 1, "status": 1,
                                                    "successors": 1, "merged_into": 1})}


def report_sessions(db):
    """The sessions' titles, for the report by session."""
    return {s["_id"]: s for s in db.sessions.find({}, {"title": 1})}


def coverage_units(db):
    """The units' names, declared headcounts and status, by code."""
    return {u["_id"]: u for u in db.units.find({}, {"name": 1, "headcount": 1, "status": 1})}


def official_record(db, official_id):
    """Every registration of one official, with its attendance and certificate."""
    registrations = list(db.registrations.find({"official_id": official_id}).sort("created_at", ASCENDING))
    attendance = list(db.attendance.find({"official_id": official_id}).sort("checked_in_at", ASCENDING))
    certificates_ = list(db.certificates.find({"official.id": official_id}))
    sessions = {s["_id"]: s for s in db.sessions.find({"_id": {"$in": [r["session_id"] for r in registrations]}},
                                                     {"title": 1, "venue_name": 1, "starts_at": 1, "ends_at": 1})}
    return registrations, attendance, certificates_, sessions


# -- officials acting for themselves (self-service at /me) -----------------------------------------------------

def official_by_email(db, email):
    """The official with this address (stored in lower case), or None."""
    return db.officials.find_one({"email": email}, {"full_name": 1, "language": 1, "email": 1})


def registrations_of(db, official_id):
    """An official's registrations, newest first, each with registration's copy of its session."""
    registrations = list(db.registrations.find({"official_id": official_id}).sort("created_at", -1).limit(200))
    sessions = {s["_id"]: s for s in db.sessions.find({"_id": {"$in": [r["session_id"] for r in registrations]}})}
    return registrations, sessions


def sessions_open_from(db, now, limit=100):
    """Scheduled sessions that have not started, soonest first (the rules say which an official may join)."""
    return list(db.sessions.find({"status": "scheduled", "starts_at": {"$gt": now}}).sort("starts_at", ASCENDING)
                .limit(limit))


def certificates_of(db, official_id):
    return list(db.certificates.find({"official.id": official_id}).sort("issued_at", -1))


def set_official_language(db, official_id, language):
    db.officials.update_one({"_id": official_id}, {"$set": {"language": language}})


def unit_name(db, code):
    unit = db.units.find_one({"_id": code}, {"name": 1}) if code else None
    return unit["name"] if unit else code


def revoke_certificate(db, code, reason, by, now):
    """Mark the certificate revoked (once: the condition makes a second revocation match nothing)."""
    return db.certificates.find_one_and_update(
        {"_id": code, "revoked_at": None},
        {"$set": {"revoked_at": now, "revoke_reason": reason, "revoked_by": by}}, return_document=True)


# -- coverage's read model (coverage.contribution) ---------------------------------------------------------------

REGISTRATION_COUNTED = {"session_id": 1, "unit_code": 1, "unit_code_then": 1, "status": 1, "created_at": 1,
                        "cancelled_at": 1, "first_checkin_at": 1, "completed_at": 1, "attended_parts": 1}


def _shares(official, registrations, partner_of):
    """(coverage share, report share) of one official (coverage.contribution, reports.share)."""
    if official is None:
        return {}, {}
    return coverage.contribution(official, registrations, local_date), reports.share(registrations, partner_of)


def _stored(shares):
    return [{"key": list(k), "counts": v} for k, v in sorted(shares.items(), key=lambda kv: str(kv[0]))]


def refresh_coverage(db, official_ids):
    """Work out again what these officials add to the read models (coverage's counters and the
    reports') and add the difference, in one transaction (their shares, the counters and the end of
    their `coverage_stale` mark together): replicas folding the same official at once conflict and
    one starts again instead of counting twice. A mark is a count every change adds to (always a
    write, never a value set again), and the fold clears only the count it saw: a change made while
    an official is folded conflicts, or leaves the mark for the next fold; none is left out."""
    official_ids = list(set(official_ids))

    def work(tx):
        officials = {o["_id"]: o for o in tx.officials.find({"_id": {"$in": official_ids}},
                                                          {"unit_code": 1, "audience_group": 1, "coverage_stale": 1})}
        theirs = {official_id: [] for official_id in official_ids}
        for registration in tx.registrations.find({"official_id": {"$in": official_ids}},
                                                  dict(REGISTRATION_COUNTED, official_id=1)):
            theirs[registration.pop("official_id")].append(registration)
        partner_of = {s["_id"]: s.get("partner_id") for s in tx.sessions.find(
            {"_id": {"$in": list({r["session_id"] for rs in theirs.values() for r in rs})}}, {"partner_id": 1})}
        known = {p["_id"]: p for p in tx.coverage_people.find({"_id": {"$in": official_ids}})}
        deltas, report_deltas, people = {}, {}, []
        for official_id in official_ids:
            new, new_report = _shares(officials.get(official_id), theirs[official_id], partner_of)
            mine = known.get(official_id) or {}
            old = {tuple(s["key"]): s["counts"] for s in mine.get("shares", [])}
            old_report = {tuple(s["key"]): s["counts"] for s in mine.get("report_shares", [])}
            _sum_into(deltas, coverage.difference(old, new))
            _sum_into(report_deltas, coverage.difference(old_report, new_report))
            people.append(ReplaceOne({"_id": official_id}, {
                "shares": _stored(new), "report_shares": _stored(new_report)}, upsert=True))
        _add_to_counters(tx, deltas)
        _add_to_report_counters(tx, report_deltas)
        tx.coverage_people.bulk_write(people, ordered=False)
        seen = [UpdateOne({"_id": o["_id"], "coverage_stale": o["coverage_stale"]}, {"$unset": {"coverage_stale": ""}})
                for o in officials.values() if o.get("coverage_stale")]
        if seen:
            tx.officials.bulk_write(seen, ordered=False)
    if official_ids:
        db.transaction(work)


def _sum_into(total, deltas):
    for key, delta in deltas.items():
        have = total.setdefault(key, [0] * len(delta))
        for i, n in enumerate(delta):
            have[i] += n


def _report_key(key):
    return "|".join(key)


def _report_unit(key):
    """The unit a report counter counts registrations of (what a coordinator's report is limited to)."""
    return reports.counter_unit(key)


def _add_to_report_counters(tx, deltas):
    writes = []
    for key, delta in deltas.items():
        if any(delta):
            writes.append(UpdateOne({"_id": _report_key(key)}, {
                "$inc": {"counts.{}".format(i): n for i, n in enumerate(delta) if n},
                "$setOnInsert": {"key": list(key), "kind": key[0], "unit": _report_unit(key)}}, upsert=True))
    if writes:
        tx.report_counters.bulk_write(writes, ordered=False)


def report_counters(db, by, units=None):
    """The reports' read model that the report `by` reads: [{"key", "counts"}], counts as lists in
    the order of reports.COUNTS; the counters per session for `by=session`, else those per unit and
    partner (an equality on the indexed kind: SecantusDB scans for a range of the _id); of the
    registrations under `units` only (a coordinator's: its units' counters, few; per session and
    unit for `by=session`) unless None."""
    kind = "units" if by != "session" else "session" if units is None else "session_unit"
    if units is None:
        query = {"kind": kind}
    else:
        query = {"unit": {"$in": sorted(units)}}
    return [{"key": c["key"], "counts": [(c.get("counts") or {}).get(str(i), 0) for i in range(len(reports.COUNTS))]}
            for c in db.report_counters.find(query) if c["key"][0] == kind]


def _add_to_counters(tx, deltas):
    writes = []
    for (unit, group, month, day), delta in deltas.items():
        change = {"totals.{}".format(i): n for i, n in enumerate(delta) if n}
        if day:
            change.update({"days.{}.{}".format(day, i): n for i, n in enumerate(delta) if n})
        writes.append(UpdateOne({"_id": coverage.bucket_key(unit, group, month)}, {
            "$inc": change, "$setOnInsert": {"unit": unit, "group": group, "month": month}}, upsert=True))
    if writes:
        tx.coverage_counters.bulk_write(writes, ordered=False)


class FoldDeferred(Exception):
    """The fold stopped between two batches: registrations are being made, or the read models are
    being rebuilt."""


REBUILDING = "rebuilding"  # its document in `read_model_checkpoints` while a rebuild runs
REBUILD_SETTLE_SECONDS = 2.0  # what a fold's batch under way may take to finish once it is told


def rebuilding(db):
    """Whether a rebuild is under way: folds stop between batches until it ends (a fold beside it
    would add to counters it then replaces). A rebuild that died is forgotten when its mark runs out."""
    mark = db.read_model_checkpoints.find_one({"_id": REBUILDING}, {"until": 1})
    return mark is not None and mark["until"] > utcnow()


# Registrations count as being made while one was published this recently.
BUSY_SECONDS = 1.0


def registering_now(db):
    """Whether a registration was published in the last BUSY_SECONDS (an index range of one)."""
    since = utcnow() - timedelta(seconds=BUSY_SECONDS)
    return db.published_events.find_one({"published_at": {"$gte": since},
                                         "type": {"$in": ["registration_confirmed", "registration_waitlisted"]}},
                                        {"_id": 1}) is not None


def _rested(db, work, rest):
    """Run `work()`; in the background (`rest` > 0) then sleep `rest` times as long as it took, and
    stop (FoldDeferred) while registrations are being made. The fold shares the database with them:
    beside a burst, a fold at full speed took half the burst's throughput, and one that worked a
    fifth of the time still did. The next tick folds the rest, or the next report."""
    if rebuilding(db):
        raise FoldDeferred()
    started = time.monotonic()
    work()
    if rest:
        time.sleep((time.monotonic() - started) * rest)
        if registering_now(db):
            raise FoldDeferred()


def refresh_stale_coverage(db, batch=200, rest=0):
    """Refresh the officials marked `coverage_stale` (created, imported, edited, moved by a
    reorganisation, erased: the mark is part of that very write)."""
    folded = 0
    while True:
        ids = [o["_id"] for o in db.officials.find({"coverage_stale": {"$gt": 0}}, {"_id": 1}).limit(batch)]
        if not ids:
            return folded
        _rested(db, lambda: refresh_coverage(db, ids), rest)
        folded += len(ids)


# -- folding: what keeps the read models current, after the fact -------------------------------------------------
#
# Off the paths that change registrations: a registration's transaction writes the registration,
# its session's counters and its event, nothing more (it also marked its official when the read
# models arrived, and registration's p50 went from 16-31 ms to 72-81 ms). The fold learns which
# officials' registrations changed from the events registration emitted (every one names its
# official), read from a checkpoint in `published_events`; what changes an official rather than a
# registration (created, imported, edited, moved, erased) carries its `coverage_stale` mark in the
# write that changes it. A fold works each official's share out again from what is stored: folding
# one twice, or at once in two places, counts them once.

CHECKPOINT = "coverage"  # its document in `read_model_checkpoints`
FOLD_EVENTS = 2000  # events read per page


def _refresh_all(db, official_ids, batch=200, rest=0):
    ids = sorted(official_ids)
    for start in range(0, len(ids), batch):
        _rested(db, lambda: refresh_coverage(db, ids[start:start + batch]), rest)
    return len(ids)


def _save_checkpoint(db, checkpoint):
    try:
        db.read_model_checkpoints.replace_one({"_id": CHECKPOINT}, checkpoint, upsert=True)
    except DuplicateKeyError:  # two first folds at once: the other inserted it
        db.read_model_checkpoints.replace_one({"_id": CHECKPOINT}, checkpoint)


def fold_read_models(db, pending=False, rest=0):
    """Fold into coverage's and the reports' read models the officials marked and those named by
    the events published since the checkpoint, a page of events at a time, saving the checkpoint
    after each page is counted. `pending`: also the events still waiting in the outbox (what a
    report folds before it answers, so that it counts every change committed before it was asked).
    `rest`: the timer's fold, in the background: after each batch of officials it sleeps that many
    times as long as the batch took, and it neither starts nor goes on while registrations are
    being made (raises FoldDeferred between batches). Returns how many officials were folded (one
    named twice counts twice). While a rebuild runs, the timer's fold stops and a report's folds nothing."""
    if rest and registering_now(db):
        raise FoldDeferred()
    try:
        return _fold(db, pending, rest)
    except FoldDeferred:
        if rest:
            raise
        return 0  # a rebuild is under way: a report reads the models as they are


def _fold(db, pending, rest):
    # The outbox first: the relay archives before it deletes, so what was waiting is archived by the next read.
    waiting = coverage.officials_changed(pending_events(db)) if pending else set()
    folded = refresh_stale_coverage(db, rest=rest) + _refresh_all(db, waiting, rest=rest)
    checkpoint = db.read_model_checkpoints.find_one({"_id": CHECKPOINT}, {"_id": 0}) or {}
    while True:
        records, after = published_after(db, checkpoint, FOLD_EVENTS)
        if not records:
            return folded
        folded += _refresh_all(db, coverage.officials_changed(records), rest=rest)
        # Two folds at once may save their checkpoints in either order: the one behind then reads
        # again what the other folded, which counts nothing twice.
        _save_checkpoint(db, after)
        checkpoint = after


def read_models_behind(db):
    """What the next fold has to fold: officials marked, events waiting in the outbox or published
    since the checkpoint (0: the read models count every change committed)."""
    checkpoint = db.read_model_checkpoints.find_one({"_id": CHECKPOINT}, {"_id": 0}) or {}
    return (db.officials.count_documents({"coverage_stale": {"$gt": 0}}) + db.outbox.count_documents({})
            + len(published_after(db, checkpoint, 1)[0]))


def coverage_counters(db, as_of_month, series=False, units=None):
    """The read model's counters (totals as lists) that coverage as of a day in `as_of_month` needs:
    the running totals, the month's days and the months after it (what changed since); for a
    `series`, every month up to `as_of_month` by its totals and that month's days. And the staff.
    For a coordinator (`units`), every counter of its units: a few units' months, and the month
    series is summed from them (the city's counter per month counts every unit)."""
    out = []
    if units is not None:
        found = list(db.coverage_counters.find({"unit": {"$in": sorted(units)}}))
        for counter in found:
            totals = counter.get("totals") or {}
            counter["totals"] = [totals.get(str(i), 0) for i in range(3)]
            counter["days"] = {d: [c.get(str(i), 0) for i in range(3)] for d, c in (counter.get("days") or {}).items()}
        return found
    if series:
        city = coverage.bucket_key(coverage.CITY, coverage.CITY, "")
        found = list(db.coverage_counters.find({"_id": {"$gte": city, "$lt": city + as_of_month}}, {"days": 0}))
        found += db.coverage_counters.find({"_id": city + as_of_month})
        found = [c for c in found if c["month"] <= as_of_month]
    else:
        found = list(db.coverage_counters.find({"month": coverage.TOTAL}))
        found += db.coverage_counters.find({"month": {"$gt": as_of_month, "$lt": coverage.STAFF}}, {"days": 0})
        found += db.coverage_counters.find({"month": as_of_month})
    for counter in found:
        totals = counter.get("totals") or {}
        counter["totals"] = [totals.get(str(i), 0) for i in range(3)]
        counter["days"] = {d: [c.get(str(i), 0) for i in range(3)] for d, c in (counter.get("days") or {}).items()}
        out.append(counter)
    for counter in db.coverage_counters.find({"month": coverage.STAFF}):
        totals = counter.get("totals") or {}
        counter["totals"] = [totals.get(str(i), 0) for i in range(3)]
        out.append(counter)
    return out


def rebuild_coverage(db, chunk=2000, settle=REBUILD_SETTLE_SECONDS):
    """The read model from scratch: every official's share worked out from their registrations (the
    two streamed side by side), the counters summed from the shares (no transaction: run it while
    nothing registers, or run it again). Folds stop while it runs (`rebuilding`) and go on from where
    it ends. Returns how many officials were counted."""
    # Folds stop first: one beside the rebuild would add to counters it then replaces.
    db.read_model_checkpoints.replace_one(
        {"_id": REBUILDING}, {"until": utcnow() + timedelta(hours=1)}, upsert=True)
    time.sleep(settle)
    try:
        return _rebuild(db, chunk)
    finally:
        db.read_model_checkpoints.delete_one({"_id": REBUILDING})


def _rebuild(db, chunk):
    # The fold goes on from the last event published before the rebuild began (it works out again
    # any official an event after that names: their share as counted here, so no change).
    last = list(db.published_events.find({}, {"published_at": 1}).sort("published_at", DESCENDING).limit(1))
    _save_checkpoint(db, {"at": last[0]["published_at"], "ids": []} if last else {})
    db.coverage_people.delete_many({})
    db.coverage_counters.delete_many({})
    db.report_counters.delete_many({})
    db.officials.update_many({"coverage_stale": {"$gt": 0}}, {"$unset": {"coverage_stale": ""}})
    partner_of = {s["_id"]: s.get("partner_id") for s in db.sessions.find({}, {"partner_id": 1})}
    totals, report_totals, people, counted = {}, {}, [], 0

    def officials_with_registrations():
        # Officials by id beside their registrations by official (its index), joined as they stream:
        # memory stays that of one official's registrations, whatever the size of the city.
        registrations = db.registrations.find({}, dict(REGISTRATION_COUNTED, official_id=1)).sort(
            "official_id", ASCENDING)
        pending = next(registrations, None)
        for official in db.officials.find({}, {"unit_code": 1, "audience_group": 1}).sort("_id", ASCENDING):
            theirs = []
            while pending is not None and pending["official_id"] <= official["_id"]:
                if pending["official_id"] == official["_id"]:
                    theirs.append(pending)
                pending = next(registrations, None)
            yield official, theirs

    for official, registrations in officials_with_registrations():
        share, report_share = _shares(official, registrations, partner_of)
        for key, counts in share.items():
            have = totals.setdefault(key, [0, 0, 0])
            for i in range(3):
                have[i] += counts[i]
        for key, counts in report_share.items():
            have = report_totals.setdefault(key, [0] * len(reports.COUNTS))
            for i, n in enumerate(counts):
                have[i] += n
        people.append({"_id": official["_id"], "shares": _stored(share), "report_shares": _stored(report_share)})
        counted += 1
        if len(people) >= chunk:
            db.coverage_people.insert_many(people, ordered=False)
            people = []
    if people:
        db.coverage_people.insert_many(people, ordered=False)
    buckets = {}
    for (unit, group, month, day), counts in totals.items():
        bucket = buckets.setdefault(coverage.bucket_key(unit, group, month), {
            "_id": coverage.bucket_key(unit, group, month), "unit": unit, "group": group, "month": month,
            "totals": {}, "days": {}})
        for i, n in enumerate(counts):
            if n:
                bucket["totals"][str(i)] = bucket["totals"].get(str(i), 0) + n
                if day:
                    bucket["days"].setdefault(day, {})[str(i)] = n
    if buckets:
        db.coverage_counters.insert_many(list(buckets.values()), ordered=False)
    if report_totals:
        db.report_counters.insert_many([{"_id": _report_key(k), "key": list(k), "kind": k[0], "unit": _report_unit(k), "counts": {
            str(i): n for i, n in enumerate(counts) if n}} for k, counts in report_totals.items()], ordered=False)
    return counted
