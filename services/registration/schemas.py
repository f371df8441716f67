"""What units and officials look like on the way in."""
import phonenumbers
from marshmallow import Schema, ValidationError, fields, validate, validates

from backbone.contracts import AUDIENCE_GROUPS

Text = lambda n, **kw: fields.Str(validate=validate.Length(min=1, max=n), **kw)  # noqa: E731
UNIT_KINDS = ("city", "district", "ward_commune", "department")


def vietnamese_phone(value):
    """+84 form of a Vietnamese mobile or landline number, or ValidationError."""
    try:
        number = phonenumbers.parse(value, "VN")
    except phonenumbers.NumberParseException:
        raise ValidationError("Not a phone number.")
    if number.country_code != 84 or not phonenumbers.is_valid_number(number):
        raise ValidationError("Not a Vietnamese mobile or landline number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class Phone(fields.Str):
    def _deserialize(self, value, attr, data, **kwargs):
        return vietnamese_phone(super()._deserialize(value, attr, data, **kwargs))


class UnitIn(Schema):
    code = fields.Str(required=True, validate=[
        validate.Length(min=1, max=32), validate.Regexp(r"^[A-Za-z0-9_.-]+$")])
    name = Text(200, required=True)
    kind = fields.Str(required=True, validate=validate.OneOf(UNIT_KINDS))
    parent_code = fields.Str(allow_none=True, validate=validate.Length(max=32))


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


class RegistrationIn(Schema):
    official_id = Text(64, required=True)
