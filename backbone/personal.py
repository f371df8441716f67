"""Personal data in the platform's own records (Decree 13/2023/ND-CP): the mechanism every service
uses the same way when an official is erased (`official_erased`) and when retention periods run out.

Events name an official one way only: a payload's `official` object (`contracts/registration.py`,
`OfficialRef`: id, full_name, email, phone, language); every other event names them by `official_id`
alone. So the platform's copies of events (`outbox`, `published_events`, the original message kept in
a `dead_letters` document) are scrubbed by finding `payload.official.id`. The handled-event records
(`handled_events`) hold an event id, type, correlation id and time, never a payload: nothing personal
to scrub there; they expire on their own (`HANDLED_EVENTS_INDEX`).

An event keeps its shape when scrubbed (the name becomes `ERASED_NAME`, the contacts None), so a
scrubbed event still waiting in the outbox, or a dead letter replayed, still fits its contract.
"""
import json
import re
import time
from datetime import timezone

import eventlet
from pymongo import ASCENDING, IndexModel, UpdateOne

from backbone import auth
from backbone.logs import mask

# What an erased official's name reads as, wherever a name is shown (a certificate stays verifiable).
ERASED_NAME = "(đã xóa dữ liệu cá nhân)"
# The fields of an `official` object that are personal, and what each becomes once erased.
ERASED_OFFICIAL = {"full_name": ERASED_NAME, "email": None, "phone": None}
# What an event's `official` may still say once its retention period ran out: who (by id) and in
# which language they read; no name, no contact.
STRIPPED_OFFICIAL = ERASED_OFFICIAL
ARCHIVES = ("outbox", "published_events")
# Dead letters keep the original message for the replay; what they showed of it is masked
# (`ops.rpcs.public_dead_letter`), and an erasure rewrites it.
DEAD_LETTERS = "dead_letters"


def handled_events_index(retention_seconds):
    """The TTL index that ends handled-event records `retention_seconds` after handling: a repeat
    delivered later than that would be handled again, so the window is longer than the broker's whole
    retry ladder (checked in `backbone/settings.py`)."""
    return IndexModel([("handled_at", ASCENDING)], expireAfterSeconds=int(retention_seconds),
                      name="handled_at_ttl")


def _official_set(prefix, fields):
    return {"{}.{}".format(prefix, key): value for key, value in fields.items()}


def erase_official_records(db, official_id, now):
    """Scrub one official from the platform's records in a service's database: events in `outbox`
    and `published_events` that carry them, and the original messages of `dead_letters` (with the
    error and traceback text, which may quote them). Safe to run twice. Returns {collection: count}."""
    changed = {}
    for collection in ARCHIVES:
        result = getattr(db, collection).update_many(
            {"payload.official.id": official_id},
            {"$set": dict(_official_set("payload.official", ERASED_OFFICIAL), personal_erased_at=now)})
        changed[collection] = result.modified_count
    changed[DEAD_LETTERS] = 0
    for letter in getattr(db, DEAD_LETTERS).find({"body": {"$regex": re.escape(official_id)}}):
        update = scrubbed_dead_letter(letter, official_id)
        if update:
            getattr(db, DEAD_LETTERS).update_one({"_id": letter["_id"]}, {"$set": dict(update, personal_erased_at=now)})
            changed[DEAD_LETTERS] += 1
    return changed


