"""The programme's vocabulary that several producers' events and requests share."""
from datetime import date

from marshmallow import Schema, fields, validate

from backbone.errors import rule_broken

# The audience groups of the programme (DOMAIN.md): commune-level officials, district officials (history:
# no district since 2025-07-01), department officials, leaders.
AUDIENCE_GROUPS = ("ward_commune", "district", "department", "leader")
# Since the reform (2025-07-01) the city has no districts: `district` stays readable for the classes
# before it, and is no group of a class after it.
REFORM_DAY = date(2025, 7, 1)
ACTIVE_AUDIENCE_GROUPS = ("ward_commune", "department", "leader")


def retired_groups(audience_groups, last_day):
    """The groups of `audience_groups` that no longer exist on `last_day` (a date)."""
    return [g for g in audience_groups if g not in ACTIVE_AUDIENCE_GROUPS and last_day >= REFORM_DAY]


def require_current_audiences(audience_groups, last_day):
    """A class after the 2025 reform is for the groups that exist since (422 `audience_group_retired`):
    commune-level officials, department officials, leaders; `district` only for the classes before.
    Partners checks it of offerings, scheduling of sessions."""
    retired = retired_groups(audience_groups, last_day)
    if retired:
        raise rule_broken("audience_group_retired", "Since {} there is no {} group: use {}.".format(
            REFORM_DAY.isoformat(), ", ".join(retired), ", ".join(ACTIVE_AUDIENCE_GROUPS)),
            {"audience_groups": ["{} exists only for classes before {}.".format(", ".join(retired),
                                                                              REFORM_DAY.isoformat())]})


class Audience(fields.List):
    def __init__(self, **kwargs):
        super().__init__(fields.Str(validate=validate.OneOf(AUDIENCE_GROUPS)), **kwargs)


class Module(Schema):
    title = fields.Str(required=True)
    hours = fields.Float(required=True)

