"""The counters the platform keeps in each process (events published, handled, retried,
dead-lettered and repeated; handler and HTTP latencies), every sample labelled with its service.
Rendering and serving them is operations' work (`ops/metrics.py`)."""
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

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
EVENT_GROUPS = Histogram(
    "trainops_event_group_size", "Events written in one transaction by handlers that group "
    "(`grouped=True`), per transaction; a group that failed is not counted (its events went alone).",
    ["service"], registry=REGISTRY, buckets=(1, 2, 4, 8, 16, 32, 64))
HTTP_REQUESTS = Counter(
    "trainops_http_requests", "HTTP requests the gateway answered, by route pattern and status.",
    ["service", "method", "route", "status"], registry=REGISTRY)
HTTP_SECONDS = Histogram(
    "trainops_http_request_seconds", "Time the gateway took to answer, by route pattern.",
    ["service", "method", "route"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15))

