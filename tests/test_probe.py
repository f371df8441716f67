"""`python -m backbone.probe <service>`, the readiness and liveness probe of deploy/compose and deploy/k8s,
run as the container runtime runs it (a process of its own) against the real services on the real
broker: a healthy service passes, a stopped or unknown one fails within the timeout, and the liveness
variant does not blame a pod for a broker that is down."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from nameko.testing.utils import get_container

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 2
# The probe's own start (python, nameko's import) on a loaded machine, on top of its timeout.
SLACK = 6


def probe(amqp_uri, *args):
    """(exit status, its one line, seconds it took)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "backbone.probe", *args, "--timeout", str(TIMEOUT)],
        cwd=ROOT, env=dict(os.environ, AMQP_URI=amqp_uri), capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout.strip(), time.monotonic() - started


def probe_all(amqp_uri, services, *flags):
    """Every service probed at once, as the pods' probes run."""
    started = {name: subprocess.Popen(
        [sys.executable, "-m", "backbone.probe", name, *flags, "--timeout", str(TIMEOUT)],
        cwd=ROOT, env=dict(os.environ, AMQP_URI=amqp_uri), stdout=subprocess.PIPE, text=True)
        for name in services}
    return {name: (process.wait(60), process.stdout.read().strip()) for name, process in started.items()}


def test_every_running_service_passes_its_readiness_and_liveness_probe(system, app_config):
    services = ("partners", "scheduling", "registration", "notifications")
    for flags in ((), ("--live",)):
        results = probe_all(app_config["AMQP_URI"], services, *flags)
        for name in services:
            assert results[name] == (0, "{}: ok (broker: ok, mongodb: ok, outbox: ok)".format(name)), flags


def test_a_stopped_service_fails_its_probe_within_the_timeout_while_the_others_pass(system, app_config):
    from services.partners.service import PartnersService
    get_container(system, PartnersService).stop()

    status, line, took = probe(app_config["AMQP_URI"], "partners")
    assert (status, line) == (1, "partners: no answer within 2 s")
    assert TIMEOUT <= took < TIMEOUT + SLACK
    # Alive means "answers": a service that does not, while the broker is up, is restarted.
    assert probe(app_config["AMQP_URI"], "partners", "--live")[:2] == (1, "partners: no answer within 2 s")
    assert probe(app_config["AMQP_URI"], "scheduling")[0] == 0


def test_an_unknown_service_fails_at_once(system, app_config):
    status, line, took = probe(app_config["AMQP_URI"], "payroll")
    assert (status, line) == (1, "payroll: unknown service (nothing consumes its RPC queue)")
    assert took < SLACK


def test_a_broker_that_cannot_be_reached_makes_the_service_unready_but_not_dead():
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        nowhere = "amqp://guest:guest@127.0.0.1:{}/".format(unused.getsockname()[1])
    status, line, took = probe(nowhere, "partners")
    assert (status, line) == (1, "partners: broker unreachable (ConnectionRefusedError)")
    assert took < TIMEOUT + SLACK
    assert probe(nowhere, "partners", "--live")[0] == 0
