"""Who may come in, and how much: what the gateway checks before a request costs anything.

- Rate limits per client address and per token (token buckets, in this process; `HTTP.rate_*`):
  429 `too_many_requests` with `Retry-After`.
- Bodies are capped while they are read (`HTTP.max_body_bytes`, larger for imports): 413.
- A token nobody knows is remembered as unknown for a minute, so junk tokens cost no RPC each.
- An `Idempotency-Key` is looked at only after the caller is authenticated, scoped to that caller,
  so a replay answers nobody but the caller who made the first request, as it is now.
"""
import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from datetime import timedelta

from nameko import config
from pymongo.errors import DuplicateKeyError
from werkzeug.wrappers import Response

from backbone.clock import utcnow
from gateway.responses import error_response

DEFAULTS = {
    "max_body_bytes": 1024 * 1024,
    "max_import_bytes": 20 * 1024 * 1024,
    "rate_per_client": 100, "burst_per_client": 200,
    "rate_per_token": 100, "burst_per_token": 200,
    "trusted_proxies": "",
    "socket_timeout": 30,
    "keepalive_seconds": 5,
    "max_connections": 1000,
}
# An Idempotency-Key still "in progress" this long after its request began was left by a gateway
# replica that died mid-request (a live one has answered within its RPC timeout): a retry takes it over.
ABANDONED_AFTER = 30
UNKNOWN_TOKEN_SECONDS = 60
UNKNOWN_TOKENS_KEPT = 10_000


def setting(name):
    value = (config.get("HTTP") or {}).get(name)
    return DEFAULTS[name] if value in (None, "") else value


def bearer_token(request):
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def token_digest(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def client_of(request):
    """The caller's address: the first hop of X-Forwarded-For when the request came through one of
    the proxies we trust (`HTTP.trusted_proxies`, comma-separated addresses), else the peer's."""
    peer = request.remote_addr or "unknown"
    trusted = {p.strip() for p in str(setting("trusted_proxies")).split(",") if p.strip()}
    forwarded = request.headers.get("X-Forwarded-For", "")
    if peer in trusted and forwarded:
        return forwarded.split(",")[0].strip()[:64]
    return peer


class Buckets:
    """Token buckets by key: `rate` requests a second on average, `burst` at once. Memory is bounded:
    buckets that are full again are forgotten."""

    def __init__(self, rate, burst, now=time.monotonic):
        self.rate = float(rate)
        self.burst = float(burst)
        self.now = now
        self._buckets = {}
        self._lock = threading.Lock()

    def take(self, key):
        """0 when the request may go; else the seconds to wait before one would."""
        if self.rate <= 0:
            return 0
        with self._lock:
            now = self.now()
            level, since = self._buckets.get(key, (self.burst, now))
            level = min(self.burst, level + (now - since) * self.rate)
            if level >= 1:
                self._buckets[key] = (level - 1, now)
                if len(self._buckets) > 50_000:
                    self._forget_full(now)
                return 0
            self._buckets[key] = (level, now)
            return (1 - level) / self.rate

    def _forget_full(self, now):
        for key, (level, since) in list(self._buckets.items()):
            if level + (now - since) * self.rate >= self.burst:
                del self._buckets[key]


class UnknownTokens:
    """Digests of tokens that authenticated nobody, for a minute, at most UNKNOWN_TOKENS_KEPT of them.
    A token that is issued later is a new random one, so remembering a miss never refuses a real key."""

    def __init__(self, seconds=UNKNOWN_TOKEN_SECONDS, kept=UNKNOWN_TOKENS_KEPT, now=time.monotonic):
        self.seconds = seconds
        self.kept = kept
        self.now = now
        self._until = OrderedDict()

    def __contains__(self, digest):
        until = self._until.get(digest)
        if until is None:
            return False
        if until < self.now():
            self._until.pop(digest, None)
            return False
        return True

    def add(self, digest):
        self._until[digest] = self.now() + self.seconds
        self._until.move_to_end(digest)
        while len(self._until) > self.kept:
            self._until.popitem(last=False)


class Admission:
    """The per-process state of the gateway's admission: the limits and the unknown tokens."""

    def __init__(self):
        self.clients = Buckets(setting("rate_per_client"), setting("burst_per_client"))
        self.tokens = Buckets(setting("rate_per_token"), setting("burst_per_token"))
        self.unknown_tokens = UnknownTokens()

    def wait_before(self, request):
        """0 when the request may go on, else the seconds the caller should wait (429)."""
        wait = self.clients.take(client_of(request))
        token = bearer_token(request) or request.args.get("token", "")
        if not wait and token:
            wait = self.tokens.take(token_digest(token))
        return wait


def too_many(wait):
    response = error_response(429, "too_many_requests", "Too many requests; try again shortly.")
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


# -- Idempotency-Key ----------------------------------------------------------------------------------

def idempotent(records, request, caller, run):
    """`run()` once per (caller, path, Idempotency-Key): the same key with the same body returns the
    first successful result (to the same caller); with another body it is refused (422). `run`
    returns a Response or raises; only a success is kept."""
    key = "{}:{}:{}".format(caller, request.path, request.headers["Idempotency-Key"][:200])
    body_hash = hashlib.sha256(request.get_data()).hexdigest()
    while True:
        try:
            records.insert_one({"_id": key, "body_hash": body_hash, "state": "in_progress", "created_at": utcnow()})
            break
        except DuplicateKeyError:
            first = records.find_one({"_id": key})
            if first is None:
                continue  # the first request was refused and let the key go meanwhile
            if first.get("body_hash") != body_hash:
                return error_response(422, "idempotency_key_reused", "This Idempotency-Key was used with another body.",
                                      {"Idempotency-Key": ["Already used with a different body."]})
            if first.get("state") == "done":
                return Response(first["body"], status=first["status"], mimetype="application/json",
                                headers={"Idempotent-Replay": "true"})
            if take_over_abandoned(records, first):
                break
            return error_response(409, "request_in_progress",
                                  "A request with this Idempotency-Key is still being handled.")
    try:
        response = run()
    except BaseException:
        records.delete_one({"_id": key})
        raise
    if response.status_code >= 300:
        # Only a success is replayed: after a refusal the caller fixes things (or waits for an event
        # to arrive) and retries with the same key.
        records.delete_one({"_id": key})
    else:
        records.update_one({"_id": key}, {"$set": {
            "state": "done", "status": response.status_code, "body": replayable_body(response.get_data(as_text=True))}})
    return response


def take_over_abandoned(records, first):
    """True when `first` (in progress) was abandoned by a gateway that died and this request now owns
    it. It then runs again, as a retry without a key would: what the first did stays done (a repeated
    registration answers 409 `already_registered`). Conditional, so of several retries one takes over."""
    started = first.get("created_at")
    if started is None or utcnow() - started < timedelta(seconds=ABANDONED_AFTER):
        return False
    taken = records.update_one({"_id": first["_id"], "state": "in_progress", "created_at": started},
                               {"$set": {"created_at": utcnow(), "taken_over": True}})
    return taken.modified_count == 1


def replayable_body(text):
    """What a replay may show: a secret that is shown once (a new API key or token) is not kept."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict):
        for field in ("api_key", "api_token"):
            if field in body:
                body[field] = None
                body[field + "_note"] = "Shown only in the first response."
    return json.dumps(body, ensure_ascii=False)
