"""Who asks. The gateway authenticates the bearer token and passes an `actor` with every RPC call;
each service checks it again before any write (a service is never more trusting than its gateway).

    {"role": "operator"}
    {"role": "partner", "partner_id": "..."}
"""
from backbone.errors import DomainError, forbidden

OPERATOR = {"role": "operator"}
# What a calendar feed's read-only token starts with: it opens its feed only, in `?token=`, and is
# refused as a Bearer token anywhere (the gateway tells it apart from an API key by this alone).
FEED_TOKEN_PREFIX = "feed_"


def is_operator(actor):
    return bool(actor) and actor.get("role") == "operator"


def partner_id_of(actor):
    return actor.get("partner_id") if actor and actor.get("role") == "partner" else None


def require_operator(actor):
    if not actor:
        raise DomainError("unauthenticated", "A token is required.", {}, 401)
    if not is_operator(actor):
        raise forbidden("Only an operator may do this.")


def require_operator_or_partner(actor, partner_id):
    """The operator, or the partner that owns the thing (`partner_id`)."""
    if not actor:
        raise DomainError("unauthenticated", "A token is required.", {}, 401)
    if is_operator(actor) or partner_id_of(actor) == partner_id:
        return
    raise forbidden("This partner may only act on its own records.")
