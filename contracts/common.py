"""The programme's vocabulary that several producers' events and requests share."""
from marshmallow import Schema, fields, validate

# The audience groups of the programme (DOMAIN.md): commune-level officials, district officials (history:
# no district since 2025-07-01), department officials, leaders.
AUDIENCE_GROUPS = ("ward_commune", "district", "department", "leader")


class Audience(fields.List):
    def __init__(self, **kwargs):
        super().__init__(fields.Str(validate=validate.OneOf(AUDIENCE_GROUPS)), **kwargs)


class Module(Schema):
    title = fields.Str(required=True)
    hours = fields.Float(required=True)

