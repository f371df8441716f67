"""Prometheus text for the gateway's `/metrics`, and each process's own counters on METRICS_PORT.

The platform counts for every service the same way (`backbone/counters.py`), and each service
computes its gauges when asked (`ops/rpcs.py`, the `metrics` RPC, as data). Here they become
the Prometheus text format: `render` turns a service's answer into text, and `merge` makes one
document of several, where each metric family appears once, as Prometheus requires.

Counters live in the process that counted them. Asked through the gateway, a service with several
replicas answers from whichever replica takes the RPC, so with `METRICS_PORT` set (every deployment
does) each process serves its own registry on that port instead (`MetricsServer`), Prometheus scrapes
every process, and the gateway's /metrics carries only what is computed at scrape time from shared
state: each number is then published exactly once. Without it (`make run`, the tests), the counters
travel with the RPC answers as well.
"""
import logging

import eventlet
from eventlet import wsgi
from nameko import config
from nameko.extensions import DependencyProvider
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from backbone.counters import REGISTRY

log = logging.getLogger(__name__)


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


def gauge_family(data):
    """A gauge as a service described it (`ops.rpcs.gauge`) as a Prometheus family."""
    family = GaugeMetricFamily(data["name"], data["help"], labels=data["labels"])
    for row in data["rows"]:
        family.add_metric([str(v) for v in row[:-1]], float(row[-1]))
    return family


def render(*families):
    """Families as Prometheus text."""
    class _Fixed:
        def collect(self):
            return list(families)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed())
    return generate_latest(registry).decode("utf-8")


def service_text(answer):
    """A service's `metrics` answer ({"gauges": [...], "counters": text}) as Prometheus text."""
    return render(*(gauge_family(g) for g in answer["gauges"])) + (answer.get("counters") or "")


def own_text(service, gauges=()):
    """The text of a process that is not asked by RPC (the gateway): its counters, and `gauges`."""
    return render(*(gauge_family(g) for g in gauges)) + exported_text(service)


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
    Prometheus to scrape every replica; nothing when `METRICS_PORT` is empty. Every container has one
    (`ops.container.Container` attaches it); one server per process, however many services share the
    process. It hands workers nothing."""

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
