"""The gateway's HTTP entrypoint: `@api`. JSON in and out; the one place where errors become the
public error shape; what every request goes through, in order:

1. the rate limits of its client and token (429), and the cap on its body (413, while reading);
2. in a worker: the caller's authentication, before any of the body is read (401);
3. the `Idempotency-Key` of a POST, scoped to that caller (`gateway/admission.py`);
4. the handler, which calls the services by RPC (503 when one does not answer in time).
"""
import functools
import io
import json
import logging
import time
from functools import partial

import eventlet
from eventlet.event import Event
from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider
from nameko.rpc import ServiceRpc
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request

from backbone import auth, counters
from backbone.errors import DomainError
from backbone.rpc import TransientReplyListener
from gateway import admission
from gateway.responses import as_response, from_exception

log = logging.getLogger(__name__)

# How long the gateway waits for a service before answering 503 rather than hanging, by the route's
# `timeout`. A staff list's import may hold IMPORT_MAX_ROWS (100,000) rows, about 30 s at the 3,100-3,400
# rows/s `make bench` measures, so it has its own; every other route answers within "rpc".
TIMEOUTS = {"rpc": 15, "import": 120}
# Nesting deeper than this in a JSON body is refused before the parser recurses into it.
MAX_JSON_DEPTH = 64


def _depth(raw):
    """How deeply a JSON text nests arrays and objects (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def _has_lone_surrogate(value):
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def malformed(message):
    return DomainError("malformed_json", message, {}, 400)


def read_json(request, optional=False):
    """The request body as a JSON object, or 400 `malformed_json` (not JSON, not an object, nested
    deeper than MAX_JSON_DEPTH, or a string with a lone surrogate, which no database can store).
    `optional`: for actions whose body only adds a reason, no body at all means `{}`."""
    raw = request.get_data()
    if optional and not raw:
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise malformed("The body is not UTF-8: {}".format(exc))
    if _depth(text) > MAX_JSON_DEPTH:
        raise malformed("The body nests deeper than {} levels.".format(MAX_JSON_DEPTH))
    try:
        body = json.loads(text) if text else None
    except ValueError as exc:
        raise malformed("The body is not valid JSON: {}".format(exc))
    if not isinstance(body, dict):
        raise malformed("The body must be a JSON object.")
    if _has_lone_surrogate(body):
        raise malformed("The body holds a lone surrogate (\\ud800-\\udfff), which is no text.")
    return body


# Connections waiting to be accepted (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 1024


class JsonWsgiApp(WsgiApp):
    """nameko's WSGI app, with an unknown path (404) or method (405) in the public error shape."""

    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        try:
            provider, values = self.url_map.bind_to_environ(environ).match()
        except HTTPException as exc:  # no route: answered here, in the error shape
            response = from_exception(exc)
            response.headers["X-Content-Type-Options"] = "nosniff"
            return response(environ, start_response)
        request.path_values = values
        return provider.handle_request(request)(environ, start_response)


