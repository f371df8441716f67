"""Named operator accounts and their personal API tokens, in the gateway's own database.

An account is a person at the Digital Transformation Centre: {full_name, email, role: admin |
operator | viewer, active}. It signs in to the console by a link sent to its email (no password) and
may hold personal API tokens (`op_...`), shown once and stored as their SHA-256 only. Deactivating
an account stops its tokens and console sessions at the next request: both are checked against the
account each time, never cached. OPERATOR_TOKEN stays the bootstrap admin ("system" in the audit).
"""
import hashlib
import secrets

from marshmallow import Schema, fields, validate
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from backbone import auth
from backbone.clock import utcnow
from backbone.database import new_id
from backbone.errors import DomainError, conflict, forbidden, invalid, not_found, validated

TOKEN_PREFIX = "op_"
INDEXES = {
    # The email, lower-cased, is unique: it is how a person signs in.
    "operator_accounts": [IndexModel([("email_key", ASCENDING)], unique=True)],
    "operator_tokens": [IndexModel([("digest", ASCENDING)], unique=True),
                        IndexModel([("operator_id", ASCENDING)])],
}


class OperatorIn(Schema):
    full_name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    email = fields.Email(required=True, validate=validate.Length(max=254))
    role = fields.Str(required=True, validate=validate.OneOf(auth.ACCESS_LEVELS))


def digest(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def public(account):
    return {"id": account["_id"], "full_name": account["full_name"], "email": account["email"],
            "role": account["role"], "active": account["active"], "created_at": account["created_at"],
            "created_by": account.get("created_by")}


def as_actor(account):
    """The actor an account acts as (backbone/auth.py's shape)."""
    return {"role": "operator", "access": account["role"], "operator_id": account["_id"],
            "name": account["full_name"]}


def create(db, actor, body):
    """201's body for a new account; 422 naming the fields, 409 `email_taken`."""
    auth.require_admin(actor)
    data = validated(OperatorIn(), body)
    email = data["email"].strip()
    account = {"_id": new_id("operator"), "full_name": data["full_name"].strip(), "email": email,
               "email_key": email.lower(), "role": data["role"], "active": True, "created_at": utcnow(),
               "created_by": auth.actor_label(actor)}
    if not account["full_name"]:
        raise invalid({"full_name": ["Must not be blank."]})
    try:
        db.operator_accounts.insert_one(account)
    except DuplicateKeyError:
        raise conflict("email_taken", "An operator account already has this email.",
                       {"email": ["Already an operator account's."]})
    return public(account)


def listed(db, actor):
    auth.require_admin(actor)
    return {"items": [public(a) for a in db.operator_accounts.find({}).sort([("created_at", ASCENDING)])]}


def account_or_404(db, operator_id):
    found = db.operator_accounts.find_one({"_id": operator_id}) if isinstance(operator_id, str) else None
    if found is None:
        raise not_found("operator", operator_id)
    return found


def deactivate(db, actor, operator_id):
    """The account, inactive from now on: its tokens and console sessions open nothing any more."""
    auth.require_admin(actor)
    account = account_or_404(db, operator_id)
    db.operator_accounts.update_one({"_id": operator_id}, {"$set": {
        "active": False, "deactivated_at": utcnow(), "deactivated_by": auth.actor_label(actor)}})
    # Its console sessions are forgotten too (they are checked against the account anyway).
    db.console_sessions.delete_many({"operator_id": operator_id})
    return public(dict(account, active=False))


def _require_admin_or_self(actor, operator_id):
    if not actor:
        raise DomainError("unauthenticated", "A token is required.", {}, 401)
    if auth.is_admin(actor) or (auth.is_staff(actor) and actor.get("operator_id") == operator_id):
        return
    raise forbidden("Only an admin, or the account itself, may manage its tokens.")


def issue_token(db, actor, operator_id):
    """{id, api_token}: a new personal token, shown this once."""
    _require_admin_or_self(actor, operator_id)
    account = account_or_404(db, operator_id)
    if not account["active"]:
        raise DomainError("operator_inactive", "The account is deactivated.", {}, 422)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = {"_id": new_id("optoken"), "operator_id": operator_id, "digest": digest(token),
              "hint": token[:7], "created_at": utcnow(), "created_by": auth.actor_label(actor), "revoked_at": None}
    db.operator_tokens.insert_one(record)
    return {"id": record["_id"], "operator_id": operator_id, "api_token": token}


def revoke_token(db, actor, operator_id, token_id):
    _require_admin_or_self(actor, operator_id)
    account_or_404(db, operator_id)
    found = db.operator_tokens.find_one({"_id": token_id, "operator_id": operator_id})
    if found is None:
        raise not_found("token", token_id)
    when = found.get("revoked_at") or utcnow()
    db.operator_tokens.update_one({"_id": token_id}, {"$set": {"revoked_at": when}})
    return {"id": token_id, "operator_id": operator_id, "revoked_at": when}


def authenticate(db, token):
    """The actor of a personal token, or None: unknown, revoked, or its account deactivated."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    found = db.operator_tokens.find_one({"digest": digest(token), "revoked_at": None}, {"operator_id": 1})
    if found is None:
        return None
    account = db.operator_accounts.find_one({"_id": found["operator_id"], "active": True})
    return as_actor(account) if account else None


def active_account(db, operator_id):
    """The active account of that id, or None (a console session of a deactivated account)."""
    if not operator_id:
        return None
    return db.operator_accounts.find_one({"_id": operator_id, "active": True})


def by_email(db, email):
    """The active account whose email this is (case ignored), or None."""
    if not isinstance(email, str) or not email.strip() or len(email) > 254:
        return None
    return db.operator_accounts.find_one({"email_key": email.strip().lower(), "active": True})
