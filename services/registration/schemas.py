"""What units, officials, registrations, quotas, check-ins and merges look like on the way in."""
import phonenumbers
from marshmallow import Schema, ValidationError, fields, validate, validates

from contracts.common import AUDIENCE_GROUPS

Text = lambda n, **kw: fields.Str(validate=validate.Length(min=1, max=n), **kw)  # noqa: E731
UNIT_KINDS = ("city", "district", "ward_commune", "department")
UnitCode = lambda **kw: fields.Str(validate=[  # noqa: E731
    validate.Length(min=1, max=32), validate.Regexp(r"^[A-Za-z0-9_.-]+$")], **kw)


def vietnamese_phone(value):
    """+84 form of a Vietnamese mobile or landline number, or ValidationError."""
    try:
        number = phonenumbers.parse(value, "VN")
    except phonenumbers.NumberParseException:
        raise ValidationError("Not a phone number.")
    if number.country_code != 84 or not phonenumbers.is_valid_number(number):
        raise ValidationError("Not a Vietnamese mobile or landline number.")
    if phonenumbers.number_type(number) not in (
            phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        raise ValidationError("Not a Vietnamese mobile or landline number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class Phone(fields.Str):
    def _deserialize(self, value, attr, data, **kwargs):
        return vietnamese_phone(super()._deserialize(value, attr, data, **kwargs))


class UnitIn(Schema):
    code = UnitCode(required=True)
    name = Text(200, required=True)
    kind = fields.Str(required=True, validate=validate.OneOf(UNIT_KINDS))
    parent_code = fields.Str(allow_none=True, validate=validate.Length(max=32))


class MergedUnit(Schema):
    code = UnitCode(required=True)
    name = Text(200, required=True)
    kind = fields.Str(validate=validate.OneOf(UNIT_KINDS))
    parent_code = fields.Str(allow_none=True, validate=validate.Length(max=32))


class UnitMergeIn(Schema):
    from_ = fields.List(UnitCode(), required=True, data_key="from", validate=validate.Length(min=1, max=50))
    into = fields.Nested(MergedUnit, required=True)


class OfficialIn(Schema):
    full_name = Text(200, required=True)
    email = fields.Email(required=True, validate=validate.Length(max=254))
    phone = Phone(required=True, validate=validate.Length(max=32))
    unit_code = Text(32, required=True)
    audience_group = fields.Str(required=True, validate=validate.OneOf(AUDIENCE_GROUPS))
    language = fields.Str(load_default="vi", validate=validate.OneOf(("vi", "en")))

    @validates("email")
    def lower_case(self, value, **kwargs):
        if value != value.strip():
            raise ValidationError("No surrounding spaces.")


class OfficialQuery(Schema):
    q = fields.Str(validate=validate.Length(max=200))
    unit_code = fields.Str(validate=validate.Length(max=32))
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.Str(validate=validate.Length(max=200))


class RegistrationIn(Schema):
    official_id = Text(64, required=True)
    # The operator records registrations of classes whose cut-off has passed (the 2025 programme
    # began before this system did); nobody else may, and it must be asked for explicitly.
    after_cutoff = fields.Bool(load_default=False)


class CancellationIn(Schema):
    reason = fields.Str(validate=validate.Length(max=500))
    cause = fields.Str(load_default="official", validate=validate.OneOf(("official", "operator")))


class RegistrationQuery(Schema):
    status = fields.Str(validate=validate.OneOf(("confirmed", "waitlisted", "cancelled", "completed")))
    limit = fields.Int(load_default=100, validate=validate.Range(min=1, max=1000))
    cursor = fields.Str(validate=validate.Length(max=200))


class QuotasIn(Schema):
    """Seats per unit on one session: `{"quotas": {"Q1": 30, "Q3": 30}}`; 0 removes a unit's quota."""
    quotas = fields.Dict(keys=UnitCode(), values=fields.Int(strict=True, validate=validate.Range(min=0, max=10000)),
                         required=True)


class CheckinIn(Schema):
    qr_token = Text(64, required=True)
    # 1-based; by default the part running now, else the first.
    part = fields.Int(strict=True, validate=validate.Range(min=1, max=20))


class ReportQuery(Schema):
    format = fields.Str(load_default="json", validate=validate.OneOf(("json", "csv", "xlsx")))


# Documented at GET /openapi.json; the gateway's routes name them.
BODIES = {"UnitIn": UnitIn, "UnitMergeIn": UnitMergeIn, "OfficialIn": OfficialIn, "RegistrationIn": RegistrationIn,
          "CancellationIn": CancellationIn, "QuotasIn": QuotasIn, "CheckinIn": CheckinIn}
QUERIES = {"OfficialQuery": OfficialQuery, "RegistrationQuery": RegistrationQuery, "ReportQuery": ReportQuery}
