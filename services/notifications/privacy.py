"""Personal-data rights in notifications (Decree 13/2023/ND-CP): what the notices' log, the copy of
upcoming registrations and the opt-outs hold about an official; their erasure; and the retention of
names, contacts and QR tokens in notices' contexts (what a notice was rendered from).

The log itself stays (which notice went when, by which channel, how it went, to whom by id): it is
the record operators answer questions from. What goes is the address it went to, the official's
name and contacts in its context, and the QR token."""
from backbone.personal import ERASED_OFFICIAL, STRIPPED_OFFICIAL, in_chunks
from services.notifications.store import SENDABLE

# A notice's `to` once the address is gone (erased, or past its retention).
FORGOTTEN_ADDRESS = "(erased)"


def _context_official(fields):
    return {"context.official.{}".format(k): v for k, v in fields.items()}


def erase(db, official_id, now):
    """Remove or anonymise everything notifications holds about one official: their notices'
    addresses and contexts (unsent ones fail, as nobody can be reached), the copy of their upcoming
    registrations (no reminder) and their opt-outs. Safe to run twice. Returns {collection: count}."""
    unsent = db.notices.update_many(
        {"official_id": official_id, "status": {"$in": list(SENDABLE)}},
        {"$set": {"status": "failed", "last_error": "official erased", "claimed_until": now}})
    scrubbed = db.notices.update_many(
        {"official_id": official_id},
        {"$set": dict(_context_official(ERASED_OFFICIAL), to=FORGOTTEN_ADDRESS, personal_erased_at=now)})
    # Left empty, not removed: a notice's templates still render (a resend shows no code).
    db.notices.update_many({"official_id": official_id, "context.qr_token": {"$nin": ["", None]}},
                           {"$set": {"context.qr_token": ""}})
    # Remembered for a day: an event of theirs retried or handled in parallel may land after this,
    # and the retention sweep erases once more what it wrote (`recently_erased`).
    db.erased_officials.update_one({"_id": official_id}, {"$setOnInsert": {"erased_at": now}}, upsert=True)
    upcoming = db.upcoming.delete_many({"official.id": official_id})
    opt_outs = db.opt_outs.delete_many({"official_id": official_id})
    return {"notices": scrubbed.modified_count, "failed": unsent.modified_count,
            "upcoming": upcoming.deleted_count, "opt_outs": opt_outs.deleted_count}


def recently_erased(db, since):
    return [doc["_id"] for doc in db.erased_officials.find({"erased_at": {"$gte": since}}, {"_id": 1})]


def held_about(db, official_id):
    """What notifications holds about one official: their notices (what, when, how it went, the
    address), the upcoming registrations it tracks for reminders, their opt-outs."""
    notices = [{"id": n["_id"], "channel": n["channel"], "template": n["template"], "to": n["to"],
                "status": n["status"], "created_at": n["created_at"], "sent_at": n.get("sent_at")}
               for n in db.notices.find({"official_id": official_id}).sort("created_at", 1)]
    upcoming = [{"registration_id": u["_id"], "status": u.get("status"), "starts_at": u.get("starts_at"),
                 "official": u.get("official")} for u in db.upcoming.find({"official.id": official_id})]
    opt_outs = [{"channel": o["channel"], "since": o.get("created_at")}
                for o in db.opt_outs.find({"official_id": official_id})]
    return {"notices": notices, "upcoming": upcoming, "opt_outs": opt_outs}


def strip_contexts(db, ended_before, now, what="personal"):
    """Retention: notices about sessions that ended before `ended_before` lose, for `what="personal"`,
    the address they went to and the official's name and contacts in their context, for
    `what="qr_token"` the QR token in their context (left empty: the templates still render). Sent or
    failed notices only (a notice still to send needs its address). Returns how many were changed."""
    marker = "{}_stripped_at".format(what)
    query = {"official_id": {"$ne": None}, "status": {"$nin": list(SENDABLE)}, marker: {"$exists": False},
             "context.session.ends_at": {"$lt": ended_before}}
    if what == "personal":
        change = {"$set": dict(_context_official(STRIPPED_OFFICIAL), to=FORGOTTEN_ADDRESS, **{marker: now})}
    else:
        change = {"$set": {marker: now, "context.qr_token": ""}}
    return in_chunks(db.notices, query, change)