def wait_published(db, event_id, timeout, interval=0.05):
    """Wait (at most `timeout` seconds) until the relay archived the event `event_id`: every event
    written before it is archived by then. True when it was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if getattr(db, "published_events").find_one({"_id": event_id}, {"_id": 1}):
            return True
        eventlet.sleep(interval)
    return False


def scrubbed_dead_letter(letter, official_id):
    """The fields of a dead letter to rewrite so that it no longer names the official (None: nothing
    of theirs in it). The original values found in its message are also taken out of its error text."""
    try:
        message = json.loads(letter.get("body") or "")
    except ValueError:
        return None
    found = []
    _scrub_officials(message, official_id, found)
    if not found:
        return None
    values = sorted({v for v in found if isinstance(v, str) and v and v != ERASED_NAME}, key=len, reverse=True)
    update = {"body": json.dumps(message, ensure_ascii=False)}
    for field in ("error", "traceback"):
        if isinstance(letter.get(field), str):
            update[field] = forget(letter[field], values)
    return update


def _scrub_officials(value, official_id, found):
    """Replace, in place, every official object of `official_id` in a decoded message; collect the
    personal values it held."""
    if isinstance(value, dict):
        if value.get("id") == official_id and any(key in value for key in ERASED_OFFICIAL):
            found.extend(value.get(key) for key in ERASED_OFFICIAL)
            value.update(ERASED_OFFICIAL)
        for item in value.values():
            _scrub_officials(item, official_id, found)
    elif isinstance(value, list):
        for item in value:
            _scrub_officials(item, official_id, found)


def forget(text, values):
    """`text` without any of `values` (each replaced by a marker)."""
    for value in values:
        text = text.replace(value, "[erased]")
    return text


def strip_archived_events(db, ended_before, now, what="personal", chunk=1000):
    """Retention: archived events (`published_events`) about sessions that ended before
    `ended_before` keep the event and lose, for `what="personal"`, the official's name and contacts,
    for `what="qr_token"` the QR token (left empty: the event keeps its shape). One pass over the
    archive, written `chunk` at a time. Returns how many were changed. An archived event's times are
    UTC ISO strings (`backbone/events.py`), compared as such."""
    cutoff = ended_before.astimezone(timezone.utc).isoformat()
    if what == "personal":
        match, change = {"payload.official": {"$exists": True}}, _official_set("payload.official", STRIPPED_OFFICIAL)
    else:
        match, change = {"payload.qr_token": {"$nin": ["", None]}}, {"payload.qr_token": ""}
    marker = "{}_stripped_at".format(what)
    query = dict(match, **{marker: {"$exists": False}, "payload.session.ends_at": {"$lt": cutoff}})
    return in_chunks(db.published_events, query, {"$set": dict(change, **{marker: now})}, chunk)


def in_chunks(collection, query, update, chunk=1000):
    """Apply `update` to every document matching `query`: one scan for the ids, then one bulk write
    of an update by _id each per `chunk` of them (a scan per chunk would cost the whole collection
    each time; on SecantusDB updates by _id are several times faster than one update with $in).
    Returns how many."""
    ids, done = [], 0

    def write():
        return collection.bulk_write([UpdateOne({"_id": i}, update) for i in ids], ordered=False).modified_count

    for doc in collection.find(query, {"_id": 1}):
        ids.append(doc["_id"])
        if len(ids) == chunk:
            done += write()
            ids = []
    if ids:
        done += write()
    return done


def require_subject_or_admin(actor, official_id):
    """What is held about an official is theirs to read, and an admin's (who answers their requests)."""
    if auth.official_id_of(actor) == official_id:
        return
    auth.require_admin(actor)


def held_in_records(db, official_id):
    """What a service's platform records hold about an official, for "download my data": how many
    archived or waiting events and dead letters name them (the events themselves are the services'
    own answers, in their terms)."""
    return {"events": sum(getattr(db, c).count_documents({"payload.official.id": official_id}) for c in ARCHIVES),
            "dead_letters": getattr(db, DEAD_LETTERS).count_documents({"body": {"$regex": re.escape(official_id)}})}


# What a listing shows of a person's fields (the replay keeps the original; an erasure scrubs it).
_NAMES = ("full_name", "name_of_person")
_SECRETS = ("qr_token",)


def masked(value, key=None):
    """A decoded message as operators may see it: names cut to an initial, emails and phone numbers
    masked (`backbone.logs.mask`, in any text), QR tokens hidden."""
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if not isinstance(value, str) or not value:
        return value
    if key in _SECRETS:
        return "***"
    if key in _NAMES and value != ERASED_NAME:
        return value[0] + "***"
    return mask(value)