class GatewayServer(WebServer):
    """nameko's web server with a listen backlog for bursts (eventlet's default of 50 overflows when a
    popular class opens, and the kernel then drops connections), a socket timeout (a client that
    sends nothing does not hold a connection), a shorter wait for a connection's next request, a
    bound on the connections served at once, JSON for unknown routes, and an accept() that fails
    (out of file descriptors) waits instead of ending."""

    def start(self):
        if not self._starting:
            self._starting = True
            self._sock = eventlet.listen(self.bind_addr, backlog=LISTEN_BACKLOG)
            self._sock.settimeout(None)  # as nameko does: https://github.com/celery/kombu/issues/838
            self._serv = self.get_wsgi_server(self._sock, self.get_wsgi_app())
            self._serv.socket_timeout = float(admission.setting("socket_timeout"))
            # An idle keep-alive connection holds one of the slots: a client that keeps it open and
            # goes quiet (a burst of callers, each with its own connection) frees it after this long,
            # not the socket timeout. Measured: 2,000 callers that never closed theirs filled all 1,000
            # slots, and the next ones waited the full 30 s unanswered. 0: one request per connection.
            self._serv.keepalive = float(admission.setting("keepalive_seconds")) or False
            self._slots = Semaphore(int(admission.setting("max_connections")))
            # The container's limits and unknown tokens, shared by its routes.
            self.admission = admission.Admission()
            self._gt = self.container.spawn_managed_thread(self.run)

    def get_wsgi_app(self):
        return JsonWsgiApp(self)

    def run(self):
        while self._is_accepting:
            self._slots.acquire()
            try:
                sock, addr = self._sock.accept()
            except OSError as exc:
                self._slots.release()
                if not self._is_accepting:
                    return
                log.error("gateway: accept failed (%s); trying again in a moment", exc)
                eventlet.sleep(0.5)
                continue
            sock.settimeout(self._serv.socket_timeout)
            self.container.spawn_managed_thread(partial(self._serve, sock, addr))

    def _serve(self, sock, addr):
        try:
            self.process_request(sock, addr)
        except OSError as exc:  # the peer went away or timed out: its connection only
            log.info("gateway: connection from %s ended: %s", addr[0] if addr else "?", exc)
        finally:
            self._slots.release()


class ServiceClient(ServiceRpc):
    """nameko's RPC client to one service, minus a re-declaration of the reply queue before every
    request. nameko declares it with each publish because a queue with x-expires can't be cached by
    kombu: three broker round trips (queue, exchange, binding) per call, about a sixth of the
    gateway's CPU in the registration burst. The reply consumer declares the queue when it starts
    and again whenever it reconnects, and keeps it from expiring by consuming from it; a request sent
    while that consumer is reconnecting after a broker restart can lose its reply, and then answers
    503 at the RPC timeout, as any request to an unreachable service does."""

    # Transient, so it follows the gateway across a cluster node's loss (backbone/rpc.py).
    reply_listener = TransientReplyListener()

    def setup(self):
        super().setup()
        self.publisher.declare = []


def _take_chunked(request):
    """A chunked body (no Content-Length) read here, up to the cap and no further: more is 413.
    werkzeug would otherwise read it as empty, or cut it at the cap without saying so."""
    cap = request.max_content_length
    body = request.environ["wsgi.input"].read(cap + 1)
    if len(body) > cap:
        raise RequestEntityTooLarge()
    request.environ["wsgi.input"] = io.BytesIO(body)
    request.environ["CONTENT_LENGTH"] = str(len(body))


class Api(HttpRequestHandler):
    """`@api("POST", "/partners", body="PartnerIn", auth="operator", summary="...")`: the handler
    returns a dict/list (200), `(status, body)`, or a werkzeug Response; raising DomainError gives its
    status and the error shape. `body` and `query` (the names of a service's request and query
    schemas), `auth`, `summary` and `status` describe the route in OpenAPI; the summary says "(body
    optional)" where it is. `max_body`: the setting that caps this route's body (imports have their
    own); `timeout`: how long it waits for the services (a key of `TIMEOUTS`; imports have their own).
    `auth=None`: the route checks who asks itself, if at all (public pages); `auth="feed"`: a calendar
    feed, whose token may come in the URL; `auth="official"`: an official's own, by the /me cookie or a
    `me_` token (the handler asks `me_actor`)."""

    server = GatewayServer()

    def __init__(self, method, url, summary="", body=None, query=None, auth="operator", status=200, public=True,
                 max_body="max_body_bytes", timeout="rpc", **kwargs):
        self.summary = summary
        self.body = body
        self.query = query
        self.auth = auth
        self.status = status
        self.max_body = max_body
        self.timeout = timeout
        # False: a page for people (the console), left out of the OpenAPI document.
        self.public = public
        super().__init__(method, url, **kwargs)

    def handle_request(self, request):
        request.shallow = False
        started = time.monotonic()
        try:
            admitting = self.server.admission
            request.environ["trainops.admission"] = admitting
            wait = admitting.wait_before(request)
            if wait:
                response = admission.too_many(wait)
            else:
                request.max_content_length = int(admission.setting(self.max_body))
                if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    _take_chunked(request)
                response = self._run(request)
        except Exception as exc:  # whatever happens, an answer in the error shape
            response = from_exception(exc)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.mimetype == "application/json":
            # API answers carry personal data, keys and tokens: no cache keeps them.
            response.headers.setdefault("Cache-Control", "no-store")
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
                with eventlet.Timeout(TIMEOUTS[self.timeout]):
                    self.container.spawn_worker(
                        self, args, kwargs, context_data=self._context(request),
                        handle_result=partial(self.handle_result, done))
                    result, exc_info, correlation_id = done.wait()
            except eventlet.Timeout as timeout:
                # A BaseException: left to `except Exception` below, it escaped as a bare 500 (not our
                # error shape) and left an Idempotency-Key in progress.
                return from_exception(timeout)
            response = from_exception(exc_info[1]) if exc_info is not None else as_response(result)
            # Quoted in support requests, it finds every log line, event and notice of this request.
            response.headers["X-Correlation-Id"] = correlation_id
            return response
        except Exception as exc:
            return from_exception(exc)

    @staticmethod
    def _context(request):
        correlation_id = request.headers.get("X-Correlation-Id", "")[:64]
        return {"correlation_id": correlation_id} if correlation_id else {}

    def handle_result(self, done, worker_ctx, result, exc_info):
        done.send((result, exc_info, worker_ctx.context_data.get("correlation_id", "")))
        return result, exc_info


