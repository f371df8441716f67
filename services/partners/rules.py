"""The partners' rules, as plain functions: an agreement's status on a local day, which agreement
covers an offering, API keys and what is kept of them, who may post and list what, the refusals, and
the payloads of the events partners publishes. No I/O: the day (`today`) and the instant (`at`) are
arguments; dates are ISO strings (`2025-03-13`), as they are stored."""
import hashlib
import secrets
from datetime import date, timedelta

from backbone import auth
from backbone.errors import conflict, forbidden, invalid, rule_broken
from contracts.common import AUDIENCE_GROUPS, require_current_audiences  # noqa: F401  (rules of offerings)

# Two are enough to rotate without downtime; a few more leave room for several integrations.
MAX_API_KEYS = 5

OFFERING_EVENT_FIELDS = ("partner_id", "agreement_id", "title", "title_en", "audience_groups", "modules",
                         "starts_from", "ends_by")


# -- agreements ------------------------------------------------------------------------------------

def as_date(value):
    """A stored day (an ISO string) as a date; a date stays as it is."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def agreement_status(agreement, today):
    """`pending`, `active` or `expired` on the local day `today`: valid from valid_from through
    valid_until, both included; from its termination day on, a terminated agreement is `expired`."""
    if agreement.get("terminated_on") and today >= as_date(agreement["terminated_on"]):
        return "expired"
    if today < as_date(agreement["valid_from"]):
        return "pending"
    return "active" if today <= as_date(agreement["valid_until"]) else "expired"


def refuse_if_ended(agreement, today):
    """An ended agreement (expired or terminated) is history: 422 `agreement_ended` for any change."""
    if agreement_status(agreement, today) == "expired":
        raise agreement_ended(agreement)


def amended_validity(agreement, valid_from=None, valid_until=None):
    """The agreement's validity before and after an amendment naming a new valid_from and/or
    valid_until (dates), as ({valid_from, valid_until}, {valid_from, valid_until}). 422 when the new
    dates are reversed or are the agreement's dates already."""
    before = {"valid_from": agreement["valid_from"], "valid_until": agreement["valid_until"]}
    after = {"valid_from": valid_from.isoformat() if valid_from else before["valid_from"],
             "valid_until": valid_until.isoformat() if valid_until else before["valid_until"]}
    if after["valid_until"] < after["valid_from"]:
        raise invalid({"valid_until": ["Must not be before valid_from ({}).".format(after["valid_from"])]})
    if after == before:
        raise invalid({"_schema": ["These are the agreement's dates already."]})
    return before, after


# -- offerings and the agreements that cover them --------------------------------------------------

def last_day(agreement):
    """The last local day the agreement covers (ISO): its valid_until, or the day before its
    termination day when that comes first."""
    last = agreement["valid_until"]
    if agreement.get("terminated_on"):
        last = min(last, (as_date(agreement["terminated_on"]) - timedelta(days=1)).isoformat())
    return last


def spans(agreement, offering):
    """Whether the agreement's validity holds the offering's whole window and its scope every one of
    the offering's audience groups (a scope that names no audience group covers them all)."""
    scoped_audiences = set(agreement["scope"]) & set(AUDIENCE_GROUPS)
    return (agreement["valid_from"] <= offering["starts_from"]
            and offering["ends_by"] <= last_day(agreement)
            and (not scoped_audiences or set(offering["audience_groups"]) <= scoped_audiences))


def covers(agreement, offering, on):
    """Whether `agreement` is active on the day `on` and covers the offering's whole window and every
    one of its audience groups (a scope that names no audience group covers them all)."""
    return agreement_status(agreement, on) == "active" and spans(agreement, offering)


def carries(agreement, offering, today):
    """Whether the agreement can carry the offering from `today` on: it has not ended (a renewal signed
    ahead, still pending, may) and it spans the offering's window and audiences."""
    return agreement["partner_id"] == offering["partner_id"] and (
        agreement_status(agreement, today) != "expired" and spans(agreement, offering))


def home_of(offering, agreements, today):
    """The agreement an offering belongs on from `today`: of the partner's `agreements` that carry it,
    the one that runs longest (its own on a tie, so nothing moves for nothing); None when none does
    (it stays on its own and ends with it)."""
    carrying = [a for a in agreements if carries(a, offering, today)]
    if not carrying:
        return None
    return max(carrying, key=lambda a: (last_day(a), a["_id"] == offering.get("agreement_id")))


def continuations(offerings, agreements, today):
    """[(offering, agreement)]: the partner's offerings that move onto another of its `agreements`,
    so a renewal continues them without re-posting and they outlive the agreement they were on.
    Only published offerings whose window has not ended by `today` move: the record of the past stays
    under the agreement that covered it."""
    moves = []
    for offering in offerings:
        if offering["status"] != "published" or offering["ends_by"] < today.isoformat():
            continue
        home = home_of(offering, agreements, today)
        if home is not None and home["_id"] != offering.get("agreement_id"):
            moves.append((offering, home))
    return moves


def coverage_day(offering, today, by_operator):
    """The day an offering must be covered on: today, except for the operator's record of the past
    (an offering whose window ended before today), judged on its last day."""
    last_day = as_date(offering["ends_by"])
    return last_day if by_operator and last_day < today else today


