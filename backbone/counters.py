"""The counters the platform keeps in each process (events published, handled, retried,
dead-lettered and repeated; handler and HTTP latencies), every sample labelled with its service.
Rendering and serving them is operations' work (`ops/metrics.py`)."""
from nameko import config
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest

# `*_created` samples (a gauge per counter) only double the document; rate() does not need them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_PUBLISHED = Counter(
    "trainops_events_published", "Events the outbox relay published (broker confirmed).",
    ["service", "event_type"], registry=REGISTRY)
EVENTS_HANDLED = Counter(
    "trainops_events_handled", "Events a consumer handled successfully.",
    ["service", "event_type"], registry=REGISTRY)
EVENTS_RETRIED = Counter(
    "trainops_events_retried", "Handler failures sent to a delay queue for another attempt.",
    ["service", "event_type"], registry=REGISTRY)
EVENTS_DEAD_LETTERED = Counter(
    "trainops_events_dead_lettered", "Events parked in a dead letter (retries exhausted or unreadable).",
    ["service", "event_type"], registry=REGISTRY)
EVENTS_DUPLICATE = Counter(
    "trainops_events_duplicate", "Deliveries of an event already handled, skipped without effect.",
    ["service", "event_type"], registry=REGISTRY)
HANDLER_SECONDS = Histogram(
    "trainops_event_handler_seconds", "Time an event handler took, success or failure.",
    ["service", "event_type"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
HTTP_REQUESTS = Counter(
    "trainops_http_requests", "HTTP requests the gateway answered, by route pattern and status.",
    ["service", "method", "route", "status"], registry=REGISTRY)
HTTP_SECONDS = Histogram(
    "trainops_http_request_seconds", "Time the gateway took to answer, by route pattern.",
    ["service", "method", "route"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15))


def served_port():
    """The port this process serves its own counters on (`METRICS_PORT`), or None: off."""
    port = config.get("METRICS_PORT")
    return int(port) if port not in (None, "") else None


class _OwnSamples:
    """The registry's families with only one service's samples (several share a process in tests)."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        for family in REGISTRY.collect():
            samples = [s for s in family.samples if s.labels.get("service") == self.service]
            if samples:
                family.samples = samples
                yield family


def exported_text(service):
    """`service`'s counters as Prometheus text, to travel with its `metrics` RPC; empty when this
    process serves them on METRICS_PORT itself (a replica's RPC answer would be a fraction)."""
    if served_port() is not None:
        return ""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OwnSamples(service))
    return generate_latest(registry).decode("utf-8")
