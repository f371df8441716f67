"""The collections of notifications: `notices` (one document per notice: what, to whom, its status;
see notices.py), `upcoming` (the service's copy of registrations that may need a reminder, built from
registration events), `partners` and `offerings` (what partners' events said, to address and name
their notices) and `opt_outs` (an official's channels they unsubscribed from).

Functions take `db` (a worker's view, or the container's database) or, for what goes through the
group commit (batching.py), return write steps: (collection, pymongo operation[, operation on a
duplicate key]) for `Batches.write`.
"""
import uuid
from datetime import date, datetime, time, timedelta, timezone

from pymongo import ASCENDING, IndexModel, InsertOne, UpdateOne

from backbone.database import handled_record
from backbone.migrate import Migration, moved_collection
from backbone.paging import page
from services.notifications.rules import notice_id, opt_out_key, recipient_of

INDEXES = {
    "notices": [
        IndexModel([("official_id", ASCENDING), ("created_at", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("not_before", ASCENDING)]),
        IndexModel([("created_at", ASCENDING), ("_id", ASCENDING)]),
    ],
    "upcoming": [IndexModel([("status", ASCENDING), ("remind_at", ASCENDING)]),
                 IndexModel([("starts_at", ASCENDING)])],
    "partners": [],
    "offerings": [],
    "opt_outs": [],
    # Officials erased (id and when): the retention sweep erases once more what arrived alongside.
    "erased_officials": [],
}

# Applied once per database, in order, before the indexes (backbone/migrate.py); each safe to run twice.
MIGRATIONS = [
    # The notices' log was the collection `deliveries` (same documents, same ids) until the service
    # took one word for it; a database deployed before that still has it.
    Migration("notices-were-deliveries", "the collection deliveries is now notices",
              moved_collection("deliveries", "notices")),
]

SENDABLE = ("queued", "retrying")
# `claimed_until` of a notice nobody is sending.
NEVER = datetime.fromtimestamp(0, timezone.utc)
# The operators' list, oldest first.
NOTICE_ORDER = ["created_at", "_id"]


# -- notices --------------------------------------------------------------------------------------

def new_notice(now, claimed_until, event_id, channel, to, template, language, context, correlation_id,
               official_id=None, partner_id=None, mandatory=False, operators=False):
    """A new notice's document: queued, and claimed until `claimed_until` by whoever records it.
    `operators`: for the operators' address, about the partner `partner_id`."""
    return {
        "_id": notice_id(event_id, channel, recipient_of(official_id, partner_id, operators)), "event_id": event_id,
        "channel": channel, "to": to,
        "template": template, "language": language, "official_id": official_id, "partner_id": partner_id,
        "mandatory": mandatory, "context": storable(context), "status": "queued", "attempts": 0,
        "provider": None, "last_error": None, "not_before": now, "correlation_id": correlation_id,
        "claimed_until": claimed_until, "created_at": now, "sent_at": None,
    }


def storable(value):
    """What MongoDB can keep: dates become midnight UTC datetimes (rendered back as the same date)."""
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(), timezone.utc)
    return value


def inserting_notice(notice):
    """The step that records a new notice (a duplicate key: it was recorded already)."""
    return ("notices", InsertOne(notice))


def updating_notice(notice_id, fields):
    """The step that records a notice's new state."""
    return ("notices", UpdateOne({"_id": notice_id}, {"$set": fields}))


def marking_handled(event):
    """The step that records an event as handled (see backbone/subscriber.py)."""
    return ("handled_events", InsertOne(handled_record(event)))


def notice(db, notice_id, projection=None):
    return db.notices.find_one({"_id": notice_id}, projection)


def claim_notice(db, notice_id, now, seconds):
    """Take a queued or retrying notice whose claim ran out, for `seconds`; the claimed document or
    None (someone else has it, or it is sent or failed)."""
    result = db.notices.update_one(
        {"_id": notice_id, "status": {"$in": list(SENDABLE)}, "claimed_until": {"$lt": now}},
        {"$set": {"claimed_until": now + timedelta(seconds=seconds)}})
    return notice(db, notice_id) if result.modified_count == 1 else None


def claim_due_notices(db, now, seconds, limit, claimant):
    """Claim up to `limit` notices due for a (re)try, for `seconds`, in one update, and read them back:
    the notices this caller now sends. Replicas sweeping at once each get different ones (a claim
    taken by one no longer matches `claimed_until < now` for the other). `claimed_by` names the
    replica (operators see who was sending a notice left claimed)."""
    ids = due_notice_ids(db, now, limit)
    if not ids:
        return []
    token = uuid.uuid4().hex
    db.notices.update_many(
        {"_id": {"$in": ids}, "status": {"$in": list(SENDABLE)}, "claimed_until": {"$lt": now}},
        {"$set": {"claimed_until": now + timedelta(seconds=seconds), "claim": token, "claimed_by": claimant}})
    return list(db.notices.find({"_id": {"$in": ids}, "claim": token}))


def due_notice_ids(db, now, limit):
    """Notices due for a (re)try that nobody is sending: deferred SMS, retries, notices a dead sender
    left claimed."""
    return [row["_id"] for row in db.notices.find(
        {"status": {"$in": list(SENDABLE)}, "not_before": {"$lte": now}, "claimed_until": {"$lt": now}},
        {"_id": 1}).limit(limit)]


