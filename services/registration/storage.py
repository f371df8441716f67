"""Registration's database: indexes, the folded search text, the seat arithmetic done by
conditional updates on the session document, promotion from the waitlist, and the shapes that
leave the service."""
import hashlib
import re
import secrets
import unicodedata

from pymongo import ASCENDING, IndexModel

INDEXES = {
    "units": [],  # _id is the code
    "officials": [
        IndexModel([("email", ASCENDING)], unique=True),
        IndexModel([("phone", ASCENDING)], unique=True),
        IndexModel([("unit_code", ASCENDING)]),
    ],
    # One index only: each is rewritten on every registration (SecantusDB, measured). "One
    # registration per official per session" is the _id (derived from both), and the QR token
    # carries the registration's id, so neither needs an index of its own.
    "registrations": [
        # The waitlist in order, and the per-status listings of a session.
        IndexModel([("session_id", ASCENDING), ("status", ASCENDING), ("waitlist_position", ASCENDING)]),
    ],
    # attendance: _id "<registration_id>:<part>" is what makes a repeated check-in the same one.
    # certificates: _id is the verification code.
}

LIVE = ("confirmed", "waitlisted")


def registration_id(session_id, official_id):
    """The same for the same official and session: a second registration is a duplicate _id."""
    digest = hashlib.sha256("{}\0{}".format(session_id, official_id).encode()).hexdigest()[:20]
    return "registration-" + digest


def new_qr_token(registration_id):
    """`<id part>.<secret>`: the check-in finds the registration by _id and compares the secret."""
    return "{}.{}".format(registration_id.split("-", 1)[1], secrets.token_urlsafe(12))


def registration_of_token(token):
    return "registration-" + token.split(".", 1)[0][:40]


# -- search -------------------------------------------------------------------------------------------

def fold(text):
    """Accent- and case-free form for search: "Nguyễn Thị Ánh" → "nguyen thi anh" (đ → d)."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def search_text(official):
    return fold(" ".join([official["full_name"], official["email"], official["phone"]]))


def search_query(q):
    """Every word of `q` must begin a word of the folded text."""
    words = fold(q).split()
    return {"$and": [{"search": {"$regex": r"(^|[ .@_+-]){}".format(re.escape(word))}} for word in words]} \
        if words else {}


# -- seats ----------------------------------------------------------------------------------------------

NO_QUOTA = 10 ** 9


def unit_key(code):
    """A unit code as a key inside the session document (codes may hold dots)."""
    return code.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def seat_filter(session_id, unit_code):
    """The session, only while it has a free seat and `unit_code` is under its quota (if it has one).
    `$expr` reads capacity and quota from the document itself, so a concurrent capacity change is
    respected: the database decides, never a value read earlier."""
    key = unit_key(unit_code)
    under_quota = {"$lt": [{"$ifNull": ["$unit_seats." + key, 0]}, {"$ifNull": ["$quotas." + key, NO_QUOTA]}]}
    return {"_id": session_id, "status": "scheduled",
            "$expr": {"$and": [{"$lt": ["$seats_taken", "$capacity"]}, under_quota]}}


def take_seat(tx, session_id, unit_code):
    """One seat for an official of `unit_code`, atomically; True if taken."""
    return bool(tx.sessions.update_one(
        seat_filter(session_id, unit_code),
        {"$inc": {"seats_taken": 1, "unit_seats." + unit_key(unit_code): 1}}).modified_count)


def free_seat(tx, session_id, unit_code):
    tx.sessions.update_one({"_id": session_id},
                           {"$inc": {"seats_taken": -1, "unit_seats." + unit_key(unit_code): -1}})


def unit_code_of(key):
    return key.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def full_units(session):
    """The units whose quota on `session` is used up (their waitlisted officials must wait)."""
    quotas, taken = session.get("quotas") or {}, session.get("unit_seats") or {}
    return [unit_code_of(key) for key, seats in quotas.items() if taken.get(key, 0) >= seats]


def promote(tx, session, emit_promoted):
    """Fill free seats from the waitlist, lowest position first, skipping officials whose unit quota
    is full. Each seat is taken with the same conditional update as a registration. Returns how many
    were promoted. `emit_promoted(tx, registration)` publishes each promotion."""
    promoted = 0
    while True:
        current = tx.sessions.find_one({"_id": session["_id"]})
        if current["status"] != "scheduled" or current["seats_taken"] >= current["capacity"]:
            return promoted
        blocked = full_units(current)
        query = {"session_id": session["_id"], "status": "waitlisted"}
        if blocked:
            query["unit_code"] = {"$nin": blocked}
        candidate = next(iter(tx.registrations.find(query).sort("waitlist_position", ASCENDING).limit(1)), None)
        if candidate is None or not take_seat(tx, session["_id"], candidate["unit_code"]):
            return promoted
        tx.sessions.update_one({"_id": session["_id"]}, {"$inc": {"waitlist_length": -1}})
        tx.registrations.update_one({"_id": candidate["_id"]}, {
            "$set": {"status": "confirmed", "promoted": True}, "$unset": {"waitlist_position": ""}})
        candidate.update(status="confirmed", promoted=True)
        emit_promoted(tx, current, candidate)
        promoted += 1


# -- what leaves the service ----------------------------------------------------------------------------

def public_official(doc):
    return {k: doc.get(k) for k in ("id", "full_name", "email", "phone", "unit_code", "audience_group",
                                    "language")}


def public_unit(doc):
    return {k: doc.get(k) for k in ("code", "name", "kind", "parent_code", "status", "merged_into",
                                    "merged_from", "merged_at")}


def public_registration(doc):
    out = {k: doc.get(k) for k in ("id", "session_id", "official_id", "unit_code", "status", "qr_token",
                                   "created_at", "cancelled_at", "cancel_reason", "cancel_cause",
                                   "attended_parts", "certificate_code", "completed_at")}
    if doc.get("status") == "waitlisted":
        out["waitlist_position"] = doc.get("waitlist_position")
    if doc.get("official"):
        out["official"] = {k: doc["official"].get(k) for k in ("full_name", "email", "phone")}
    return out


SESSION_REF = ("title", "venue_name", "address", "room", "starts_at", "ends_at")


def session_ref(session):
    return {k: session[k] for k in SESSION_REF} | {"id": session["_id"]}


def official_ref(official):
    return {"id": official["_id"], "full_name": official["full_name"], "email": official["email"],
            "phone": official["phone"], "language": official.get("language", "vi")}


def parts_of(session):
    """A session without parts has one part: itself."""
    return session.get("parts") or [{"starts_at": session["starts_at"], "ends_at": session["ends_at"]}]