def covering_agreement(candidates, offering, on):
    """The agreement among `candidates` (the partner's) that covers the offering on the day `on`, the
    longest-running if several do; 422 `no_active_agreement` when none does."""
    covering = [a for a in candidates if covers(a, offering, on)]
    if not covering:
        raise no_active_agreement(offering)
    return max(covering, key=lambda a: a["valid_until"])


def offering_poster(actor, named_partner_id):
    """The partner an offering is posted for: a partner posts its own (403 when it names another),
    the operator names it (422 when it does not); 401 for nobody."""
    partner_id = auth.partner_id_of(actor) or named_partner_id
    if named_partner_id not in (None, partner_id):
        raise forbidden("A partner posts only its own offerings.")
    auth.require_operator_or_partner(actor, partner_id)
    if not partner_id:
        raise invalid({"partner_id": ["Required when the operator posts."]})
    return partner_id


def updated_offering(offering, changes):
    """The offering with `changes` (dates as dates or ISO strings) applied. 422 when its window ends
    before it starts, or `offering_withdrawn` once it is withdrawn. Coverage is checked apart."""
    changes = {k: v.isoformat() if isinstance(v, date) else v for k, v in changes.items()}
    updated = dict(offering, **changes)
    if updated["ends_by"] < updated["starts_from"]:
        raise invalid({"ends_by": ["Must not be before starts_from ({}).".format(updated["starts_from"])]})
    if offering["status"] != "published":
        raise rule_broken("offering_withdrawn", "Offering {} is withdrawn.".format(offering["id"]))
    return updated


# -- who may read what -----------------------------------------------------------------------------

def require_caller(actor):
    """The operator or any partner (401 for nobody); each then sees only what it may."""
    if not auth.is_operator(actor):
        auth.require_operator_or_partner(actor, auth.partner_id_of(actor), reading=True)


def listed_partner(actor, asked_partner_id=None):
    """Whose records a list shows: the operator's choice (None: everyone's), or the partner itself
    (403 when a partner asks for another's); a viewer reads as the operator does."""
    if auth.is_staff(actor):
        return asked_partner_id
    if asked_partner_id not in (None, auth.partner_id_of(actor)):
        raise forbidden("A partner sees only its own offerings.")
    return auth.partner_id_of(actor)


# -- API keys --------------------------------------------------------------------------------------

def new_api_key():
    """A fresh, unguessable API key (`tok_...`)."""
    return "tok_" + secrets.token_urlsafe(32)


def key_hash(api_key):
    """What identifies a key in storage: its SHA-256, so a stolen database holds no usable key."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def key_record(api_key, key_id, issued_at):
    """What is kept of a key: its id, hash and last four characters (to tell keys apart), never the key."""
    return {"id": key_id, "hash": key_hash(api_key), "hint": api_key[-4:], "issued_at": issued_at}


def revoked_key_record(key, at):
    """What is kept of a key once revoked: no hash, so it no longer authenticates."""
    return {"id": key["id"], "hint": key["hint"], "issued_at": key["issued_at"], "revoked_at": at}


def key_named(keys, key_id):
    """The key with id `key_id` among `keys`, or None."""
    return next((k for k in keys if k.get("id") == key_id), None)


# -- refusals --------------------------------------------------------------------------------------

def no_active_agreement(offering):
    return rule_broken(
        "no_active_agreement",
        "No active agreement of this partner covers {} to {} for {}.".format(
            offering["starts_from"], offering["ends_by"], ", ".join(offering["audience_groups"])),
        {"starts_from": ["Not covered by an active agreement."],
         "ends_by": ["Not covered by an active agreement."]})


def agreement_ended(agreement):
    return rule_broken(
        "agreement_ended",
        "Agreement {} has ended{}; record a new agreement instead.".format(
            agreement["id"], " (terminated)" if agreement.get("terminated_on") else ""))


def agreement_changed():
    return conflict("agreement_changed", "The agreement changed meanwhile; read it again.")


def offering_changed():
    return conflict("offering_changed", "The offering changed meanwhile; read it again.")


def partner_exists(code):
    return conflict("partner_exists", "A partner with code {} exists.".format(code), {"code": ["Already taken."]})


def too_many_api_keys():
    return rule_broken("too_many_api_keys",
                       "This partner has {} API keys; revoke one first.".format(MAX_API_KEYS))


# -- what the events say ---------------------------------------------------------------------------

def partner_event(partner):
    """The payload of `partner_onboarded`."""
    return {k: partner[k] for k in ("code", "name", "kind", "contact_email")} | {"partner_id": partner["id"]}


def agreement_event(agreement, **extra):
    """The payload of the agreement events: the agreement as it is now, and `extra` (signed_on,
    reason, terminated_on, the previous validity)."""
    return dict({"agreement_id": agreement["id"], "partner_id": agreement["partner_id"],
                 "title": agreement["title"], "valid_from": agreement["valid_from"],
                 "valid_until": agreement["valid_until"], "scope": agreement["scope"]}, **extra)


def offering_event(offering):
    """The payload of `offering_published` and `offering_updated`."""
    return dict({k: offering.get(k) for k in OFFERING_EVENT_FIELDS}, offering_id=offering["id"],
                revision=offering.get("revision"))


def withdrawal_event(offering, reason):
    """The payload of `offering_withdrawn`."""
    return {"offering_id": offering["id"], "partner_id": offering["partner_id"], "reason": reason}
