"""Sign-in links (officials at `/me`, operator accounts at the console): no passwords.

A link holds a random token that is good once, for LINK_MINUTES; only its SHA-256 is stored, in the
gateway's `sign_in_links` (a TTL index removes the spent and the stale). Redeeming deletes the record
in the same step it reads it, so two browsers racing with one link get one session between them.
"""
import hashlib
import secrets
from datetime import timedelta

from pymongo import ASCENDING, IndexModel

from backbone.clock import utcnow

LINK_MINUTES = 15
INDEXES = {"sign_in_links": [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)]}


def _digest(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(db, audience, subject_id, now=None):
    """A new single-use token for `subject_id` (an official's or an operator account's id), valid
    LINK_MINUTES; `audience` ("official" | "operator") keeps one kind of link from opening the other."""
    token = secrets.token_urlsafe(32)
    now = now or utcnow()
    db.sign_in_links.insert_one({"_id": _digest(token), "audience": audience, "subject_id": subject_id,
                                 "created_at": now, "expires_at": now + timedelta(minutes=LINK_MINUTES)})
    return token


def redeem(db, audience, token, now=None):
    """The subject the token was issued for, once; None when unknown, spent, expired or for the other
    audience."""
    if not token or len(token) > 128:
        return None
    found = db.sign_in_links.find_one_and_delete(
        {"_id": _digest(token), "audience": audience, "expires_at": {"$gt": now or utcnow()}})
    return found["subject_id"] if found else None
