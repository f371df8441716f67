"""What notifications publishes: a notice failed (always), a notice sent (when
NOTIFICATIONS.announce_sent is on). No consumer yet: they are the record operators' tools read.

Personal data: none; whom a notice was for is an id, never the address. Both are facts."""
from marshmallow import Schema, fields, validate

from backbone.events import contract
from backbone.fields import Id


class _Notice(Schema):
    # Longer than an Id: a notice id is "<source event id>:<channel>:<hash>", and a reminder's source
    # event id is "reminder:<registration id>:<start time>".
    notice_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    source_event_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    channel = fields.Str(required=True, validate=validate.OneOf(("email", "sms")))
    template = fields.Str(required=True)
    # Whom it was for (one of the two); never the address itself.
    official_id = Id(load_default=None, allow_none=True)
    partner_id = Id(load_default=None, allow_none=True)


@contract("notification_sent")
class NotificationSent(_Notice):
    pass


@contract("notification_failed")
class NotificationFailed(_Notice):
    error = fields.Str(required=True)
