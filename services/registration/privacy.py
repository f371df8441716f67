"""Personal-data rights in registration (Decree 13/2023/ND-CP): erasure of an official on request,
what registration holds about one official (for "download my data"), and the retention of QR tokens.

Erasure anonymises rather than deletes: an erased official stays a row (id, unit, audience group,
language) so that seats, quotas, coverage and issued certificates still add up and verify; their
name, email, phone and search text go, in the official, in every registration and certificate that
copied them, and in the events still waiting in the outbox. `official_erased` (no personal data) then
tells every service to do the same with what it holds (`backbone/personal.py` for the platform's
records)."""
from backbone.personal import ERASED_OFFICIAL

# The unique indexes on officials' email and phone admit one missing value only: an erased official
# keeps a value of its own that is no address and no number.
ERASED_CONTACT = "erased:{}"


def erased_official_fields(official_id):
    return {"full_name": ERASED_OFFICIAL["full_name"], "email": ERASED_CONTACT.format(official_id),
            "phone": ERASED_CONTACT.format(official_id), "search": "", "search_words": [],
            "name_words": [], "search_keys": []}


def is_erased(official):
    return bool(official.get("erasure"))


def erase(tx, official_id, reason, by, now):
    """Anonymise the official everywhere registration keeps them, and publish `official_erased`; in
    one transaction. `by` is the actor's audit label. Returns the event's id."""
    erasure = {"at": now, "by": by, "reason": reason}
    # Marked for the read models' next fold, in the same transaction: the official stays counted
    # (unit, group), and the fold makes sure what is counted is what a rebuild would count.
    tx.officials.update_one({"_id": official_id}, {"$set": dict(erased_official_fields(official_id),
                                                                 erasure=erasure), "$inc": {"coverage_stale": 1}})
    copied = {"official.{}".format(k): v for k, v in ERASED_OFFICIAL.items()}
    tx.registrations.update_many({"official_id": official_id}, {"$set": copied})
    tx.certificates.update_many({"official.id": official_id}, {"$set": copied})
    # Events of theirs not yet published leave without their data.
    tx.outbox.update_many({"payload.official.id": official_id},
                          {"$set": {"payload.{}".format(k): v for k, v in copied.items()}})
    return tx.emit("official_erased", {"official_id": official_id, "erased_at": now})["event_id"]


def recently_erased(db, since):
    return list(db.officials.find({"erasure.at": {"$gte": since}}, {"_id": 1}))


def held_about(db, official_id):
    """Everything registration holds about one official, as JSON-ready data."""
    official = db.officials.find_one({"_id": official_id}, {
        "search": 0, "search_words": 0, "name_words": 0, "search_keys": 0, "coverage_stale": 0})
    if official is None:
        return None
    return {
        "official": _plain(official),
        "registrations": [_plain(r) for r in db.registrations.find({"official_id": official_id})],
        "attendance": [_plain(a) for a in db.attendance.find({"official_id": official_id})],
        "certificates": [_plain(c) for c in db.certificates.find({"official.id": official_id})],
    }


def _plain(doc):
    out = dict(doc)
    out["id"] = out.pop("_id")
    return out


def forget_qr_tokens(db, ended_before, limit=200):
    """Retention: a QR token opens the door of one session; once the session ended (and the time
    for a sign-in sheet typed afterwards) it is removed from the registrations. Returns how many
    sessions were cleared."""
    sessions = [s["_id"] for s in db.sessions.find(
        {"ends_at": {"$lt": ended_before}, "qr_tokens_forgotten": {"$ne": True}}, {"_id": 1}).limit(limit)]
    for session_id in sessions:
        db.registrations.update_many({"session_id": session_id, "qr_token": {"$exists": True}},
                                     {"$unset": {"qr_token": ""}})
        db.sessions.update_one({"_id": session_id}, {"$set": {"qr_tokens_forgotten": True}})
    return len(sessions)
