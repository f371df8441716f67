"""How partners' records are kept and found: partners with their API keys, agreements with their
history, offerings; the indexes, the records as stored, and every query and write over them.

Dates of agreements and offerings (valid_from, starts_from, ...) are stored as ISO strings
(`2025-03-13`): they are local calendar days, not instants, and ISO strings compare in date order.
Every function takes `db` (the worker's view) or `tx` (a transaction); the rules decide, these keep.
"""
from pymongo import ASCENDING, DESCENDING, IndexModel

from backbone.database import one_or_404
from backbone.paging import page

INDEXES = {
    "partners": [
        IndexModel([("code", ASCENDING)], unique=True),
        IndexModel([("api_keys.hash", ASCENDING)]),
    ],
    "agreements": [IndexModel([("partner_id", ASCENDING), ("valid_until", ASCENDING)])],
    "offerings": [IndexModel([("partner_id", ASCENDING), ("status", ASCENDING)]),
                  IndexModel([("agreement_id", ASCENDING)])],
}


# -- partners and their API keys -------------------------------------------------------------------

def partner_record(fields, partner_id, key, created_at):
    """A new partner as stored, with its first key's record."""
    return dict(fields, _id=partner_id, id=partner_id, created_at=created_at, api_keys=[key], revoked_api_keys=[])


def insert_partner(tx, partner):
    """Raises DuplicateKeyError when its code is taken (the unique index decides, not a read)."""
    tx.partners.insert_one(partner)


def get_partner(db, partner_id):
    """The partner, or 404."""
    return one_or_404(db.partners, partner_id, "partner")


def partner_by_key_hash(db, hashed):
    """{"id"} of the partner holding a live key with this hash, or None."""
    return db.partners.find_one({"api_keys.hash": hashed}, {"id": 1})


def add_api_key(db, partner_id, key, most):
    """Give the partner another key unless it holds `most` already; whether it was added (False
    also for an unknown partner). The limit is part of the update, so two at once cannot both pass it."""
    done = db.partners.update_one(
        {"_id": partner_id, "api_keys.{}".format(most - 1): {"$exists": False}}, {"$push": {"api_keys": key}})
    return bool(done.matched_count)


def revoke_api_key(db, partner_id, key_id, record):
    """Move a key to the revoked ones as `record`: the hash leaves with it, so it no longer authenticates."""
    db.partners.update_one({"_id": partner_id, "api_keys.id": key_id},
                           {"$pull": {"api_keys": {"id": key_id}}, "$push": {"revoked_api_keys": record}})


def partners_page(db, partner_id, limit, cursor=None):
    """A page of partners in order of code: all of them, or only `partner_id`'s record."""
    selection = {} if partner_id is None else {"_id": partner_id}
    return page(db.partners, selection, ["code"], limit, cursor)


# -- agreements ------------------------------------------------------------------------------------

def agreement_record(fields, partner_id, agreement_id, created_at):
    """A new agreement as stored: validated fields with dates as ISO strings, an empty history."""
    return {
        "_id": agreement_id, "id": agreement_id, "partner_id": partner_id, "title": fields["title"],
        "parties": fields["parties"], "signed_on": fields["signed_on"].isoformat(),
        "valid_from": fields["valid_from"].isoformat(), "valid_until": fields["valid_until"].isoformat(),
        "scope": fields["scope"], "history": [], "created_at": created_at,
    }


def insert_agreement(tx, agreement):
    tx.agreements.insert_one(agreement)


def get_agreement(db, agreement_id):
    """The agreement, or 404."""
    return one_or_404(db.agreements, agreement_id, "agreement")


def agreements_page(db, partner_id, limit, cursor=None):
    """A page of a partner's agreements."""
    return page(db.agreements, {"partner_id": partner_id}, ["_id"], limit, cursor)


def agreements_spanning(db, partner_id, starts_from, ends_by):
    """The partner's agreements whose validity spans the window, longest-running first: the
    candidates to cover an offering (the rules say which does)."""
    return list(db.agreements.find({
        "partner_id": partner_id, "valid_from": {"$lte": starts_from}, "valid_until": {"$gte": ends_by},
    }).sort("valid_until", DESCENDING))


def partner_agreements(tx, partner_id):
    """Every agreement of the partner, as the transaction sees them (ended ones too: the rules judge)."""
    return list(tx.agreements.find({"partner_id": partner_id}))


def note_continued(tx, agreement_id, to_agreement_id, offering_ids, at):
    """Keep in the agreement's history that these offerings moved onto another agreement."""
    entry = {"action": "continued", "at": at, "agreement_id": to_agreement_id, "offering_ids": offering_ids}
    tx.agreements.update_one({"_id": agreement_id}, {"$push": {"history": entry}})


def amend_validity(tx, agreement_id, before, after, reason, at):
    """Set the new validity and keep the amendment in the history. Conditional on the dates read and
    on no end announced since, so a concurrent amendment or sweep makes it match nothing (False)
    instead of being overwritten."""
    entry = {"action": "amended", "at": at, "reason": reason, "before": before, "after": after}
    done = tx.agreements.update_one(dict(before, _id=agreement_id, end_announced={"$ne": True}),
                                    {"$set": after, "$push": {"history": entry}})
    return bool(done.modified_count)


