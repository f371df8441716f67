"""Events: one envelope for every event, and the registry of payload schemas by (type, version).

Each producer declares the schemas of the events it publishes in its own contract module
(`contracts/<producer>.py`) with `@contract("partner_onboarded")`. The producer checks a payload
against it before the event is written to its outbox; a consumer checks it again on receipt and
dead-letters what does not fit. A consumer imports the producer's contract module, never its code.

Two kinds of event. A *fact* happened once and stays true whatever arrives later (a registration
confirmed, an agreement expired): a consumer acts on each, once. A *state-carrying* event says what
an aggregate (a session, an offering) is now; a retried or redelivered older one may arrive after a
newer one, so it carries `revision`, the aggregate's version after the change (its producer counts
it up in the same transaction), and a consumer applies it only when it is newer than the revision it
last applied to that part of its copy (`is_newer`). Each contract module says which of its events
are which.
"""
import uuid
from datetime import date, datetime, timezone

from marshmallow import Schema, ValidationError, fields, validate

_SCHEMAS = {}
# One instance per contract, reused: a marshmallow schema keeps nothing between loads, and making
# one (with its nested schemas) costs more than loading an event.
_INSTANCES = {}


def contract(type_, version=1):
    """Register a payload schema as the contract of (type, version); its module names the producer."""

    def register(schema_cls):
        key = (type_, version)
        if key in _SCHEMAS and _SCHEMAS[key] is not schema_cls:
            raise RuntimeError("two contracts for {} v{}".format(type_, version))
        _SCHEMAS[key] = schema_cls
        schema_cls.event_type = type_
        schema_cls.event_version = version
        return schema_cls

    return register


class Revision(fields.Int):
    """The aggregate's version after the change a state-carrying event announces (1 for the first).
    None: an event written before producers counted versions; it is applied as it arrives."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_none", True)
        kwargs.setdefault("load_default", None)
        super().__init__(strict=True, validate=validate.Range(min=1), **kwargs)


def is_newer(applied, revision):
    """Whether a state-carrying event of `revision` should change a copy last changed by `applied`:
    only a newer one does. Either unknown (a copy or an event from before revisions): it does, as
    before; a repeat or an older one does not."""
    return applied is None or revision is None or revision > applied


def known_types():
    return sorted({type_ for type_, _ in _SCHEMAS})


def producer_of(type_):
    """The producer whose contract module declares `type_` (`contracts.partners` → `partners`)."""
    owners = {cls.__module__.rsplit(".", 1)[-1] for (t, _), cls in _SCHEMAS.items() if t == type_}
    return owners.pop() if len(owners) == 1 else None


def schema_for(type_, version=1):
    try:
        return _INSTANCES[(type_, version)]
    except KeyError:
        pass
    try:
        schema = _SCHEMAS[(type_, version)]()
    except KeyError:
        raise ValidationError({"type": ["No contract for event {} v{}.".format(type_, version)]})
    return _INSTANCES.setdefault((type_, version), schema)


class Envelope(Schema):
    event_id = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    type = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    version = fields.Int(required=True, strict=True)
    occurred_at = fields.AwareDateTime(required=True)
    producer = fields.Str(required=True)
    correlation_id = fields.Str(required=True)
    payload = fields.Dict(required=True)


_ENVELOPE = Envelope()


def make_envelope(type_, payload, producer, correlation_id, version=1):
    """A new event, its payload checked against the contract and kept in its JSON form."""
    schema = schema_for(type_, version)
    checked = schema.dump(schema.load(plain(payload)))
    return {
        "event_id": uuid.uuid4().hex,
        "type": type_,
        "version": version,
        "occurred_at": datetime.now(timezone.utc).isoformat(),
        "producer": producer,
        "correlation_id": correlation_id,
        "payload": checked,
    }


def plain(value):
    """Producers may pass datetimes and dates; the contract is checked on their JSON form."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def read_envelope(data):
    """Validate a received envelope and its payload. Returns (envelope, payload) with the payload
    loaded (datetimes as aware datetimes). Raises ValidationError naming what is wrong."""
    envelope = _ENVELOPE.load(data)
    payload = schema_for(envelope["type"], envelope["version"]).load(envelope["payload"])
    return envelope, payload
