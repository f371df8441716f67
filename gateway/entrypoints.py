"""The gateway's HTTP entrypoint: JSON in and out, the one place where errors become the public error
shape, and where `Idempotency-Key` is honoured for every POST."""
import hashlib
import json
import logging
import time
from datetime import date, datetime, timedelta
from functools import partial

import eventlet
from eventlet.event import Event
from nameko.exceptions import RemoteError, UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import ServiceRpc
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer
from pymongo.errors import DuplicateKeyError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from backbone import counters
from backbone.clock import LOCAL, utcnow
from backbone.database import database_of
from backbone.errors import DomainError

log = logging.getLogger(__name__)

# How long the gateway waits for a service before answering 503 rather than hanging.
RPC_TIMEOUT = 15
# An Idempotency-Key still "in progress" this long after its request began was left by a gateway
# replica that died mid-request (a live one has answered within RPC_TIMEOUT): a retry takes it over.
ABANDONED_AFTER = 2 * RPC_TIMEOUT


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


def read_json(request, optional=False):
    """The request body as a JSON object, or 400 `malformed_json`. `optional`: for actions whose body
    only adds a reason, no body at all means `{}`."""
    raw = request.get_data()
    if optional and not raw:
        return {}
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError) as exc:
        raise DomainError("malformed_json", "The body is not valid JSON: {}".format(exc), {}, 400)
    if not isinstance(body, dict):
        raise DomainError("malformed_json", "The body must be a JSON object.", {}, 400)
    return body


# Connections waiting to be accepted (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 1024


class GatewayServer(WebServer):
    """nameko's web server with a listen backlog for bursts: eventlet's default of 50 pending
    connections overflows when a popular class opens (hundreds of officials at once), and the kernel
    then drops connections, which the callers see closed without an answer."""

    def start(self):
        if not self._starting:
            self._starting = True
            self._sock = eventlet.listen(self.bind_addr, backlog=LISTEN_BACKLOG)
            self._sock.settimeout(None)  # as nameko does: https://github.com/celery/kombu/issues/838
            self._serv = self.get_wsgi_server(self._sock, self.get_wsgi_app())
            self._gt = self.container.spawn_managed_thread(self.run)


class ServiceClient(ServiceRpc):
    """nameko's RPC client to one service, minus a re-declaration of the reply queue before every
    request. nameko declares it with each publish because a queue with x-expires can't be cached by
    kombu: three broker round trips (queue, exchange, binding) per call, about a sixth of the
    gateway's CPU in the registration burst. The reply consumer declares the queue when it starts
    and again whenever it reconnects, and keeps it from expiring by consuming from it; a request sent
    while that consumer is reconnecting after a broker restart can lose its reply, and then answers
    503 at the RPC timeout, as any request to an unreachable service does."""

    def setup(self):
        super().setup()
        self.publisher.declare = []


