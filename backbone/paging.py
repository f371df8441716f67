"""One way to page through a list: `?limit=&cursor=` → `{"items": [...], "next_cursor": ...}`.

A page is read in the order of a list of fields whose last one is unique (`["starts_at", "_id"]`),
and the next page starts after the last document's values (keyset paging: no skip, so the cost of a
page does not grow with how far the caller has read). The cursor is those values, opaque to the
caller; one that this module did not write is refused with 422 naming `cursor`.
"""
import base64
import binascii
import json
import math
from datetime import datetime

from bson import json_util
from bson.errors import BSONError
from marshmallow import Schema, fields, validate
from pymongo import ASCENDING

from backbone.errors import invalid

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class PageQuery(Schema):
    """The paging part of every list's query string; lists add their filters to it."""
    limit = fields.Int(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.Str(validate=validate.Length(min=1, max=400))


def encode_cursor(values):
    return base64.urlsafe_b64encode(json_util.dumps(values).encode("utf-8")).decode("ascii").rstrip("=")


INT64 = 2 ** 63


def _storable(value):
    """What a sort key may hold: text, a date, a flag, nothing, or a number MongoDB can compare."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, datetime)):
        return True
    if isinstance(value, int):
        return -INT64 <= value < INT64
    return isinstance(value, float) and math.isfinite(value)


def decode_cursor(cursor, width):
    """The values a cursor carries, or 422: a cursor is only ever what `page` wrote."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        values = json_util.loads(text)
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeError, BSONError, json.JSONDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != width or not all(_storable(v) for v in values):
        raise invalid({"cursor": ["Not a cursor this list returned."]})
    return values


def after(order, values):
    """The filter for documents after `values` in `order` (ascending fields)."""
    clauses = []
    for depth, field in enumerate(order):
        clause = {order[i]: values[i] for i in range(depth)}
        clause[field] = {"$gt": values[depth]}
        clauses.append(clause)
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def page(collection, query, order, limit, cursor=None, projection=None):
    """One page of `query` in `order`. Returns (documents, next_cursor); next_cursor is None on the
    last page."""
    if cursor:
        following = after(order, decode_cursor(cursor, len(order)))
        # Side by side when no field repeats: SecantusDB's planner uses an index for the fields of one
        # document, and scans for the same fields inside an $and.
        query = dict(query, **following) if not set(query) & set(following) else {"$and": [query, following]}
    # One more than asked tells whether there is a next page without counting.
    docs = list(collection.find(query, projection).sort([(f, ASCENDING) for f in order]).limit(limit + 1))
    if len(docs) <= limit:
        return docs, None
    last = docs[limit - 1]
    return docs[:limit], encode_cursor([last.get(f) for f in order])


def listed(docs_and_cursor, shape):
    """`page`'s answer as the API's list: {"items": [shape(doc)...], "next_cursor"}."""
    docs, cursor = docs_and_cursor
    return {"items": [shape(doc) for doc in docs], "next_cursor": cursor}
