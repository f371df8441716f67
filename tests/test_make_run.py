"""`make run` as a newcomer meets it: the orchestrator brings every service up as real `nameko run`
processes, loads the seed, and the README's walk-through works against it word for word (only the
addresses differ); the logs hold no contact details; a service killed with SIGKILL is restarted by
the supervisor, which says so; Ctrl-C stops everything. One `make run` for the module, its tests in order."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devstack import free_port

ROOT = Path(__file__).resolve().parent.parent


def readme_walkthrough():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"With `make run` running.*?```sh\n(.*?)```", text, re.S).group(1)


@pytest.fixture(scope="module")
def running_stack(mongo, amqp_uri, smtp_sink, sms_gateway, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("make-run")
    port = free_port()
    env = dict(os.environ, MONGO_URI=mongo, AMQP_URI=amqp_uri, SMTP_HOST="127.0.0.1",
               SMTP_PORT=str(smtp_sink.port), SMS_GATEWAY_URL=sms_gateway.url, GATEWAY_PORT=str(port),
               OPERATOR_TOKEN="walkthrough-token", DATABASE_PREFIX="run{}".format(port), PYTHONUNBUFFERED="1")
    output = tmp_path / "make-run.out"
    with open(output, "wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "devstack.run"], cwd=ROOT, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300  # the seed and the demo, on a busy machine
    while "Ctrl-C stops everything" not in output.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.send_signal(signal.SIGTERM)
            pytest.fail("make run did not come up:\n" + output.read_text(errors="replace")[-3000:])
        time.sleep(0.2)
    yield process, port, output
    if process.poll() is None:
        # The services run in sessions of their own: stop them through the orchestrator, and only
        # then (if it hangs) kill what is left, so no stray service outlives the test.
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        for pid in children:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_make_run_serves_the_readme_walkthrough(running_stack, smtp_sink, tmp_path):
    process, port, output = running_stack
    banner = output.read_text()
    assert "partners HCMC-DXCENTER, HUB, SIU" in banner
    assert "demo: 300 officials" in banner  # the demo programme beside the history
    assert "operator token  walkthrough-token" in banner
    # config.yml commits no secret: make run makes the dev ones in var/ (once, then reads them).
    assert "var/dev-feed-secret" in banner and "var/dev-unsubscribe-secret" in banner

    script = readme_walkthrough()
    script = script.replace("http://127.0.0.1:8000", "http://127.0.0.1:{}".format(port))
    script = script.replace("$(cat var/dev-operator-token)", "walkthrough-token")
    script = script.replace("var/mail/", str(smtp_sink.directory) + "/")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"status": "confirmed"' in done.stdout
    assert "BEGIN:VCALENDAR" in done.stdout  # the session's calendar_url, on make run's PUBLIC_URL
    assert ".eml" in done.stdout
    assert '"status": "sent"' in done.stdout and '"to": "a***@example.gov.vn"' in done.stdout

    logs = "\n".join(p.read_text(errors="replace") for p in (ROOT / "var" / "log").glob("*.log"))
    assert '"service": "registration"' in logs  # the services wrote JSON lines
    for secret in ("anh.nguyen@example.gov.vn", "0903 123 456", "+84903123456", "daotao@demo.edu.vn"):
        assert secret not in logs


def children_of(process):
    """{pid: the service's module} of make run's children."""
    found = {}
    for pid in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split():
        try:
            command = Path("/proc/{}/cmdline".format(pid)).read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        found[int(pid)] = command[-2].decode() if len(command) > 1 else ""
    return found


def health(port):
    try:
        return requests.get("http://127.0.0.1:{}/health".format(port), timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_a_service_killed_under_make_run_is_restarted_and_the_log_says_so(running_stack):
    process, port, output = running_stack
    [victim] = [pid for pid, module in children_of(process).items() if module.startswith("services.notifications")]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:
        text = output.read_text(errors="replace")
        restarted = [pid for pid, module in children_of(process).items()
                     if module.startswith("services.notifications") and pid != victim]
        if restarted and "supervisor: service notifications restarted (pid {})".format(restarted[0]) in text \
                and health(port):
            break
        assert process.poll() is None, text[-3000:]
        assert time.monotonic() < deadline, text[-3000:]
        time.sleep(0.2)
    # Which, why and when: the first crash in a row waits 1 s.
    assert re.search(r"» supervisor: service notifications killed by SIGKILL after \d+ s up; restarting it in 1 s "
                     r"\(at \d\d:\d\d:\d\d, restart 1 in a row\)", text), text[-3000:]


def test_ctrl_c_stops_everything(running_stack):
    process, port, output = running_stack
    children = list(children_of(process))
    assert len(children) == 5  # four services and the gateway (the servers here are the test's own)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    assert "» stopped" in output.read_text()
    for pid in children:
        assert not Path("/proc/{}".format(pid)).exists() or "zombie" in Path(
            "/proc/{}/status".format(pid)).read_text().lower()
