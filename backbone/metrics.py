"""Prometheus metrics: one registry per process, every sample labelled with the service it belongs to.

The platform counts for every service the same way (the subscriber counts handled, retried,
dead-lettered and duplicate events and times handlers; the relay counts what it published; the gateway
counts HTTP requests). Gauges that describe the database or the broker (outbox backlog, dead letters,
queue depths) are computed when scraped, by the service that owns them (`Operations.metrics`).

A service answers only its own samples, so several services in one process (the tests) still give
each one its own exposition; the gateway merges them into one document (`merge`), where each metric
family appears once, as Prometheus requires.

Counters live in the process that counted them. Asked through the gateway, a service with several
replicas answers from whichever replica takes the RPC, so with `METRICS_PORT` set (every deployment
does) each process serves its own registry on that port instead (`MetricsServer`), Prometheus scrapes
every process, and the `metrics` RPC and the gateway's /metrics carry only what is computed at scrape
time from shared state: each number is then published exactly once. Without it (`make run`, the
tests), the counters travel with the RPC answers as well.
"""
import logging

import eventlet
from eventlet import wsgi
from nameko import config
from nameko.extensions import DependencyProvider
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client import make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

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
    """A collector that yields the process registry's families with only `service`'s samples (unless
    `counters` is false), plus families computed at scrape time."""

    def __init__(self, service, extra, counters):
        self.service = service
        self.extra = extra
        self.counters = counters

    def collect(self):
        if self.counters:
            for family in REGISTRY.collect():
                samples = [s for s in family.samples if s.labels.get("service") == self.service]
                if samples:
                    family.samples = samples
                    yield family
        yield from self.extra


def exposition(service, extra_families=(), extra_text=""):
    """Prometheus text for one service: its counters and histograms (only while this process does not
    serve them on `METRICS_PORT`), `extra_families` (metric families computed now) and `extra_text`
    (lines in the text format, from `domain_metrics`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OwnSamples(service, list(extra_families), counters=served_port() is None))
    text = generate_latest(registry).decode("utf-8")
    if extra_text:
        text += extra_text if extra_text.endswith("\n") else extra_text + "\n"
    return text


def gauge(name, documentation, labels, rows):
    """A gauge family from `rows`: (label values..., value) tuples, e.g.
    gauge("trainops_notices", "Notices by channel and status.", ["channel", "status"],
          [("email", "sent", 12), ("sms", "failed", 1)])"""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for row in rows:
        family.add_metric([str(v) for v in row[:-1]], float(row[-1]))
    return family


def counts(collection, name, documentation, fields, match=None):
    """A gauge of how many documents of `collection` have each combination of `fields`, e.g. notices
    by channel and status: counts(db.deliveries, "trainops_notices", "...", ["channel", "status"])."""
    pipeline = ([{"$match": match}] if match else []) + [
        {"$group": {"_id": {f: "$" + f for f in fields}, "n": {"$sum": 1}}}]
    rows = [tuple(str(row["_id"].get(f)) for f in fields) + (row["n"],) for row in collection.aggregate(pipeline)]
    return gauge(name, documentation, fields, sorted(rows))


def render(*families):
    """Families as text lines, for `domain_metrics` to return."""
    class _Fixed:
        def collect(self):
            return list(families)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed())
    return generate_latest(registry).decode("utf-8")


def merge(texts):
    """Several expositions as one document: a family named in several texts is written once with
    all their samples (Prometheus refuses a second TYPE line for the same name)."""
    families = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name in families:
                families[family.name].samples.extend(family.samples)
            else:
                families[family.name] = family
    return render(*families.values())


# -- each process's own counters, on METRICS_PORT --------------------------------------------------------

class _ProcessServer:
    """The one HTTP server of this process: GET /metrics answers the whole registry (every service
    running in the process; one in production). Several containers share it (the tests run every
    service in one process): the first to start opens it, the last to stop closes it."""

    def __init__(self):
        self.users = 0
        self.address = None
        self._socket = None
        self._thread = None

    def acquire(self, host, port):
        self.users += 1
        if self._thread is not None:
            if (host, port) != self.address:
                log.warning("metrics: already serving on %s:%s; not on %s:%s as well", *self.address, host, port)
            return
        try:
            self._socket = eventlet.listen((host, port))
        except OSError as exc:
            # Counted all the same; the scrape of this process fails, which its `up` series shows.
            log.error("metrics: cannot listen on %s:%s (%s); this process's counters are not served",
                      host, port, exc)
            return
        self.address = (host, port)
        self._thread = eventlet.spawn(wsgi.server, self._socket, _metrics_app, debug=False,
                                      log=logging.getLogger(__name__ + ".http"), log_output=False)
        log.info("metrics: serving this process's counters on http://%s:%s/metrics", host, port)

    def release(self):
        self.users = max(self.users - 1, 0)
        if self.users == 0 and self._thread is not None:
            thread, self._thread = self._thread, None
            thread.kill()
            self._socket.close()
            self._socket = self.address = None


_counters_app = make_wsgi_app(REGISTRY)


def _metrics_app(environ, start_response):
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found: the counters are at /metrics\n"]
    return _counters_app(environ, start_response)


_SERVER = _ProcessServer()


class MetricsServer(DependencyProvider):
    """Serves this process's counters and histograms on `METRICS_HOST`:`METRICS_PORT` (/metrics), for
    Prometheus to scrape every replica; nothing when `METRICS_PORT` is empty. Every service has one
    (`Operations` attaches it, and the gateway declares it); one server per process, however many
    services share the process. It hands workers nothing."""

    acquired = False

    def setup(self):
        self.port = served_port()
        self.host = config.get("METRICS_HOST") or "127.0.0.1"
        self.acquired = False

    def start(self):
        if self.port is not None:
            self.acquired = True
            _SERVER.acquire(self.host, self.port)

    def stop(self):
        self._release()

    def kill(self):
        self._release()

    def _release(self):
        if self.acquired:
            self.acquired = False
            _SERVER.release()
