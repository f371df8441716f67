"""The audit of who acted: one record per write that reached the gateway from someone it knew (every
non-GET `@api` route, whose caller it authenticated, and every console form action).

    {at, actor: auth.actor_label(...), route: "POST /partners/<partner_id>/keys" | "console: ...",
     target: {path parameter: value}, targets: [values], status, correlation_id, expires_at}

No request body is kept (they hold names, emails and phones): the route and its ids say what was
touched, the correlation id finds the rest (events, notices) in the services' own trails. Records
expire AUDIT_RETENTION_DAYS after they are written (a TTL index on `expires_at`).
"""
from datetime import datetime, timedelta, timezone

from marshmallow import Schema, fields, validate
from nameko import config
from pymongo import ASCENDING, IndexModel

from backbone import auth, paging
from backbone.clock import utcnow
from backbone.database import new_id
from backbone.errors import invalid, validated

DEFAULT_RETENTION_DAYS = 400
INDEXES = {"audit": [
    IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0),
    IndexModel([("at", ASCENDING), ("_id", ASCENDING)]),
    IndexModel([("actor", ASCENDING), ("at", ASCENDING), ("_id", ASCENDING)]),
    IndexModel([("targets", ASCENDING), ("at", ASCENDING), ("_id", ASCENDING)]),
]}
ORDER = ["at", "_id"]


def retention_days():
    return int(config.get("AUDIT_RETENTION_DAYS") or DEFAULT_RETENTION_DAYS)


def record(db, actor, route, target, status, correlation_id, now=None):
    """Write one audit record. Only ids go in `target` (path parameters), never a body."""
    now = now or utcnow()
    target = {str(k): str(v)[:300] for k, v in (target or {}).items()}
    db.audit.insert_one({"_id": new_id("audit"), "at": now, "actor": auth.actor_label(actor), "route": route[:200], "target": target,
                         "targets": sorted(set(target.values())), "status": int(status),
                         "correlation_id": (correlation_id or "")[:64],
                         "expires_at": now + timedelta(days=retention_days())})


class AuditLogQuery(paging.PageQuery):
    actor = fields.Str(validate=validate.Length(min=1, max=120))
    target = fields.Str(validate=validate.Length(min=1, max=300))
    since = fields.AwareDateTime(default_timezone=timezone.utc)


def public(doc):
    return {"id": str(doc["_id"]), "at": doc["at"], "actor": doc["actor"], "route": doc["route"],
            "target": doc.get("target") or {}, "status": doc["status"], "correlation_id": doc.get("correlation_id")}


def query(db, actor, args):
    """GET /audit (admins): oldest first from `since`, by actor label and/or a target id."""
    auth.require_admin(actor)
    asked = validated(AuditLogQuery(), args)
    found = {}
    if asked.get("actor"):
        found["actor"] = asked["actor"]
    if asked.get("target"):
        found["targets"] = asked["target"]
    if asked.get("since"):
        since = asked["since"]
        if not datetime(2000, 1, 1, tzinfo=timezone.utc) <= since <= datetime(2100, 1, 1, tzinfo=timezone.utc):
            raise invalid({"since": ["Between 2000 and 2099."]})
        found["at"] = {"$gte": since}
    return paging.listed(paging.page(db.audit, found, ORDER, asked["limit"], asked.get("cursor")), public)


def parameters():
    """The query of GET /audit, for the OpenAPI document."""
    def one(name, **schema):
        return {"in": "query", "name": name, "required": False, "schema": dict({"type": "string"}, **schema)}
    return [one("actor", maxLength=120, description='"system", "operator:<id>", "partner:<id>", ...'),
            one("target", maxLength=300, description="An id the write's path named."),
            one("since", format="date-time"), one("limit", type="integer", minimum=1, maximum=paging.MAX_LIMIT),
            one("cursor", maxLength=400)]
