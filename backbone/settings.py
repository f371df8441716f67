"""What each setting of config.yml is, checked when a process starts.

Every `${VAR:default}` of config.yml is tagged `!raw_env_var`, so nameko substitutes the environment
variable and keeps the result as the string it is: `SMTP_PASSWORD=123456`, `no`, `ab #cd`, `!x` or `[x`
arrive exactly as written instead of being parsed as YAML (an integer, false, a comment, a tag, a
flow list). The schema below then says what each setting is and converts the strings that stand for
numbers, booleans and lists; a value of the wrong kind stops the process at start with the setting's
name and the variable it came from, instead of failing on first use somewhere inside.

`check(data)` validates and converts in place; the container (`backbone.container`) runs it before
anything reads the configuration, and `backbone.config.load` runs it for every other process.
"""
import re
from collections.abc import Mapping

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

# Values never printed in an error (they may be secrets, or carry one: a URI with a password).
SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|URI|USER", re.I)


class SettingsError(Exception):
    """A setting of config.yml (or the environment variable behind it) is not what it must be."""


class Delays(fields.Field):
    """A list of seconds: a YAML list, or the string of one as an environment variable gives it
    (`[1, 5, 30]` or `1, 5, 30`)."""

    default_error_messages = {"invalid": "Not a list of seconds (say [1, 5, 30])."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1]
            value = [part for part in (p.strip() for p in text.split(",")) if part]
        if not isinstance(value, (list, tuple)) or not value:
            raise self.make_error("invalid")
        try:
            delays = [float(item) for item in value]
        except (TypeError, ValueError):
            raise self.make_error("invalid")
        if any(delay <= 0 for delay in delays):
            raise self.make_error("invalid")
        return delays


class OptionalInteger(fields.Integer):
    """An integer, or nothing when the variable is empty (`${METRICS_PORT:}`: off)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return super()._deserialize(value, attr, data, **kwargs)


def _boolean():
    # Strings as an operator writes them; anything else is refused rather than taken as false.
    return fields.Boolean(required=True, truthy={"true", "True", "TRUE", "1", "yes", "on", True, 1},
                          falsy={"false", "False", "FALSE", "0", "no", "off", "", False, 0})


def _seconds(minimum=0.0, strict=True):
    return fields.Float(required=True, validate=validate.Range(min=minimum, min_inclusive=not strict))


def _count(minimum=1, maximum=None):
    return fields.Integer(required=True, strict=False, validate=validate.Range(min=minimum, max=maximum))


def _text(**kwargs):
    return fields.String(required=True, **kwargs)


_CLOCK = r"(?:[01]?\d|2[0-3]):[0-5]\d"


class Section(Schema):
    class Meta:
        # Settings a section does not name stay as they are (other helpers' and tests' additions).
        unknown = INCLUDE


class Events(Section):
    exchange = _text(validate=validate.Length(min=1))
    retry_delays = Delays(required=True)
    relay_poll_seconds = _seconds()
    relay_linger_seconds = _seconds(strict=False)
    relay_batch = _count()
    lease_seconds = _seconds()


class Smtp(Section):
    host = _text(validate=validate.Length(min=1))
    port = _count(1, 65535)
    starttls = _boolean()
    user = _text()
    password = _text()
    sender = _text(validate=validate.Length(min=1))


class Sms(Section):
    gateway_url = _text(validate=validate.Length(min=1))
    fallback_url = _text()
    sender = _text()
    transliterate = _text(validate=validate.OneOf(["never", "long", "always"]))


class Notifications(Section):
    retry_delays = Delays(required=True)
    quiet_hours = _text(validate=validate.Regexp(r"^(?:{0}-{0})?$".format(_CLOCK),
                                                  error="HH:MM-HH:MM, or empty for none."))
    reminder_hour = _count(0, 23)
    # A secret: its presence and length are checked where it is used (backbone.config.required_secret).
    unsubscribe_secret = _text()
    smtp_pool = _count()
    senders = _count()
    flushers = _count()
    sweep_batch = _count()
    flush_linger_seconds = _seconds(strict=False)
    announce_sent = _boolean()
    # An address, or empty for nowhere.
    operator_email = _text(validate=validate.Regexp(r"^([^@\s]+@[^@\s]+)?$", error="An email address, or empty."))


class Http(Section):
    """What the gateway lets in (gateway/admission.py); 0 for a rate: no limit."""
    max_body_bytes = _count()
    max_import_bytes = _count()
    rate_per_client = _count(0)
    burst_per_client = _count(0)
    rate_per_token = _count(0)
    burst_per_token = _count(0)
    trusted_proxies = _text(validate=validate.Regexp(r"^[0-9A-Fa-f.:,\s]*$",
                                                      error="Comma-separated IP addresses, or empty."))
    socket_timeout = _seconds()
    keepalive_seconds = _seconds(strict=False)
    max_connections = _count()


class Privacy(Section):
    """Retention periods (Decree 13/2023/ND-CP); README's table states each."""
    handled_events_hours = _seconds()
    personal_data_days = _seconds()
    qr_token_hours = _seconds(strict=False)
    contact_email = _text(validate=validate.Regexp(r"^([^@\s]+@[^@\s]+)?$", error="An email address, or empty."))


