"""What operators ask of the notices' log (the filters of GET /notifications), what an unsubscribe
link carries, and what leaves the service about a notice (recipients masked)."""
from marshmallow import EXCLUDE, Schema, fields, validate

from backbone.fields import Id, Text
from backbone.logs import mask
from backbone.paging import PageQuery
from services.notifications.rules import CHANNELS

STATUSES = ("queued", "retrying", "sent", "failed")


class NoticeQuery(PageQuery):
    """The notices' log, oldest first. A filter names one value; a blank one is no filter, and a
    value no notice has (an unknown status) finds nothing rather than being refused."""
    official_id = Id()
    partner_id = Id()
    status = Text(20, metadata={"description": "One of: {}.".format(", ".join(STATUSES))})
    channel = Text(20, metadata={"description": "One of: {}.".format(", ".join(CHANNELS))})
    template = Text(64, metadata={"description": "The notice's kind, e.g. registration_confirmed."})
    event_id = Text(200, metadata={"description": "The source event's id (a reminder's: `reminder:...`)."})


class SubscriptionLink(Schema):
    """The query of an unsubscribe link, for its page (subscriptions.py); other parameters, such as a
    mail tracker's, are ignored. A page for people: not in the API document."""

    class Meta:
        unknown = EXCLUDE

    official = Id(required=True)
    channel = fields.Str(required=True, validate=validate.OneOf(CHANNELS))
    sig = fields.Str(required=True, validate=validate.Length(min=1, max=64))


def public_notice(notice):
    """A notice as operators see it: what, when, how it went; the recipient masked, no context."""
    out = {k: notice.get(k) for k in ("event_id", "channel", "template", "language", "status", "attempts",
                                      "provider", "last_error", "official_id", "partner_id", "segments",
                                      "created_at", "sent_at", "not_before")}
    out["id"] = notice["_id"]
    out["to"] = mask(notice["to"])
    # Stored masked since it is written so; masked here too for rows written before that.
    out["last_error"] = mask(notice["last_error"]) if notice.get("last_error") else None
    return out


# Documented at GET /openapi.json.
BODIES = {}
QUERIES = {"NoticeQuery": NoticeQuery}