def terminate(tx, agreement, today, reason, at):
    """End the agreement on `today` (an ISO day), kept in the history. Marked announced, so the
    expiry sweep never announces it as expired too; conditional like an amendment (False when it
    changed since it was read), so the event carries the dates the agreement had."""
    entry = {"action": "terminated", "at": at, "reason": reason, "terminated_on": today}
    done = tx.agreements.update_one(
        {"_id": agreement["_id"], "end_announced": {"$ne": True},
         "valid_from": agreement["valid_from"], "valid_until": agreement["valid_until"]},
        {"$set": {"terminated_on": today, "end_announced": True}, "$push": {"history": entry}})
    return bool(done.modified_count)


def agreements_ended_unannounced(db, today):
    """The expiry sweep's work: agreements whose last valid day is before `today` (an ISO day) and
    whose end nobody announced yet."""
    return db.agreements.find({"end_announced": {"$ne": True}, "valid_until": {"$lt": today}})


def mark_expired(tx, agreement, at):
    """Record that the agreement's expiry is announced; False when another sweep (or an amendment)
    got there first, so each expiry is announced once."""
    done = tx.agreements.update_one(
        {"_id": agreement["_id"], "end_announced": {"$ne": True}, "valid_until": agreement["valid_until"]},
        {"$set": {"end_announced": True}, "$push": {"history": {"action": "expired", "at": at}}})
    return bool(done.modified_count)


# -- offerings -------------------------------------------------------------------------------------

def offering_record(fields, partner_id, offering_id, created_at):
    """A new, published offering as stored (its agreement_id is set once the rules found it)."""
    return {
        "_id": offering_id, "id": offering_id, "partner_id": partner_id, "title": fields["title"],
        "title_en": fields.get("title_en"), "audience_groups": fields["audience_groups"],
        "modules": fields["modules"], "starts_from": fields["starts_from"].isoformat(),
        "ends_by": fields["ends_by"].isoformat(), "status": "published", "created_at": created_at,
        "updated_at": created_at, "revision": 1,
    }


def insert_offering(tx, offering):
    tx.offerings.insert_one(offering)


def get_offering(db, offering_id):
    """The offering, or 404."""
    return one_or_404(db.offerings, offering_id, "offering")


def update_offering(tx, read, updated, changed):
    """Write the `changed` fields of `updated`. Conditional on the version `read` (its updated_at)
    and on it being published, so the event describes the offering as stored; False otherwise."""
    done = tx.offerings.update_one(
        {"_id": read["_id"], "status": "published", "updated_at": read.get("updated_at")},
        {"$set": {k: updated[k] for k in changed}, "$inc": {"revision": 1}})
    return bool(done.modified_count)


def next_revision(offering):
    """The offering's revision after one more change, as its offering_updated carries it (one stored
    before revisions were counted has none: $inc starts it at 1)."""
    return offering.get("revision", 0) + 1


def withdraw_offering(tx, offering_id, reason, at):
    """Withdraw a published offering; False when it was not (so two withdrawals at once publish one event)."""
    done = tx.offerings.update_one(
        {"_id": offering_id, "status": "published"},
        {"$set": {"status": "withdrawn", "withdrawal_reason": reason, "withdrawn_at": at}})
    return bool(done.modified_count)


def live_offerings(tx, partner_id, today):
    """The partner's published offerings whose window has not ended before `today` (an ISO day)."""
    return list(tx.offerings.find({"partner_id": partner_id, "status": "published", "ends_by": {"$gte": today}}))


def move_offering(tx, offering_id, agreement_id, at):
    """Put the offering on another agreement (a new version: a concurrent update is then refused)."""
    tx.offerings.update_one({"_id": offering_id}, {"$set": {"agreement_id": agreement_id, "updated_at": at},
                                                   "$inc": {"revision": 1}})


def offerings_on(tx, agreement_id):
    """The ids of the published offerings the agreement carries, in order."""
    return [doc["_id"] for doc in tx.offerings.find(
        {"agreement_id": agreement_id, "status": "published"}, {"_id": 1}).sort("_id")]


def offering_filter(partner_id=None, audience=None, day=None, status=None):
    """Offerings of a partner, for an audience group, whose window contains `day`, in a status."""
    query = {}
    if partner_id:
        query["partner_id"] = partner_id
    if audience:
        query["audience_groups"] = audience
    if day:
        query["starts_from"] = {"$lte": day.isoformat()}
        query["ends_by"] = {"$gte": day.isoformat()}
    if status:
        query["status"] = status
    return query


def offerings_page(db, limit, cursor=None, partner_id=None, audience=None, day=None, status=None):
    """A page of the offerings that match the filter (`offering_filter`)."""
    return page(db.offerings, offering_filter(partner_id, audience, day, status), ["_id"], limit, cursor)
