"""`python -m ops.probe <service>`, the readiness and liveness probe of deploy/compose and deploy/k8s,
run as the container runtime runs it (a process of its own).

The pod's probe reads the heartbeat file its own service process writes: a running service passes, one
that stops writing (hung, killed) fails both probes, and one whose MongoDB does not answer is unready
but alive. `--service-wide` asks the health RPC of whichever replica answers, against the real services
on the real broker."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nameko
import pytest
from nameko.testing.utils import get_container, get_extension

from ops.heartbeat import Heartbeat
from ops.probe import check_heartbeat, heartbeat_path, write_heartbeat
from backbone.database import mongo_client
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("partners", "scheduling", "registration", "notifications")
TIMEOUT = 2
# The RPC probe's own start (python, nameko's import) on a loaded machine, on top of its timeout.
SLACK = 6
# Short beats, so that a heartbeat goes stale within seconds (3 intervals).
INTERVAL = 1.0


def probe(*args, amqp_uri=None):
    """(exit status, its one line, seconds it took)."""
    started = time.monotonic()
    env = dict(os.environ, AMQP_URI=amqp_uri) if amqp_uri else None
    done = subprocess.run([sys.executable, "-m", "ops.probe", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout.strip(), time.monotonic() - started


def probe_all(services, *flags, amqp_uri=None):
    """Every service probed at once, as the pods' probes run."""
    env = dict(os.environ, AMQP_URI=amqp_uri) if amqp_uri else None
    started = {name: subprocess.Popen([sys.executable, "-m", "ops.probe", name, *flags],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
               for name in services}
    return {name: (process.wait(60), process.stdout.read().strip()) for name, process in started.items()}


def probe_until(condition, *args):
    """Probe until `condition(status, line)` holds (the heartbeat changes every INTERVAL); returns
    (status, line)."""
    def attempt():
        status, line, _ = probe(*args)
        return (status, line) if condition(status, line) else None
    return wait_for(attempt, timeout=60, interval=0.5)


@pytest.fixture
def heartbeats(app_config, tmp_path):
    """The directory the services of this test write their heartbeats to, every INTERVAL seconds."""
    nameko.config.update(HEARTBEAT_SECONDS=INTERVAL, HEARTBEAT_DIR=str(tmp_path))
    return str(tmp_path)


@pytest.fixture
def system(heartbeats, system):
    """conftest's `system`, started with this test's heartbeat settings."""
    return system


def nowhere_port():
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        return unused.getsockname()[1]


# -- the pod's probe: the heartbeat file of its own process -------------------------------------------

def test_every_running_service_process_is_ready_and_alive_by_its_own_heartbeat(system, heartbeats):
    for flags in ((), ("--live",)):
        expected = {name: (0, "{}: ok (broker: ok, mongodb: ok, outbox: ok)".format(name)) for name in SERVICES}
        wait_for(lambda: probe_all(SERVICES, "--dir", heartbeats, *flags) == expected, timeout=60, interval=0.5)


def test_a_hung_replica_fails_its_own_probes_while_its_sibling_still_answers_for_the_service(
        container_factory, heartbeats, tmp_path_factory, app_config):
    from services.partners.service import PartnersService
    # Two replicas of partners, each in a pod of its own: two heartbeat directories.
    first_pod, second_pod = heartbeats, str(tmp_path_factory.mktemp("second-pod"))
    first = container_factory(PartnersService)
    first.start()
    nameko.config["HEARTBEAT_DIR"] = second_pod
    second = container_factory(PartnersService)
    second.start()
    for pod in (first_pod, second_pod):
        for flags in ((), ("--live",)):
            probe_until(lambda status, line: status == 0, "partners", "--dir", pod, *flags)

    # What a hung process looks like from its pod: the file stays, and nobody writes it any more.
    first.kill()
    assert os.path.exists(heartbeat_path("partners", first_pod))
    status, line = probe_until(lambda status, line: status == 1, "partners", "--dir", first_pod, "--live")
    assert line.startswith("partners: heartbeat stale (last written "), line
    assert line.endswith("expected every 1 s)"), line
    status, line, _ = probe("partners", "--dir", first_pod)
    assert status == 1 and line.startswith("partners: heartbeat stale"), line
    # Its sibling keeps its own heartbeat, and still answers the health RPC of the service: which is
    # all the service-wide probe can see.
    ok = "partners: ok (broker: ok, mongodb: ok, outbox: ok)"
    assert probe("partners", "--dir", second_pod)[:2] == (0, ok)
    assert probe("partners", "--service-wide", "--timeout", str(TIMEOUT), amqp_uri=app_config["AMQP_URI"])[:2] == (0, ok)


def test_a_stopped_service_removes_its_heartbeat_at_once(container_factory, heartbeats):
    from services.partners.service import PartnersService
    container = container_factory(PartnersService)
    container.start()
    probe_until(lambda status, line: status == 0, "partners", "--dir", heartbeats)
    container.stop()
    path = heartbeat_path("partners", heartbeats)
    for flags in ((), ("--live",)):
        assert probe("partners", "--dir", heartbeats, *flags)[:2] == (
            1, "partners: no heartbeat at {} (not started, or stopped)".format(path))


def test_a_process_whose_mongodb_does_not_answer_is_unready_but_alive(container_factory, heartbeats):
    from services.partners.service import PartnersService
    container = container_factory(PartnersService)
    container.start()
    probe_until(lambda status, line: status == 0, "partners", "--dir", heartbeats)
    heartbeat = get_extension(container, Heartbeat)

    # MongoDB refuses, and the client gives up quickly: the check reports it down.
    refusing = mongo_client("mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=300"
                            .format(nowhere_port()))
    # MongoDB refuses, and the client waits for it as production's does (30 s): the check hangs.
    waiting = mongo_client("mongodb://127.0.0.1:{}/?directConnection=true".format(nowhere_port()))
    try:
        heartbeat.db = refusing.trainops_partners
        down = "partners: down (broker: ok, mongodb: down: ServerSelectionTimeoutError)"
        probe_until(lambda status, line: (status, line) == (1, down), "partners", "--dir", heartbeats)
        assert probe("partners", "--dir", heartbeats, "--live")[:2] == (0, down)

        heartbeat.db = waiting.trainops_partners
        status, line = probe_until(lambda status, line: line.startswith("partners: health checks hang"),
                                   "partners", "--dir", heartbeats)
        assert status == 1, line
        assert probe("partners", "--dir", heartbeats, "--live")[0] == 0
    finally:
        container.kill()  # before the clients: the hung check goes with the container
        refusing.close()
        waiting.close()


def test_the_probe_reads_the_file_without_importing_nameko_or_eventlet(tmp_path):
    write_heartbeat(heartbeat_path("partners", str(tmp_path)), {
        "service": "partners", "interval": 5, "beat": time.monotonic(), "checked": time.monotonic(),
        "status": "degraded", "checks": {"mongodb": "ok", "broker": "ok", "outbox": "stalled: 3 events"}})
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ops.probe", "partners", "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (
        0, "partners: degraded (broker: ok, mongodb: ok, outbox: stalled: 3 events)")
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert not imported & {"nameko", "eventlet", "kombu", "amqp", "pymongo", "yaml"}


class TestWhatTheFileSays:
    """The probe's verdicts on heartbeat files as the writer leaves them, at a given moment."""

    NOW = 10_000.0

    def judge(self, tmp_path, live=False, **record):
        path = heartbeat_path("partners", str(tmp_path))
        beat = dict({"interval": 5, "beat": self.NOW - 1, "checked": self.NOW - 2, "status": "ok",
                     "checks": {"mongodb": "ok", "broker": "ok", "outbox": "ok"}}, **record)
        write_heartbeat(path, beat)
        return check_heartbeat("partners", path, live=live, now=self.NOW)

    def test_fresh_and_ok_is_ready_and_alive(self, tmp_path):
        for live in (False, True):
            assert self.judge(tmp_path, live) == (0, "partners: ok (broker: ok, mongodb: ok, outbox: ok)")

    def test_a_stalled_outbox_is_degraded_and_still_ready(self, tmp_path):
        assert self.judge(tmp_path, status="degraded", checks={"outbox": "stalled"}) == (
            0, "partners: degraded (outbox: stalled)")

    def test_a_dependency_down_is_unready_but_alive(self, tmp_path):
        checks = {"mongodb": "down: ServerSelectionTimeoutError", "broker": "ok"}
        line = "partners: down (broker: ok, mongodb: down: ServerSelectionTimeoutError)"
        assert self.judge(tmp_path, status="down", checks=checks) == (1, line)
        assert self.judge(tmp_path, live=True, status="down", checks=checks) == (0, line)

    def test_a_check_that_hangs_is_unready_but_alive(self, tmp_path):
        assert self.judge(tmp_path, checked=self.NOW - 16) == (
            1, "partners: health checks hang (none finished for 16 s)")
        assert self.judge(tmp_path, live=True, checked=self.NOW - 16)[0] == 0

    def test_a_process_that_has_not_checked_yet_is_alive_but_not_ready(self, tmp_path):
        assert self.judge(tmp_path, checked=None, status="starting", checks={}) == (
            1, "partners: starting (no health check finished yet)")
        assert self.judge(tmp_path, live=True, checked=None, status="starting", checks={}) == (0, "partners: starting")

    def test_a_heartbeat_older_than_three_intervals_fails_both(self, tmp_path):
        assert self.judge(tmp_path, beat=self.NOW - 15)[0] == 0
        for live in (False, True):
            assert self.judge(tmp_path, live, beat=self.NOW - 16) == (
                1, "partners: heartbeat stale (last written 16 s ago, expected every 5 s)")

    def test_a_heartbeat_from_another_boot_is_stale(self, tmp_path):
        assert self.judge(tmp_path, live=True, beat=self.NOW + 100)[0] == 1

    def test_a_missing_or_broken_file_fails_both(self, tmp_path):
        path = heartbeat_path("partners", str(tmp_path))
        for live in (False, True):
            assert check_heartbeat("partners", path, live=live) == (
                1, "partners: no heartbeat at {} (not started, or stopped)".format(path))
        Path(path).write_text("{\"interval\": 5")
        assert check_heartbeat("partners", path) == (
            1, "partners: unreadable heartbeat at {} (JSONDecodeError)".format(path))
        Path(path).write_text(json.dumps({"status": "ok"}))
        assert check_heartbeat("partners", path, live=True) == (
            1, "partners: unreadable heartbeat at {} (KeyError)".format(path))


# -- --service-wide: does any replica answer its health RPC? ------------------------------------------

def test_every_running_service_answers_the_service_wide_probe(system, app_config):
    for flags in (("--service-wide",), ("--service-wide", "--live")):
        results = probe_all(SERVICES, *flags, "--timeout", str(TIMEOUT), amqp_uri=app_config["AMQP_URI"])
        for name in SERVICES:
            assert results[name] == (0, "{}: ok (broker: ok, mongodb: ok, outbox: ok)".format(name)), flags


def test_a_stopped_service_fails_the_service_wide_probe_within_the_timeout_while_the_others_pass(system, app_config):
    from services.partners.service import PartnersService
    get_container(system, PartnersService).stop()
    wide = ("--service-wide", "--timeout", str(TIMEOUT))

    status, line, took = probe("partners", *wide, amqp_uri=app_config["AMQP_URI"])
    assert (status, line) == (1, "partners: no answer within 2 s")
    assert TIMEOUT <= took < TIMEOUT + SLACK
    # Alive means "answers": a service that does not, while the broker is up, is not alive.
    assert probe("partners", *wide, "--live", amqp_uri=app_config["AMQP_URI"])[:2] == (
        1, "partners: no answer within 2 s")
    assert probe("scheduling", *wide, amqp_uri=app_config["AMQP_URI"])[0] == 0


def test_an_unknown_service_fails_the_service_wide_probe_at_once(system, app_config):
    status, line, took = probe("payroll", "--service-wide", "--timeout", str(TIMEOUT), amqp_uri=app_config["AMQP_URI"])
    assert (status, line) == (1, "payroll: unknown service (nothing consumes its RPC queue)")
    assert took < SLACK


def test_a_broker_that_cannot_be_reached_makes_the_service_wide_probe_unready_but_not_dead():
    nowhere = "amqp://guest:guest@127.0.0.1:{}/".format(nowhere_port())
    wide = ("--service-wide", "--timeout", str(TIMEOUT))
    status, line, took = probe("partners", *wide, amqp_uri=nowhere)
    assert (status, line) == (1, "partners: broker unreachable (ConnectionRefusedError)")
    assert took < TIMEOUT + SLACK
    assert probe("partners", *wide, "--live", amqp_uri=nowhere)[0] == 0
