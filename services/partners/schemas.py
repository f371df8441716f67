"""What partners and operators may send, and what they get back. Every string has a length limit and
every schema refuses unknown fields (marshmallow's default), so nothing unexpected, and no `$`-prefixed
key, is ever stored. The `public_*` functions say what of a record leaves the service."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from backbone.fields import Id, OneOf, Text
from backbone.paging import PageQuery
from contracts.common import AUDIENCE_GROUPS
from services.partners.rules import agreement_status

KINDS = ("university", "operator", "venue_host")
OFFERING_STATUSES = ("published", "withdrawn")


def Audiences(**kwargs):  # noqa: N802
    return fields.List(OneOf(AUDIENCE_GROUPS),
                       validate=validate.Length(min=1, max=len(AUDIENCE_GROUPS)), **kwargs)


def in_order(data, first, last):
    """Refuse `last` before `first` (both present)."""
    if first in data and last in data and data[last] < data[first]:
        raise ValidationError("Must not be before {}.".format(first), last)


# -- partners ---------------------------------------------------------------------------------------

class ContactIn(Schema):
    name = Text(200, required=True)
    role = Text(100)
    email = fields.Email(validate=validate.Length(max=254))
    phone = Text(32)


class PartnerIn(Schema):
    code = fields.Str(required=True, validate=[
        validate.Length(min=2, max=32),
        validate.Regexp(r"^[A-Z0-9][A-Z0-9-]*$", error="Upper-case letters, digits and dashes only."),
    ])
    name = Text(200, required=True)
    kind = OneOf(KINDS, required=True)
    contact_email = fields.Email(required=True, validate=validate.Length(max=254))
    contacts = fields.List(fields.Nested(ContactIn), load_default=list, validate=validate.Length(max=10))


# -- agreements -------------------------------------------------------------------------------------

class AgreementIn(Schema):
    title = Text(300, required=True)
    parties = fields.List(Text(200), load_default=list, validate=validate.Length(max=10), metadata={
        "description": "The signatories as the agreement names them, e.g. HCMC-DXCENTER and the partner."})
    signed_on = fields.Date(required=True)
    valid_from = fields.Date(required=True)
    valid_until = fields.Date(required=True)
    scope = fields.List(Text(64), load_default=list, validate=validate.Length(max=50), metadata={
        "description": "The audience groups it covers (none named: all of them) and the kinds of "
                       "training, e.g. ai_office_work."})

    @validates_schema
    def dates_in_order(self, data, **kwargs):
        in_order(data, "valid_from", "valid_until")


class AgreementAmendment(Schema):
    """New validity dates (either or both) and why."""
    valid_from = fields.Date()
    valid_until = fields.Date()
    reason = Text(500, required=True)

    @validates_schema
    def names_a_date(self, data, **kwargs):
        if "valid_from" not in data and "valid_until" not in data:
            raise ValidationError("Name a new valid_from, valid_until or both.", "_schema")
        in_order(data, "valid_from", "valid_until")


class AgreementTermination(Schema):
    reason = Text(500)


# -- offerings --------------------------------------------------------------------------------------

class ModuleIn(Schema):
    title = Text(300, required=True)
    hours = fields.Float(required=True, validate=validate.Range(min=0.5, max=200))


class OfferingIn(Schema):
    partner_id = Id(metadata={
        "description": "Only when the operator posts on a partner's behalf; a partner's key implies it."})
    title = Text(300, required=True, metadata={"description": "The title in Vietnamese."})
    title_en = Text(300, allow_none=True, metadata={"description": "The title in English (optional)."})
    audience_groups = Audiences(required=True)
    modules = fields.List(fields.Nested(ModuleIn), load_default=list, validate=validate.Length(max=30))
    starts_from = fields.Date(required=True)
    ends_by = fields.Date(required=True)

    @validates_schema
    def dates_in_order(self, data, **kwargs):
        in_order(data, "starts_from", "ends_by")


class OfferingUpdate(Schema):
    """Any of an offering's fields; what is not named stays as it is. The result is checked against
    the partner's agreements again."""
    title = Text(300)
    title_en = Text(300, allow_none=True)
    audience_groups = Audiences()
    modules = fields.List(fields.Nested(ModuleIn), validate=validate.Length(max=30))
    starts_from = fields.Date()
    ends_by = fields.Date()

    @validates_schema
    def names_a_change(self, data, **kwargs):
        if not data:
            raise ValidationError("Name at least one field to change.", "_schema")
        in_order(data, "starts_from", "ends_by")


class OfferingWithdrawal(Schema):
    reason = Text(500)


# -- list queries (?limit=&cursor=...) --------------------------------------------------------------

class PartnerQuery(PageQuery):
    """Partners in order of code; a partner sees only itself."""


class AgreementQuery(PageQuery):
    """A partner's agreements."""


class OfferingQuery(PageQuery):
    partner_id = Id()
    audience = OneOf(AUDIENCE_GROUPS)
    date = fields.Date(metadata={"description": "Offerings whose window contains this day."})
    status = OneOf(OFFERING_STATUSES)


# -- what leaves the service ------------------------------------------------------------------------

def public_key(record):
    """A key as its holder and the operator see it: id, hint and dates."""
    # .get: keys issued before keys had ids and hints (early dev databases) have neither.
    return {"key_id": record.get("id"), "hint": record.get("hint"), "issued_at": record["issued_at"],
            "revoked_at": record.get("revoked_at")}


def public_partner(doc):
    """A partner with its keys' ids and hints; never a key or its hash."""
    out = {k: doc.get(k) for k in ("id", "code", "name", "kind", "contact_email", "contacts", "created_at")}
    out["api_keys"] = [public_key(k) for k in doc["api_keys"]]
    out["revoked_api_keys"] = [public_key(k) for k in doc.get("revoked_api_keys", [])]
    return out


def public_agreement(doc, today):
    """An agreement with its status on the local day `today`."""
    out = {k: doc.get(k) for k in ("id", "partner_id", "title", "parties", "signed_on", "valid_from",
                                   "valid_until", "scope", "terminated_on", "history", "created_at")}
    out["status"] = agreement_status(doc, today)
    return out


def public_offering(doc):
    """An offering with its status and the agreement that covers it."""
    return {k: doc.get(k) for k in (
        "id", "partner_id", "agreement_id", "title", "title_en", "audience_groups", "modules",
        "starts_from", "ends_by", "status", "withdrawal_reason", "created_at", "updated_at", "withdrawn_at")}


# Documented at GET /openapi.json; the gateway's routes name them as request bodies and list queries.
BODIES = {
    "PartnerIn": PartnerIn,
    "AgreementIn": AgreementIn,
    "AgreementAmendment": AgreementAmendment,
    "AgreementTermination": AgreementTermination,
    "OfferingIn": OfferingIn,
    "OfferingUpdate": OfferingUpdate,
    "OfferingWithdrawal": OfferingWithdrawal,
}

QUERIES = {
    "PartnerQuery": PartnerQuery,
    "AgreementQuery": AgreementQuery,
    "OfferingQuery": OfferingQuery,
}