class Api(HttpRequestHandler):
    """`@api("POST", "/partners", body="PartnerIn", auth="operator", summary="...")`: the handler
    returns a dict/list (200), `(status, body)`, or a werkzeug Response; raising DomainError gives its
    status and the error shape. `body` and `query` (the names of a service's request and query
    schemas), `auth`, `summary` and `status` describe the route in OpenAPI; the summary says "(body
    optional)" where it is."""

    server = GatewayServer()

    def __init__(self, method, url, summary="", body=None, query=None, auth="operator", status=200, public=True,
                 **kwargs):
        self.summary = summary
        self.body = body
        self.query = query
        self.auth = auth
        self.status = status
        # False: a page for people (the console), left out of the OpenAPI document.
        self.public = public
        super().__init__(method, url, **kwargs)

    def handle_request(self, request):
        request.shallow = False
        started = time.monotonic()
        if request.method == "POST" and request.headers.get("Idempotency-Key"):
            response = self._idempotent(request)
        else:
            response = self._run(request)
        # By route pattern, not path: one series per route, whatever the ids.
        service = self.container.service_name
        counters.HTTP_REQUESTS.labels(service, self.method, self.url, str(response.status_code)).inc()
        counters.HTTP_SECONDS.labels(service, self.method, self.url).observe(time.monotonic() - started)
        return response

    def _run(self, request):
        try:
            args, kwargs = self.get_entrypoint_parameters(request)
            done = Event()
            try:
                # The wait for a free worker counts too: when a service stalls, the workers waiting
                # on it fill the pool, and a request must then get its 503, not hang.
                with eventlet.Timeout(RPC_TIMEOUT):
                    self.container.spawn_worker(
                        self, args, kwargs, context_data=self._context(request),
                        handle_result=partial(self.handle_result, done))
                    result, exc_info, correlation_id = done.wait()
            except eventlet.Timeout as timeout:
                # A BaseException: left to `except Exception` below, it escaped as a bare 500 (not our
                # error shape) and left an Idempotency-Key in progress.
                return self.response_from_exception(timeout)
            if exc_info is not None:
                response = self.response_from_exception(exc_info[1])
            else:
                response = self.response_from_result(result)
            # Quoted in support requests, it finds every log line, event and notice of this request.
            response.headers["X-Correlation-Id"] = correlation_id
            return response
        except Exception as exc:
            return self.response_from_exception(exc)

    @staticmethod
    def _context(request):
        correlation_id = request.headers.get("X-Correlation-Id", "")[:64]
        return {"correlation_id": correlation_id} if correlation_id else {}

    def handle_result(self, done, worker_ctx, result, exc_info):
        done.send((result, exc_info, worker_ctx.context_data.get("correlation_id", "")))
        return result, exc_info

    def response_from_result(self, result):
        if isinstance(result, Response):
            return result
        if isinstance(result, tuple):
            status, body = result
            return json_response(status, body)
        return json_response(200, result)

    def response_from_exception(self, exc):
        if isinstance(exc, DomainError):
            return json_response(exc.status, exc.as_body())
        if isinstance(exc, HTTPException):
            return error_response(exc.code, exc.name.lower().replace(" ", "_"), exc.description)
        if isinstance(exc, (eventlet.Timeout, UnknownService)):
            return error_response(503, "service_unavailable", "A service did not answer in time.")
        if isinstance(exc, RemoteError):
            log.error("remote error: %s", exc)
        else:
            log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "Something went wrong; it has been logged.")

    # -- Idempotency-Key ----------------------------------------------------------------------------

    def _idempotent(self, request):
        """The same key with the same body returns the first result; with another body it is refused.
        Keys are scoped to the caller (a hash of the bearer token) and the path."""
        caller = hashlib.sha256(request.headers.get("Authorization", "").encode()).hexdigest()[:32]
        key = "{}:{}:{}".format(caller, request.path, request.headers["Idempotency-Key"][:200])
        body_hash = hashlib.sha256(request.get_data()).hexdigest()
        records = database_of(self.container).db.idempotency
        try:
            records.insert_one({"_id": key, "body_hash": body_hash, "state": "in_progress",
                                "created_at": utcnow()})
        except DuplicateKeyError:
            first = records.find_one({"_id": key})
            if first is None:
                # The first request was refused and let the key go between our insert and this read.
                return self._idempotent(request)
            if first.get("body_hash") != body_hash:
                return error_response(422, "idempotency_key_reused",
                                      "This Idempotency-Key was used with another body.",
                                      {"Idempotency-Key": ["Already used with a different body."]})
            if first.get("state") == "done":
                return Response(first["body"], status=first["status"], mimetype="application/json",
                                headers={"Idempotent-Replay": "true"})
            if not take_over_abandoned(records, first):
                return error_response(409, "request_in_progress",
                                      "A request with this Idempotency-Key is still being handled.")
        response = self._run(request)
        if response.status_code >= 300:
            # Only a success is replayed: after a refusal the caller fixes things (or waits for an
            # event to arrive) and retries with the same key.
            records.delete_one({"_id": key})
        else:
            records.update_one({"_id": key}, {"$set": {
                "state": "done", "status": response.status_code,
                "body": replayable_body(response.get_data(as_text=True))}})
        return response


def take_over_abandoned(records, first):
    """True when `first` (in progress) was abandoned by a gateway that died and this request now owns
    it. The request then runs again, as any retry without a key would: what it did before the gateway
    died stays done (a repeated registration answers 409 `already_registered`). The update is
    conditional, so of several retries only one takes over."""
    started = first.get("created_at")
    if started is None or utcnow() - started < timedelta(seconds=ABANDONED_AFTER):
        return False
    taken = records.update_one({"_id": first["_id"], "state": "in_progress", "created_at": started},
                               {"$set": {"created_at": utcnow(), "taken_over": True}})
    return taken.modified_count == 1


def replayable_body(text):
    """What a replay may show: a secret that is shown once (a new API key) is not kept."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict) and "api_key" in body:
        body["api_key"] = None
        body["api_key_note"] = "Shown only in the first response."
    return json.dumps(body, ensure_ascii=False)


api = Api.decorator


class Routes(DependencyProvider):
    """The gateway's own routes, for describing them (OpenAPI)."""

    def get_dependency(self, worker_ctx):
        return [e for e in self.container.entrypoints if isinstance(e, Api) and e.public]
