"""Counters are published once, by the process that counted them. With two replicas of a service, the
gateway's /metrics would hear one random replica per scrape; so with `METRICS_PORT` set (as every
deployment sets it) each process serves its own counters on that port for Prometheus to scrape every
replica, and the gateway's /metrics keeps only what is computed at scrape time from shared state
(outbox, dead letters, queues, the services' own numbers). Real containers and real `nameko run`
processes on the real broker and database."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nameko
import pytest
import requests
from kombu import Connection
from nameko.testing.utils import get_container
from prometheus_client.parser import text_string_to_metric_families

from backbone import topology
from backbone.events import make_envelope
from backbone.outbox import ConfirmedPublisher
from devstack import free_port
from tests.helpers import TEST_SECRETS, moved, samples, value, wait_for

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("partners", "scheduling", "registration", "notifications")
# What only the process that counted it can tell: never in the gateway's document once served per process.
COUNTERS = {"trainops_events_published_total", "trainops_events_handled_total", "trainops_events_retried_total",
            "trainops_events_dead_lettered_total", "trainops_events_duplicate_total",
            "trainops_event_handler_seconds_count", "trainops_event_handler_seconds_sum",
            "trainops_event_handler_seconds_bucket", "trainops_http_requests_total",
            "trainops_http_request_seconds_count", "trainops_http_request_seconds_sum",
            "trainops_http_request_seconds_bucket"}


def scrape_port(port):
    """{(name, frozenset(labels)): value} of http://127.0.0.1:<port>/metrics, or None while it does not answer."""
    try:
        response = requests.get("http://127.0.0.1:{}/metrics".format(port), timeout=2)
    except requests.ConnectionError:
        return None
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def refused(port):
    try:
        requests.get("http://127.0.0.1:{}/metrics".format(port), timeout=2)
    except requests.ConnectionError:
        return True
    return False


def withdrawn(n):
    return make_envelope("offering_withdrawn", {
        "offering_id": "offering-{:016x}".format(n), "partner_id": "partner-00000000000000bb",
        "reason": "replica count"}, "partners", "corr-replica-count-{}".format(n))


def publish(amqp_uri, service, envelopes):
    """Straight into one consumer's queue, as the relay would have routed them there."""
    publisher = ConfirmedPublisher(amqp_uri)
    try:
        publisher.publish_batch([("", topology.queue_name(service), json.dumps(e).encode(), {
            "content_type": "application/json", "message_id": e["event_id"], "type": e["type"],
            "correlation_id": e["correlation_id"]}) for e in envelopes])
    finally:
        publisher.close()


@pytest.fixture
def metrics_port(app_config):
    """Every container of this test serves its process's counters on a port of its own."""
    port = free_port()
    with nameko.config.patch({"METRICS_HOST": "127.0.0.1", "METRICS_PORT": str(port)}):
        yield port


def test_without_a_metrics_port_the_gateway_carries_the_counters_as_it_always_did(system, operator):
    assert nameko.config.get("METRICS_PORT") is None  # config.yml's default: off
    wait_for(lambda: value(samples(operator), "trainops_service_up") == len(SERVICES), timeout=20)
    found = samples(operator)  # the scrape before this one is counted now
    assert ("trainops_http_requests_total", frozenset(
        {"service": "gateway", "method": "GET", "route": "/metrics", "status": "200"}.items())) in found


def test_a_process_serves_its_counters_and_the_gateway_only_what_is_computed_from_shared_state(
        metrics_port, system, operator):
    wait_for(lambda: value(samples(operator), "trainops_service_up") == len(SERVICES), timeout=20)
    before = scrape_port(metrics_port)
    created = operator.post("/partners", {"code": "PORT-UNI", "name": "Trường Cổng đo", "kind": "university",
                                          "contact_email": "daotao@port.edu.vn"})
    assert created.status_code == 201, created.text

    # The process's counters, on its port (they live as long as the process: the tests' services share
    # one): the event partners published, notifications handled, and the request the gateway answered.
    def counted():
        now = scrape_port(metrics_port)
        return now if moved(before, now, "trainops_events_published_total", service="partners") and moved(
            before, now, "trainops_events_handled_total", service="notifications",
            event_type="partner_onboarded") else None
    own = wait_for(counted, timeout=20)
    assert moved(before, own, "trainops_http_requests_total", service="gateway", method="POST", route="/partners",
                 status="201") == 1
    assert moved(before, own, "trainops_event_handler_seconds_count", service="notifications") >= 1
    assert not any(name.startswith(("trainops_outbox", "trainops_queue", "trainops_service_up"))
                   for name, _ in own)
    assert requests.get("http://127.0.0.1:{}/other".format(metrics_port), timeout=2).status_code == 404

    # The gateway's document: the gauges every scrape computes afresh, and not one counter.
    shared = samples(operator)
    names = {name for name, _ in shared}
    families = {family.name for family in text_string_to_metric_families(operator.get("/metrics").text)}
    assert {"trainops_notices", "trainops_session_seats_taken"} <= families  # the services' domain_metrics
    for service in SERVICES:
        assert value(shared, "trainops_service_up", service=service) == 1
        assert value(shared, "trainops_mongodb_up", service=service) == 1
        assert value(shared, "trainops_broker_up", service=service) == 1
    assert {"trainops_outbox_backlog", "trainops_outbox_oldest_pending_seconds", "trainops_dead_letters",
            "trainops_queue_messages", "trainops_queue_consumers"} <= names
    # Nothing the process serves travels through the gateway too: each number is published once.
    assert not names & COUNTERS, names & COUNTERS
    assert not names & {name for name, _ in own}

    # One server for the process, however many services it runs: open while any of them runs.
    from gateway.service import GatewayService
    from services.partners.service import PartnersService
    get_container(system, GatewayService).stop()
    get_container(system, PartnersService).stop()
    assert scrape_port(metrics_port) is not None
    system.stop()
    assert refused(metrics_port)


