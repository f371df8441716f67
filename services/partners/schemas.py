"""What partners and operators may send, and what they get back."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from backbone.contracts import AUDIENCE_GROUPS

KINDS = ("university", "operator", "venue_host")

Text = lambda n, **kw: fields.Str(validate=validate.Length(min=1, max=n), **kw)  # noqa: E731


class PartnerIn(Schema):
    code = fields.Str(required=True, validate=[
        validate.Length(min=2, max=32),
        validate.Regexp(r"^[A-Z0-9][A-Z0-9-]*$", error="Upper-case letters, digits and dashes only."),
    ])
    name = Text(200, required=True)
    kind = fields.Str(required=True, validate=validate.OneOf(KINDS))
    contact_email = fields.Email(required=True, validate=validate.Length(max=254))


class AgreementIn(Schema):
    title = Text(300, required=True)
    signed_on = fields.Date(required=True)
    valid_from = fields.Date(required=True)
    valid_until = fields.Date(required=True)
    scope = fields.List(Text(64), load_default=list, validate=validate.Length(max=50))

    @validates_schema
    def dates_in_order(self, data, **kwargs):
        if data["valid_until"] < data["valid_from"]:
            raise ValidationError("Must not be before valid_from.", "valid_until")


class ModuleIn(Schema):
    title = Text(300, required=True)
    hours = fields.Float(required=True, validate=validate.Range(min=0.5, max=200))


class OfferingIn(Schema):
    # Operators post on a partner's behalf by naming it; a partner's own key implies it.
    partner_id = fields.Str(validate=validate.Length(max=64))
    title = Text(300, required=True)
    title_en = Text(300, allow_none=True)
    audience_groups = fields.List(
        fields.Str(validate=validate.OneOf(AUDIENCE_GROUPS)), required=True,
        validate=validate.Length(min=1, max=len(AUDIENCE_GROUPS)))
    modules = fields.List(fields.Nested(ModuleIn), load_default=list, validate=validate.Length(max=30))
    starts_from = fields.Date(required=True)
    ends_by = fields.Date(required=True)

    @validates_schema
    def dates_in_order(self, data, **kwargs):
        if data["ends_by"] < data["starts_from"]:
            raise ValidationError("Must not be before starts_from.", "ends_by")
