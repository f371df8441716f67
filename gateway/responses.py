"""What the gateway answers: JSON in the programme's local time, and the one error shape
`{"error": {"code", "message", "fields"}}` for every refusal."""
import json
import logging
from datetime import date, datetime
from urllib.parse import quote

import eventlet
from nameko.exceptions import RemoteError, ReplyQueueExpiredWithPendingReplies, UnknownService
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from backbone.clock import LOCAL
from backbone.errors import DomainError

log = logging.getLogger(__name__)

# werkzeug's names for the HTTP refusals it raises, as our codes.
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "bad_request"}


def _jsonable(value):
    """Times leave as ISO 8601 in the programme's local time, with the offset (stored in UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(LOCAL).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def json_response(status, body, headers=None):
    return Response(json.dumps(body, ensure_ascii=False, default=_jsonable), status=status,
                    headers=headers, mimetype="application/json")


def error_response(status, code, message, fields=None):
    return json_response(status, {"error": {"code": code, "message": message, "fields": fields or {}}})


def as_response(result):
    """A handler's result: a werkzeug Response, `(status, body)` or a body (200)."""
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        status, body = result
        return json_response(status, body)
    return json_response(200, result)


def from_exception(exc):
    if isinstance(exc, DomainError):
        return json_response(exc.status, exc.as_body())
    if isinstance(exc, HTTPException):
        response = error_response(exc.code, HTTP_CODES.get(exc.code, exc.name.lower().replace(" ", "_")),
                                  exc.description)
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response
    if isinstance(exc, (eventlet.Timeout, UnknownService, ReplyQueueExpiredWithPendingReplies)):
        return error_response(503, "service_unavailable", "A service did not answer in time.")
    if isinstance(exc, RemoteError):
        log.error("remote error: %s", exc)
    else:
        log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "Something went wrong; it has been logged.")


def attachment(name, extension, disposition="attachment"):
    """A Content-Disposition for a download named after an id a caller chose: ASCII in `filename`,
    the name itself in `filename*` (RFC 6266), so no id can break the header."""
    plain = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)[:100] or "download"
    return '{}; filename="{}.{}"; filename*=UTF-8\'\'{}.{}'.format(
        disposition, plain, extension, quote(name[:100], safe=""), extension)
