"""JSON log lines with the correlation id of the request or event being handled, and no personal data:
phone numbers and email addresses are masked in every line, whatever logged them."""
import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone

from eventlet.corolocal import local
from nameko.extensions import DependencyProvider

from backbone.errors import DomainError

# One per green thread: nameko runs each worker in its own, so this is per request or per event.
_context = local()
# The service this process runs, for lines logged outside any worker (`nameko run` runs one).
_process = {"service": None}

# Unicode letters on both sides of the @: Vietnamese addresses (`nguyễn.ánh@bộnội.vn`) are addresses too.
EMAIL = re.compile(r"([\w%+-])[\w.%+-]*@([\w-]+(?:\.[\w-]+)+)")
# Vietnamese numbers as people write them: +84, (+84), 84 (maybe with the trunk 0 kept as "(0)") or 0,
# then 8-10 digits, maybe split by spaces, dots or dashes, or a landline's area code in brackets:
# (028) 3829 1234.
PHONE = re.compile(r"(?<![\w+(])(\(\+?84\)|\+?84|\(?0)(?:\s?\(0\))?((?:(?:[\s.-]|\)\s?)?\d){8,10})(?![\w])")
# Secrets that reach a log line: in a URL (calendar apps send ?token=), a header, a JSON body, or an
# API key or token anywhere by its prefix.
SECRET = re.compile(r"((?:token|api_key)=|Bearer\s+)[^\s&\"']+", re.IGNORECASE)
SECRET_FIELD = re.compile(r'("(?:api_key|api_token|token|password|secret)"\s*:\s*")[^"]*(")', re.IGNORECASE)
TOKEN = re.compile(r"\b(tok|feed|coord|co|op)_[A-Za-z0-9_-]{8,}")


def _mask_phone(match):
    digits = re.sub(r"\D", "", match.group(2))
    prefix = re.sub(r"[()]", "", match.group(1))
    return "{}{}***{}".format(prefix, digits[:2], digits[-3:])


def mask(text):
    """Mask emails (`a***@example.vn`), phones (`+8490***567`) and secrets in any text."""
    text = SECRET.sub(lambda m: m.group(1) + "***", text)
    text = SECRET_FIELD.sub(lambda m: m.group(1) + "***" + m.group(2), text)
    text = TOKEN.sub(lambda m: m.group(1) + "_***", text)
    text = EMAIL.sub(lambda m: "{}***@{}".format(m.group(1), m.group(2)), text)
    return PHONE.sub(_mask_phone, text)


def mask_email(address):
    return mask(address or "")


def new_correlation_id():
    return uuid.uuid4().hex


def current(key, default=None):
    return getattr(_context, key, default)


def bind(**values):
    for key, value in values.items():
        setattr(_context, key, value)


def clear():
    _context.__dict__.clear()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, correlation id and whatever
    the caller passed in `extra={"fields": {...}}`, all masked."""

    def format(self, record):
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": current("service") or _process["service"],
            "logger": record.name,
            "msg": record.getMessage(),
            "correlation_id": current("correlation_id"),
        }
        event_type = current("event_type")
        if event_type:
            line["event_type"] = event_type
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return mask(json.dumps(line, ensure_ascii=False, default=str))


class Refusals(logging.Filter):
    """For nameko's container logger (config.yml, LOGGING): its "error handling worker" line, with a
    traceback at ERROR, stays for failures and goes for refusals. A DomainError under 500 (404, 409,
    422) is the answer to a request, already in the worker's own line with its code (`Tracing`). As
    an error it read as a fault, twice per refused request (the service, then the gateway), and in a
    registration burst it filled the log with tracebacks of `already_registered`."""

    def filter(self, record):
        error = record.exc_info[1] if record.exc_info else None
        try:
            return not (isinstance(error, DomainError) and error.status < 500)
        except TypeError:
            # A status set to something else after construction (DomainError makes it an int). Never
            # fail here: an exception in a filter is raised by the log call, and nameko's worker
            # that made it dies with its container.
            return True


_worker_log = logging.getLogger("trainops.worker")


class Tracing(DependencyProvider):
    """Every service declares `tracing = Tracing()`. It gives each worker a correlation id (the caller's,
    carried in nameko's context data through RPC and events, or a new one at the edge), binds it for the
    log lines, and writes one line per request or event with its outcome and duration."""

    def setup(self):
        _process["service"] = self.container.service_name

    @staticmethod
    def _correlation_id(worker_ctx):
        context = worker_ctx.context_data
        if not context.get("correlation_id"):
            context["correlation_id"] = new_correlation_id()
        return context["correlation_id"]

    def worker_setup(self, worker_ctx):
        context = worker_ctx.context_data
        self._correlation_id(worker_ctx)
        clear()
        bind(
            service=self.container.service_name,
            correlation_id=context["correlation_id"],
            event_type=context.get("event_type"),
            started=time.monotonic(),
        )

    def get_dependency(self, worker_ctx):
        return self._correlation_id(worker_ctx)

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = current("started") or time.monotonic()
        outcome = "ok"
        if exc_info is not None:
            outcome = getattr(exc_info[1], "code", None) or type(exc_info[1]).__name__
        _worker_log.info(
            "%s %s", worker_ctx.entrypoint.method_name, outcome,
            extra={"fields": {
                "entrypoint": worker_ctx.entrypoint.method_name,
                "outcome": outcome,
                "duration_ms": round((time.monotonic() - started) * 1000, 2),
            }},
        )

    def worker_teardown(self, worker_ctx):
        clear()
