"""Who asks. The gateway authenticates the bearer token and passes an `actor` with every RPC call;
each service checks it again before any write (a service is never more trusting than its gateway).

    {"role": "operator", "access": "admin" | "operator" | "viewer", "operator_id": "..." | None, "name": "..."}
    {"role": "coordinator", "coordinator_id": "...", "unit_codes": ["...", ...]}   (its units and their successors)
    {"role": "official", "official_id": "..."}
    {"role": "partner", "partner_id": "..."}

`OPERATOR_TOKEN` is the bootstrap admin (and machines such as Prometheus): `SYSTEM`, "system" in the audit.
A viewer is an operator who reads only: `require_operator(actor)` (a write) refuses it,
`require_operator(actor, reading=True)` admits it.
"""
from backbone.errors import DomainError, forbidden

SYSTEM = {"role": "operator", "access": "admin", "operator_id": None, "name": "system"}
OPERATOR = SYSTEM
ACCESS_LEVELS = ("admin", "operator", "viewer")
# What a calendar feed's read-only token starts with: it opens its feed only, in `?token=`, and is
# refused as a Bearer token anywhere (the gateway tells it apart from an API key by this alone).
FEED_TOKEN_PREFIX = "feed_"


def is_staff(actor):
    """Any operator account, viewers included: may read what operators read."""
    return bool(actor) and actor.get("role") == "operator"


def is_operator(actor):
    """An operator who may write (admin or operator, not a viewer)."""
    return is_staff(actor) and actor.get("access", "operator") != "viewer"


def is_admin(actor):
    return is_staff(actor) and actor.get("access") == "admin"


def coordinator_units(actor):
    """The unit codes a coordinator acts for (a set), or None when the actor is no coordinator."""
    if actor and actor.get("role") == "coordinator":
        return set(actor.get("unit_codes") or ())
    return None


def official_id_of(actor):
    return actor.get("official_id") if actor and actor.get("role") == "official" else None


def actor_label(actor):
    """Who acted, as the audit records it: "system", "operator:<id>", "coordinator:<id>",
    "partner:<id>", "official:<id>" (never a name or an address)."""
    if not actor:
        return "anonymous"
    role = actor.get("role")
    if role == "operator":
        return f"operator:{actor['operator_id']}" if actor.get("operator_id") else "system"
    key = {"coordinator": "coordinator_id", "partner": "partner_id", "official": "official_id"}.get(role)
    return f"{role}:{actor.get(key)}" if key else "anonymous"


def partner_id_of(actor):
    return actor.get("partner_id") if actor and actor.get("role") == "partner" else None


def require_operator(actor, reading=False):
    """An operator; for a read (`reading=True`) a viewer too."""
    if not actor:
        raise DomainError("unauthenticated", "A token is required.", {}, 401)
    if reading and is_staff(actor):
        return
    if not is_operator(actor):
        raise forbidden("A viewer reads only." if is_staff(actor) else "Only an operator may do this.")


def require_admin(actor):
    if not actor:
        raise DomainError("unauthenticated", "A token is required.", {}, 401)
    if not is_admin(actor):
        raise forbidden("Only an admin may do this.")


def require_operator_or_partner(actor, partner_id, reading=False):
    """The operator (for a read, `reading=True`, a viewer too), or the partner that owns the thing
    (`partner_id`)."""
    if not actor:
        raise DomainError("unauthenticated", "A token is required.", {}, 401)
    if actor.get("role") not in ("operator", "partner"):
        # A coordinator or an official has no partner id: None == None must not let it in.
        raise forbidden("Only an operator or a partner may do this.")
    own = partner_id_of(actor)
    if (is_staff(actor) if reading else is_operator(actor)) or (own is not None and own == partner_id):
        return
    if is_staff(actor):
        raise forbidden("A viewer reads only.")
    raise forbidden("This partner may only act on its own records.")