class Settings(Section):
    """config.yml, top to bottom."""
    AMQP_URI = _text(validate=validate.Regexp(r"^amqps?://", error="An amqp:// or amqps:// URI."))
    MONGO_URI = _text(validate=validate.Regexp(r"^mongodb(\+srv)?://", error="A mongodb:// URI."))
    DATABASE_PREFIX = _text(validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,40}$",
                                                     error="Letters, digits, _ and - (a database name)."))
    WEB_SERVER_ADDRESS = _text(validate=validate.Regexp(r"^\S+:\d{1,5}$", error="host:port."))
    OPERATOR_TOKEN = _text()
    PUBLIC_URL = _text(validate=validate.URL(require_tld=False, schemes={"http", "https"}))
    FEED_SECRET = _text()
    max_workers = _count()
    SERVICES = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    SERVICE_CONTAINER_CLS = _text()
    # {service: workers}; a service not named takes max_workers.
    WORKERS = fields.Dict(keys=fields.String(), values=fields.Integer(strict=False, validate=validate.Range(min=1)),
                          required=True)
    QUEUE_TYPE = _text(validate=validate.OneOf(["classic", "quorum"]))
    EVENTS = fields.Nested(Events, required=True)
    HTTP = fields.Nested(Http, required=True)
    IMPORT_MAX_ROWS = _count()
    COVERAGE_REFRESH_SECONDS = _seconds()
    AGREEMENT_SWEEP_SECONDS = _seconds()
    AGREEMENT_WARNING_SECONDS = _seconds()
    SMTP = fields.Nested(Smtp, required=True)
    SMS = fields.Nested(Sms, required=True)
    NOTIFICATIONS = fields.Nested(Notifications, required=True)
    HEARTBEAT_SECONDS = _seconds()
    HEARTBEAT_DIR = _text(validate=validate.Length(min=1))
    METRICS_HOST = _text(validate=validate.Length(min=1))
    METRICS_PORT = OptionalInteger(required=True, allow_none=True,
                                   validate=lambda port: port is None or 1 <= port <= 65535)
    NOTIFICATIONS_SWEEP_SECONDS = _seconds()
    AUDIT_RETENTION_DAYS = _count(1, 36500)
    PRIVACY = fields.Nested(Privacy, required=True)
    PRIVACY_SWEEP_SECONDS = _seconds()
    LOGGING = fields.Dict(required=True)

    @validates_schema
    def handled_outlive_retries(self, data, **kwargs):
        # A handled-event record removed while the broker may still redeliver its event (the retry
        # ladder) would let that event be handled twice.
        privacy, events = data.get("PRIVACY") or {}, data.get("EVENTS") or {}
        hours, delays = privacy.get("handled_events_hours"), events.get("retry_delays")
        if hours and delays and hours * 3600 <= sum(delays):
            raise ValidationError({"handled_events_hours": [
                "Must be longer than the retry ladder (EVENTS.retry_delays: {:g} s in all).".format(sum(delays))]},
                "PRIVACY")


def _flatten(messages, prefix=()):
    for key, value in messages.items():
        if isinstance(value, dict):
            yield from _flatten(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _given(data, path):
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def check(data, variables=None):
    """Validate `data` (config.yml as loaded) and convert it in place to the types the schema names.
    Raises SettingsError naming every setting that is wrong, with the environment variable behind it
    (`variables`: {path: [VAR, ...]}, from `backbone.config.variables()`). Returns `data`."""
    try:
        loaded = Settings(unknown=INCLUDE).load(data)
    except ValidationError as error:
        variables = variables or {}
        lines = []
        for path, problems in sorted(_flatten(error.messages), key=lambda item: item[0]):
            name = ".".join(map(str, path))
            behind = variables.get(tuple(path))
            where = " (from {})".format(", ".join("${" + v + "}" for v in behind)) if behind else ""
            value = _given(data, path)
            shown = "" if value is None or SECRET.search(name) or any(SECRET.search(v) for v in behind or ()) \
                else " (given {!r})".format(value)
            lines.append("{}{}: {}{}".format(name, where, " ".join(map(str, problems)), shown))
        raise SettingsError("config.yml has settings that cannot work:\n  " + "\n  ".join(lines)) from None
    _update(data, loaded)
    return data


def _update(target, loaded):
    for key, value in loaded.items():
        if isinstance(value, dict) and isinstance(target.get(key), Mapping) and key != "LOGGING":
            _update(target[key], value)
        else:
            target[key] = value

