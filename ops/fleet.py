"""What the operator routes and the console ask of every service at once (`ops/rpcs.py`): health, metrics, dead letters, the audit trail. Each service is asked in parallel with a short
timeout, so one that is down or hung shows as such instead of holding up the answer."""
import time
from datetime import datetime, timezone

import eventlet
from nameko import config

from backbone.errors import DomainError, not_found
from ops import metrics
from ops.rpcs import gauge

TIMEOUT = 2.0


def services():
    """The names of trainops's services (config.yml's SERVICES)."""
    return tuple(config.get("SERVICES") or ())


def _query(name, required=False, **schema):
    return {"in": "query", "name": name, "required": required, "schema": dict({"type": "string"}, **schema)}


def schemas():
    """The operator routes' request bodies and queries, for the OpenAPI document (as a service's
    `api_schemas` describes its own)."""
    consumers = list(services())
    return {
        "bodies": {"DeadLetterReplayIn": {
            "type": "object", "required": ["consumer", "event_type"], "additionalProperties": False,
            "properties": {"consumer": {"type": "string", "enum": consumers}, "event_type": {"type": "string"}},
        }},
        "queries": {
            "DeadLetterQuery": [_query("consumer", enum=consumers), _query("event_type"),
                                _query("status", enum=["parked", "replayed"])],
            "AuditQuery": [_query("correlation_id", required=True, maxLength=64)],
        },
    }


def ask_all(gateway, call, names=None, timeout=TIMEOUT):
    """{service: answer} for `call(rpc_client)` asked of every service in parallel; a service that
    raises or does not answer in `timeout` seconds maps to None."""
    def ask(name):
        try:
            with eventlet.Timeout(timeout):
                return name, call(getattr(gateway, name))
        except BaseException:  # eventlet's Timeout is a BaseException
            return name, None

    names = services() if names is None else names
    return dict(eventlet.GreenPool(len(names)).imap(ask, names))


_HEALTH = {}
HEALTH_CACHE_SECONDS = 1.0


def health(gateway):
    """(healthy, {service: status}, {service: details}), asked at most once a second per process:
    /health is open to anyone, and must not fan out to every service for each of them."""
    deployment = (config.get("AMQP_URI"), config.get("DATABASE_PREFIX"))
    at, answers = _HEALTH.get(deployment, (None, None))
    if at is None or time.monotonic() - at >= HEALTH_CACHE_SECONDS:
        answers = ask_all(gateway, lambda s: s.health())
        _HEALTH[deployment] = (time.monotonic(), answers)
    services, details = {}, {}
    for name, answer in answers.items():
        if answer is None:
            services[name] = "down"
            details[name] = {"status": "down", "error": "no answer within {:g} s".format(TIMEOUT)}
        else:
            services[name] = answer.get("status", "down")
            details[name] = answer
    return all(s == "ok" for s in services.values()), services, details


def scrape(gateway):
    """One Prometheus document: the gateway's own metrics, each service's, and `trainops_service_up`
    (0 for a service that did not answer: its own metrics are then missing). With `METRICS_PORT` set,
    every process serves its counters itself and neither the services' answers nor the gateway's own
    part carry them: this document is then only what is computed now from shared state."""
    answers = ask_all(gateway, lambda s: s.metrics())
    up = gauge("trainops_service_up", "1 when the service answered the scrape in time.", ["service"],
               [(name, 0 if answer is None else 1) for name, answer in answers.items()])
    own = metrics.own_text("gateway", [up])
    return metrics.merge([own] + [metrics.service_text(answer) for answer in answers.values() if answer])


def _newest_first(item):
    moment = item.get("parked_at")
    return moment if isinstance(moment, datetime) else datetime.min.replace(tzinfo=timezone.utc)


def dead_letters(gateway, actor, consumer=None, event_type=None, status=None):
    """{"items": every service's dead letters newest first, "unavailable": services that did not answer}."""
    filters = {k: v for k, v in (("event_type", event_type), ("status", status)) if v}
    answers = ask_all(gateway, lambda s: s.dead_letters(actor, filters), _consumers(consumer))
    items = [letter for letters in answers.values() if letters for letter in letters]
    items.sort(key=_newest_first, reverse=True)
    return {"items": items, "next_cursor": None,
            "unavailable": sorted(name for name, answer in answers.items() if answer is None)}


def replay_one(gateway, actor, letter_id):
    """Replay one dead letter: its id names its consumer (`<service>:<event id>`)."""
    consumer = letter_id.split(":", 1)[0]
    if consumer not in services():
        raise not_found("dead_letter", letter_id)
    return getattr(gateway, consumer).replay_dead_letters(actor, {"ids": [letter_id]})


def replay_kind(gateway, actor, consumer, event_type):
    """Replay every parked dead letter of `event_type` at `consumer`."""
    fields = {}
    if consumer not in services():
        fields["consumer"] = ["One of {}.".format(", ".join(services()))]
    if not event_type:
        fields["event_type"] = ["Required."]
    if fields:
        raise DomainError("invalid_fields", "Some fields are invalid.", fields, 422)
    return getattr(gateway, consumer).replay_dead_letters(actor, {"event_type": event_type})


def _consumers(consumer):
    if not consumer:
        return services()
    if consumer not in services():
        raise DomainError("invalid_fields", "Some fields are invalid.",
                          {"consumer": ["One of {}.".format(", ".join(services()))]}, 422)
    return (consumer,)


def audit_trail(gateway, actor, correlation_id):
    """Everything every service recorded under a correlation id, in order of time."""
    if not correlation_id:
        raise DomainError("invalid_fields", "Some fields are invalid.",
                          {"correlation_id": ["Required."]}, 422)
    answers = ask_all(gateway, lambda s: s.events(actor, correlation_id))
    items = [record for records in answers.values() if records for record in records]
    items.sort(key=lambda r: r.get("at") or datetime.min.replace(tzinfo=timezone.utc))
    return {"correlation_id": correlation_id, "items": items,
            "unavailable": sorted(name for name, answer in answers.items() if answer is None)}

