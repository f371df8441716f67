"""Registration's collections: units, officials, its copy of the sessions (with the seat, quota and
waitlist counters), registrations, attendance, certificates and the history of merges. Every read
and write of them is here, named for what it does; the rules decide (`rules`), these carry it out,
and the writes that publish take the transaction (`tx`) and emit their events in it."""
import re

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from backbone.database import new_id, one_or_404
from backbone.errors import conflict
from backbone.paging import page
from services.registration import certificates, rules
from services.registration.schemas import session_ref

INDEXES = {
    "units": [],  # _id is the code
    "officials": [
        IndexModel([("email", ASCENDING)], unique=True),
        IndexModel([("phone", ASCENDING)], unique=True),
        IndexModel([("unit_code", ASCENDING)]),
    ],
    # One index only: every index is rewritten on every registration. "One registration per
    # official per session" is the _id (derived from both), and the QR token carries the
    # registration's id, so neither needs an index of its own.
    "registrations": [
        # The waitlist in order, and the per-status listings of a session.
        IndexModel([("session_id", ASCENDING), ("status", ASCENDING), ("waitlist_position", ASCENDING)]),
    ],
    # attendance: _id "<registration_id>:<part>" is what makes a repeated check-in the same one.
    # certificates: _id is the verification code.
}


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


def remember_session(tx, scheduled, eligible_units):
    """Keep a copy of a scheduled session (once: a repeated event changes nothing), with no seat taken."""
    session = {k: scheduled[k] for k in SESSION_FIELDS}
    session.update(eligible_units=eligible_units, status="scheduled", seats_taken=0, waitlist_length=0,
                   waitlist_next=0, quotas={}, unit_seats={})
    tx.sessions.update_one({"_id": scheduled["session_id"]}, {"$setOnInsert": session}, upsert=True)


def live_registrations(tx, session_id):
    return tx.registrations.find({"session_id": session_id, "status": {"$in": list(rules.LIVE)}})


def move_session(tx, rescheduled):
    """Move the copy; every live registration stays and `registration_rescheduled` tells its official."""
    session_id = rescheduled["session_id"]
    moved = {k: rescheduled[k] for k in MOVED_FIELDS}
    session = heard_session(tx, session_id)
    tx.sessions.update_one({"_id": session_id}, {"$set": moved})
    session.update(moved)
    for registration in live_registrations(tx, session_id):
        tx.emit("registration_rescheduled", {
            "registration_id": registration["_id"], "session": session_ref(session),
            "official": registration["official"], "status": registration["status"],
            "previous_starts_at": rescheduled.get("previous_starts_at"),
            "previous_ends_at": rescheduled.get("previous_ends_at")})


def resize_session(tx, session_id, capacity):
    """A new capacity: the excess over it is recorded (nobody is dropped), free seats promote."""
    session = heard_session(tx, session_id)
    over = rules.over_capacity(session["seats_taken"], capacity)
    tx.sessions.update_one({"_id": session_id}, {"$set": {"capacity": capacity, "over_capacity": over}})
    promote(tx, session_id)


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
    return {u["_id"]: u for u in db.units.find({"_id": {"$in": codes}})}


def all_units(db):
    return list(db.units.find({}).sort("_id", ASCENDING))


def merged_into(db):
    """{code: code it was merged into} for every merged unit."""
    return {u["_id"]: u["merged_into"] for u in db.units.find({"merged_into": {"$exists": True}}, {"merged_into": 1})
            if u.get("merged_into")}


def insert_unit(db, unit):
    """Store a new unit; 409 `unit_exists` for a known code."""
    try:
        db.units.insert_one(unit)
    except DuplicateKeyError:
        raise conflict("unit_exists", "Unit {} exists.".format(unit["code"]), {"code": ["Already taken."]})


def merge_units(tx, codes, unit, now):
    """Insert the merged `unit` and move everything of `codes` to it: the old units stay (status
    `merged`, `merged_into`) for history; child units, officials, registrations, sessions' eligible
    units, quotas and seats (`rules.merged_session`) follow; `units_merged` is published. A taken
    code raises DuplicateKeyError."""
    into = unit["code"]
    tx.units.insert_one(unit)
    tx.units.update_many({"_id": {"$in": codes}}, {"$set": {"status": "merged", "merged_into": into, "merged_at": now}})
    tx.units.update_many({"parent_code": {"$in": codes}}, {"$set": {"parent_code": into}})
    tx.officials.update_many({"unit_code": {"$in": codes}}, {"$set": {"unit_code": into}})
    tx.registrations.update_many({"unit_code": {"$in": codes}}, {"$set": {"unit_code": into}})
    old_keys = [rules.unit_key(c) for c in codes]
    touched = tx.sessions.find({"$or": [{"eligible_units": {"$in": codes}}] + [
        {"unit_seats." + k: {"$exists": True}} for k in old_keys] + [
        {"quotas." + k: {"$exists": True}} for k in old_keys]})
    for session in touched:
        tx.sessions.update_one({"_id": session["_id"]}, {"$set": rules.merged_session(session, codes, into)})
    tx.unit_history.insert_one({"_id": new_id("merge"), "from": codes, "into": into,
                                "into_name": unit["name"], "merged_at": now})
    tx.emit("units_merged", {"from_codes": codes, "into_code": into, "into_name": unit["name"]})


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


def search_query(q):
    """Every word of `q` (folded) must begin a word of the official's folded search text."""
    words = rules.fold(q).split()
    return {"$and": [{"search": {"$regex": r"(^|[ .@_+-]){}".format(re.escape(word))}} for word in words]} \
        if words else {}


def officials_page(db, filters):
    """A page of officials by id, matching `q` and `unit_code` when given."""
    clauses = [search_query(filters["q"])] if filters.get("q") else []
    if filters.get("unit_code"):
        clauses.append({"unit_code": filters["unit_code"]})
    return page(db.officials, {"$and": clauses} if clauses else {}, ["_id"], filters["limit"], filters.get("cursor"))


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
    tx.registrations.update_one({"_id": registration["_id"]}, {"$addToSet": {"attended_parts": part}})
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