# -- two real processes of one service ----------------------------------------------------------------

def _die_with_the_test():
    """In the child: the kernel kills it when the test process dies, however that dies."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def consumers(amqp_uri, queue):
    with Connection(amqp_uri) as connection:
        try:
            return connection.default_channel.queue_declare(queue, passive=True).consumer_count
        except Exception:  # not declared yet
            return 0


@pytest.fixture
def two_scheduling_processes(app_config, tmp_path):
    """Two `nameko run` processes of scheduling on this test's broker vhost and databases, each
    serving its counters on its own METRICS_PORT: {port: process}."""
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               AMQP_URI=app_config["AMQP_URI"], MONGO_URI=app_config["MONGO_URI"],
               DATABASE_PREFIX=app_config["DATABASE_PREFIX"], OPERATOR_TOKEN=app_config["OPERATOR_TOKEN"],
               **TEST_SECRETS,
               # The retry queues as this run's in-process services declare them (their names carry the delays).
               EVENT_RETRY_DELAYS=json.dumps(app_config["EVENTS"]["retry_delays"]),
               HEARTBEAT_DIR=str(tmp_path), METRICS_HOST="127.0.0.1", LOG_LEVEL="WARNING")
    nameko_script = Path(sys.executable).parent / "nameko"
    processes = {}
    try:
        for replica in ("a", "b"):
            port = free_port()
            with open(tmp_path / "scheduling-{}.log".format(replica), "wb") as log:
                processes[port] = subprocess.Popen(
                    [str(nameko_script), "run", "--config", "config.yml", "services.scheduling.service"],
                    cwd=ROOT, env=dict(env, METRICS_PORT=str(port)), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_the_test)

        def up():
            for port, process in processes.items():
                if process.poll() is not None:
                    pytest.fail("scheduling exited with {}:\n{}".format(process.returncode, "\n".join(
                        (tmp_path / name).read_text(errors="replace") for name in sorted(os.listdir(tmp_path))
                        if name.endswith(".log"))))
            return all(scrape_port(port) is not None for port in processes) and consumers(
                app_config["AMQP_URI"], topology.queue_name("scheduling")) == len(processes)
        wait_for(up, timeout=40, interval=0.2)
        yield processes
    finally:
        # Nothing started here outlives the test.
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 15
        for process in processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_two_replicas_each_serve_their_own_count_and_together_count_every_event_once(
        two_scheduling_processes, app_config, db):
    events = [withdrawn(n) for n in range(20)]
    publish(app_config["AMQP_URI"], "scheduling", events)

    def handled(port, outcomes=("handled",)):
        found = scrape_port(port) or {}
        return sum(value(found, "trainops_events_{}_total".format(outcome), service="scheduling",
                         event_type="offering_withdrawn") for outcome in outcomes)

    ports = list(two_scheduling_processes)
    # Every delivery ends handled, repeated, retried or dead-lettered: once all of them are counted,
    # nothing more can arrive, and each event must then have been handled by one replica, once.
    every_outcome = ("handled", "duplicate", "retried", "dead_lettered")
    wait_for(lambda: sum(handled(port, every_outcome) for port in ports) >= len(events), timeout=30, interval=0.2)
    counts = {port: handled(port) for port in ports}
    assert sum(counts.values()) == len(events), counts
    assert all(count > 0 for count in counts.values()), counts
    assert db("scheduling").handled_events.count_documents({}) == len(events)
