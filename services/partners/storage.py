"""How partners' records are kept and found: indexes, and paged lists.

Dates of agreements and offerings (valid_from, starts_from, ...) are stored as ISO strings
(`2025-03-13`): they are local calendar days, not instants, and ISO strings compare in date order.
"""
from pymongo import ASCENDING, IndexModel

INDEXES = {
    "partners": [
        IndexModel([("code", ASCENDING)], unique=True),
        IndexModel([("api_keys.hash", ASCENDING)]),
    ],
    "agreements": [IndexModel([("partner_id", ASCENDING), ("valid_until", ASCENDING)])],
    "offerings": [IndexModel([("partner_id", ASCENDING), ("status", ASCENDING)])],
}


def page(collection, query, limit, cursor=None, key="_id"):
    """One page of `query`, in order of the unique `key`. Returns (documents, next_cursor): the
    cursor is the last document's key, None on the last page."""
    if cursor:
        query = dict(query, **{key: {"$gt": cursor}})
    # One more than asked tells whether there is a next page without counting.
    docs = list(collection.find(query).sort(key, ASCENDING).limit(limit + 1))
    if len(docs) > limit:
        return docs[:limit], docs[limit - 1][key]
    return docs, None


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