def reopen_failed(db, notice_id, now):
    """A failed notice becomes due now, its retries counted in a new round; False when it is not
    failed (or unknown)."""
    failed = db.notices.find_one({"_id": notice_id, "status": "failed"}, {"attempts": 1})
    if failed is None:
        return False
    result = db.notices.update_one(
        {"_id": notice_id, "status": "failed"},
        {"$set": {"status": "retrying", "not_before": now, "claimed_until": NEVER,
                  "round_starts_after": failed["attempts"]},
         "$inc": {"resends": 1}})
    return result.modified_count == 1


def notice_page(db, filters, limit, cursor=None):
    """A page of the notices matching `filters` (field: value), oldest first, without their context."""
    return page(db.notices, filters, NOTICE_ORDER, limit, cursor, projection={"context": 0})


def notice_counts(db):
    """[[channel, status, count]] over every notice."""
    return sorted([row["_id"]["channel"], row["_id"]["status"], row["n"]] for row in db.notices.aggregate(
        [{"$group": {"_id": {"channel": "$channel", "status": "$status"}, "n": {"$sum": 1}}}]))


# -- opt-outs -------------------------------------------------------------------------------------

def opted_out(batches, official_id, channels):
    """The channels among these that the official opted out of (one look-up, with others' of the moment)."""
    keys = {opt_out_key(official_id, channel): channel for channel in channels}
    return {keys[key] for key in batches.existing("opt_outs", list(keys))}


def opt_out(db, official_id, channel, now):
    db.opt_outs.update_one({"_id": opt_out_key(official_id, channel)}, {
        "$set": {"official_id": official_id, "channel": channel},
        "$setOnInsert": {"created_at": now}}, upsert=True)


def opt_in(db, official_id, channel):
    """The official hears by that channel again."""
    db.opt_outs.delete_one({"_id": opt_out_key(official_id, channel)})


def is_opted_out(db, official_id, channel):
    return db.opt_outs.find_one({"_id": opt_out_key(official_id, channel)}, {"_id": 1}) is not None


# -- the copy of upcoming registrations -------------------------------------------------------------

def tracking_registration(event, status, remind_at):
    """The step that keeps the service's copy of a registration that may need a reminder: an insert
    (a registration's first event, the common case, and the cheapest write), or when the copy exists,
    an update that only a newer event makes. `status` is what it is now."""
    payload = event["payload"]
    occurred_at = event["occurred_at"]
    if isinstance(occurred_at, str):
        occurred_at = datetime.fromisoformat(occurred_at)
    # `reminded` goes back to False with every event: the reminder's own key (registration and
    # start time) keeps a repeat from sending a second one, and lets a new start time have its own.
    fields = {"status": status, "as_of": occurred_at, "official": payload["official"], "reminded": False,
              "session": payload["session"], "starts_at": payload["session"]["starts_at"], "remind_at": remind_at}
    if payload.get("qr_token"):
        fields["qr_token"] = payload["qr_token"]
    # A rescheduled registration keeps the code its confirmation carried.
    first = dict(fields, _id=payload["registration_id"], qr_token=payload.get("qr_token"))
    newer = UpdateOne({"_id": payload["registration_id"], "as_of": {"$lte": occurred_at}}, {"$set": fields})
    return ("upcoming", InsertOne(first), newer)


def claim_due_reminders(db, now, seconds, limit):
    """Claim up to `limit` confirmed registrations whose reminder is due and not sent (nor claimed by
    another replica), for `seconds`, in one update; the claimed copies. A replica that dies with a
    claim leaves it to run out; the reminder's notice is keyed, so sending it then is sending it once."""
    free = {"status": "confirmed", "remind_at": {"$lte": now}, "reminded": False,
            "$or": [{"reminder_claimed_until": {"$exists": False}}, {"reminder_claimed_until": {"$lt": now}}]}
    ids = [row["_id"] for row in db.upcoming.find(free, {"_id": 1}).limit(limit)]
    if not ids:
        return []
    token = uuid.uuid4().hex
    db.upcoming.update_many(dict(free, _id={"$in": ids}), {"$set": {
        "reminder_claimed_until": now + timedelta(seconds=seconds), "reminder_claim": token}})
    return list(db.upcoming.find({"_id": {"$in": ids}, "reminder_claim": token}))


def marking_reminded(registration_id, starts_at, key):
    """Reminded for this start time only: a rescheduled session gets its own reminder."""
    return UpdateOne({"_id": registration_id, "starts_at": starts_at}, {"$set": {"reminded": True, "reminder_key": key}})


def mark_reminded(db, marks):
    """`marks`: marking_reminded operations, written in one round trip."""
    if marks:
        db.upcoming.bulk_write(marks, ordered=False)


def forget_registrations(db, started_before):
    db.upcoming.delete_many({"starts_at": {"$lt": started_before}})


# -- partners and offerings ----------------------------------------------------------------------------

def remember_partner(db, partner_id, code, name, contact_email):
    db.partners.update_one({"_id": partner_id}, {"$set": {
        "code": code, "name": name, "contact_email": contact_email}}, upsert=True)


def partner(db, partner_id):
    return db.partners.find_one({"_id": partner_id})


def remember_offering(db, offering_id, title, partner_id):
    db.offerings.update_one({"_id": offering_id}, {"$set": {"title": title, "partner_id": partner_id}},
                            upsert=True)


def offering(db, offering_id):
    return db.offerings.find_one({"_id": offering_id})