def admitted(handler, auth, route=""):
    """The handler as its worker runs it: the caller authenticated first (`service.actor(request)`,
    401 before any body is read), then a POST's Idempotency-Key scoped to that caller; a write by a
    caller it knows is then recorded in the audit (`service.audit_write`, ops/administration.py)."""

    @functools.wraps(handler)
    def run(service, request, *args, **kwargs):
        # A calendar feed ("feed") may carry its token in the URL: its handler authenticates it.
        # An official's routes ("official") authenticate the cookie or token themselves (gateway/selfservice).
        actor = service.actor(request) if auth not in (None, "feed", "official") else None
        if request.method == "GET" or not hasattr(service, "audit_write"):
            return _admitted(service, request, handler, actor, args, kwargs)
        try:
            result = _admitted(service, request, handler, actor, args, kwargs)
        except Exception as exc:
            _audit(service, request, route, kwargs, from_exception(exc).status_code)
            raise
        _audit(service, request, route, kwargs, result[0] if isinstance(result, tuple)
               else getattr(result, "status_code", 200))
        return result

    return run


def _admitted(service, request, handler, actor, args, kwargs):
    if request.method == "POST" and request.headers.get("Idempotency-Key"):
        return admission.idempotent(service.db.idempotency, request, caller_key(actor, request),
                                    lambda: as_response(_answer(handler, service, request, args, kwargs)))
    return handler(service, request, *args, **kwargs)


def _audit(service, request, route, target, status):
    """A failure to write the audit is logged, never the caller's answer (the write is done)."""
    try:
        service.audit_write(request, route, target, status)
    except Exception:
        log.exception("audit: the record of %s could not be written", route)


def _answer(handler, service, request, args, kwargs):
    try:
        return handler(service, request, *args, **kwargs)
    except DomainError as error:
        return from_exception(error)


def caller_key(actor, request):
    """Whose Idempotency-Key it is: the authenticated caller, or for a public route the token sent."""
    if actor:
        # One caller each: the system, each operator account, coordinator, official and partner.
        return auth.actor_label(actor)
    return "anonymous:" + admission.token_digest(admission.bearer_token(request))[:32]


def api(method, url, auth="operator", **kwargs):
    def decorate(handler):
        return Api.decorator(method, url, auth=auth, **kwargs)(admitted(handler, auth, "{} {}".format(method, url)))
    return decorate


class Routes(DependencyProvider):
    """The gateway's own routes, for describing them (OpenAPI)."""

    def get_dependency(self, worker_ctx):
        return [e for e in self.container.entrypoints if isinstance(e, Api) and e.public]
