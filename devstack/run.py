"""`make run`: all of trainops on this machine.

Uses the real servers named by MONGO_URI, AMQP_URI, SMTP_HOST/SMTP_PORT and SMS_GATEWAY_URL, and starts
an embedded one for each that is not set (RabbitMQ: the local server, started if it is stopped);
takes the secrets from the environment or makes dev ones in var/ (DEV_SECRETS); declares the
RabbitMQ topology; runs the services and the gateway under `nameko run`; waits for
/health; loads the seed data; then runs until Ctrl-C or SIGTERM and stops everything in order: the
services first, then the servers they were using. Meanwhile it restarts a service or embedded server
that crashes, with backoff (`Supervisor`), as compose and Kubernetes restart theirs.
"""
import ipaddress
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from devstack import REPO_ROOT, VAR, log_tail
from devstack.mongo import EmbeddedMongo
from devstack.rabbit import DEFAULT_URI as DEFAULT_AMQP_URI, ensure_rabbitmq
from devstack.sms_gateway import SmsGateway
from devstack.smtp_sink import SmtpSink

GATEWAY = "gateway.service:GatewayService"
LOGS = VAR / "log"
HEALTH_TIMEOUT = 90
STOP_TIMEOUT = 20
# A crashed service or embedded server is started again after 1 s, then 2, 4, 8 ... up to 30 s while it
# keeps crashing; one that stayed up this long before it crashed starts over at 1 s.
RESTART_FIRST = 1
RESTART_CAP = 30
RESTART_STEADY = 60
# Straight to loopback even when the developer's shell sets http_proxy.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Failure(Exception):
    """The stack cannot run; the message says why."""


def say(line):
    print("» " + line, flush=True)


def redact(uri):
    password = urlsplit(uri).password
    return uri.replace(":{}@".format(password), ":***@", 1) if password else uri


class _ConfigLoader(yaml.SafeLoader):
    """config.yml's `!raw_env_var ${VAR:default}` settings as written (SERVICES has none)."""


_ConfigLoader.add_constructor("!raw_env_var", lambda loader, node: loader.construct_scalar(node))


def processes():
    """{name: `module:Class`}: config.yml's SERVICES, then the gateway in front of them. Read as YAML
    without nameko's loader: that would pull eventlet and nameko into this process."""
    with open(REPO_ROOT / "config.yml", encoding="utf-8") as handle:
        services = yaml.load(handle, Loader=_ConfigLoader)["SERVICES"]
    return dict(services, gateway=GATEWAY)


def module_exists(target):
    """Whether the module of `module` or `module:Class` is in the repository. Looked up on disk, not
    imported: importing it would pull eventlet and nameko into this process."""
    path = REPO_ROOT.joinpath(*target.partition(":")[0].split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


class Stack:
    """What this run started, and the environment the services get."""

    def __init__(self):
        # `nameko run` applies LOGGING (whose formatter lives in backbone) before it puts "." on
        # sys.path, so the repo must be importable without that, installed or not.
        python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=python_path)
        self.servers = []
        self.processes = {}

    def start_server(self, server, what):
        self.servers.append(server)  # before it starts, so a Ctrl-C while it starts still stops it
        try:
            return server.start()
        except (OSError, RuntimeError) as error:
            raise Failure("{} could not start: {}".format(what, error))

    def run_once(self, module, what):
        if not module_exists(module):
            say("warning: {} not found, {} skipped".format(module, what))
            return
        say("{}: python -m {}".format(what, module))
        finished = subprocess.run([sys.executable, "-m", module], cwd=REPO_ROOT, env=self.env,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        if finished.returncode != 0:
            raise Failure("{} failed with exit status {} (its output is above)".format(
                what, finished.returncode))

    def start_services(self):
        for name, target in processes().items():
            self.start_service(name, target, "wb")
        say("started {} (logs in var/log/)".format(", ".join(self.processes)))

    def start_service(self, name, target, mode="ab"):
        """One `nameko run` process; a restarted one appends to its log, so the crash stays readable."""
        nameko = Path(sys.executable).parent / "nameko"
        with open(LOGS / "{}.log".format(name), mode) as log:
            # Own session: a Ctrl-C in the terminal reaches only this orchestrator, which then
            # stops the services before the servers they use.
            self.processes[name] = subprocess.Popen(
                [str(nameko), "run", "--config", "config.yml", target], cwd=REPO_ROOT, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self.processes[name].pid

    def supervisor(self):
        """A Supervisor of every service and of the embedded servers that run as processes of their
        own (the SMS gateway runs inside this one)."""
        supervisor = Supervisor()
        for name, target in processes().items():
            supervisor.watch("service " + name, lambda name=name: self.processes[name].poll(),
                             lambda name=name, target=target: self.start_service(name, target))
        for server in self.servers:
            if hasattr(server, "restart"):
                label = "SecantusDB" if isinstance(server, EmbeddedMongo) else "SMTP sink"
                supervisor.watch("embedded " + label, server.exit_status,
                                 lambda server=server: server.restart().pid)
        return supervisor

    def check_services(self):
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise Failure("{} exited with status {}; last lines of var/log/{}.log:\n{}".format(
                    name, process.returncode, name, log_tail(LOGS / "{}.log".format(name))))

    def stop(self):
        running = {name: process for name, process in self.processes.items() if process.poll() is None}
        for process in running.values():
            process.terminate()  # nameko finishes the workers in flight, then exits
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, process in running.items():
            try:
                process.wait(max(0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say("{} did not stop within {} s, killed".format(name, STOP_TIMEOUT))
                process.kill()
                process.wait()
        for server in reversed(self.servers):
            server.stop()
        say("stopped")


def how_it_ended(status):
    """`exit status 1`, or `killed by SIGKILL` for a Popen's negative return code."""
    if status < 0:
        try:
            return "killed by " + signal.Signals(-status).name
        except ValueError:
            return "killed by signal {}".format(-status)
    return "exit status {}".format(status)


class Supervisor:
    """Restarts what crashed, with exponential backoff, saying which, why and when it will retry.

    `watch(label, exit_status, restart)`: `exit_status()` is None while the thing runs, else how it
    ended (Popen's return code); `restart()` starts it again and returns its pid, or raises OSError or
    RuntimeError (then it is tried again after the next, longer, delay). `tick()` does what is due."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.watched = []

    def watch(self, label, exit_status, restart):
        self.watched.append({"label": label, "exit_status": exit_status, "restart": restart,
                             "started": self.clock(), "failures": 0, "due": None})

    def _schedule(self, watched, now):
        watched["failures"] += 1
        delay = min(RESTART_CAP, RESTART_FIRST * 2 ** (watched["failures"] - 1))
        watched["due"] = now + delay
        return delay, time.strftime("%H:%M:%S", time.localtime(time.time() + delay))

    def tick(self):
        now = self.clock()
        for watched in self.watched:
            if watched["due"] is None:
                status = watched["exit_status"]()
                if status is None:
                    continue
                ran = now - watched["started"]
                if ran >= RESTART_STEADY:
                    watched["failures"] = 0
                delay, when = self._schedule(watched, now)
                say("supervisor: {} {} after {:.0f} s up; restarting it in {} s (at {}, restart {} in a row)".format(
                    watched["label"], how_it_ended(status), ran, delay, when, watched["failures"]))
            elif now >= watched["due"]:
                try:
                    pid = watched["restart"]()
                except (OSError, RuntimeError) as error:
                    delay, when = self._schedule(watched, now)
                    say("supervisor: {} could not start again ({}); next try in {} s (at {})".format(
                        watched["label"], str(error).splitlines()[0], delay, when))
                    continue
                watched["started"], watched["due"] = self.clock(), None
                say("supervisor: {} restarted (pid {})".format(watched["label"], pid))


def start_servers(stack):
    env = stack.env
    env["AMQP_URI"] = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    ensure_rabbitmq(env["AMQP_URI"])
    say("RabbitMQ: {}".format(redact(env["AMQP_URI"])))

    if os.environ.get("MONGO_URI"):
        say("MongoDB: {}".format(redact(env["MONGO_URI"])))
    else:
        mongo = stack.start_server(EmbeddedMongo(
            port=27017, storage_path=VAR / "db", log_path=LOGS / "secantusd.log"), "SecantusDB")
        env["MONGO_URI"] = mongo.uri
        say("SecantusDB: {} (data in var/db/)".format(mongo.uri))

    if os.environ.get("SMTP_HOST") or os.environ.get("SMTP_PORT"):
        env.setdefault("SMTP_HOST", "127.0.0.1")
        env.setdefault("SMTP_PORT", "2525")
        say("SMTP: {}:{}".format(env["SMTP_HOST"], env["SMTP_PORT"]))
    else:
        sink = stack.start_server(SmtpSink(port=2525, directory=VAR / "mail"), "SMTP sink")
        env["SMTP_HOST"], env["SMTP_PORT"] = sink.host, str(sink.port)
        say("SMTP sink: {}:{} (mail in var/mail/)".format(sink.host, sink.port))

    if os.environ.get("SMS_GATEWAY_URL"):
        say("SMS gateway: {}".format(env["SMS_GATEWAY_URL"]))
    else:
        gateway = stack.start_server(SmsGateway(port=9025, directory=VAR / "sms"), "SMS gateway")
        env["SMS_GATEWAY_URL"] = gateway.url
        say("SMS gateway: {} (messages in var/sms/sms.jsonl)".format(gateway.url))


# The secrets the services need, each from its variable when set, else made once into var/ (config.yml
# commits none): {variable: (what it is, its file in var/, random bytes)}.
DEV_SECRETS = {
    "OPERATOR_TOKEN": ("operator token", "dev-operator-token", 24),
    "UNSUBSCRIBE_SECRET": ("unsubscribe links' key", "dev-unsubscribe-secret", 32),
    "FEED_SECRET": ("calendar feeds' key", "dev-feed-secret", 32),
}


def dev_secret(variable):
    """The secret `variable` names: from the environment, else var/<file>, made there (0600) the
    first time, so links and calendar URLs stay valid from one `make run` to the next."""
    what, name, size = DEV_SECRETS[variable]
    if os.environ.get(variable):
        say("{}: from {}".format(what, variable))
        return os.environ[variable]
    path = VAR / name
    if path.exists():
        say("{}: var/{}".format(what, name))
        return path.read_text().strip()
    value = secrets.token_urlsafe(size)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(value + "\n")
    say("{}: created var/{}".format(what, name))
    return value


def down_services(body):
    """The services a /health body reports as not ok, or the body itself when it is no such report."""
    try:
        services = json.loads(body)["services"]
        return ", ".join(name for name, status in services.items() if status != "ok")
    except (ValueError, KeyError, TypeError, AttributeError):
        return body[:300]


def wait_until_healthy(stack, url):
    deadline = time.monotonic() + HEALTH_TIMEOUT
    answer = "no answer"
    while True:
        stack.check_services()
        try:
            with HTTP.open(url, timeout=2) as response:
                if response.status == 200:
                    return
                answer = response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            answer = error.read().decode("utf-8", "replace")
        except OSError as error:
            answer = str(error)
        if time.monotonic() > deadline:
            tails = "\n".join("--- var/log/{}.log\n{}".format(name, log_tail(LOGS / "{}.log".format(name)))
                              for name in stack.processes)
            raise Failure("{} not healthy after {} s; down: {}\n{}".format(
                url, HEALTH_TIMEOUT, down_services(answer), tails))
        time.sleep(1)


def banner(stack, gateway, token):
    env = stack.env
    embedded_mail = any(isinstance(server, SmtpSink) for server in stack.servers)
    embedded_sms = any(isinstance(server, SmsGateway) for server in stack.servers)
    print("""
trainops is running
  gateway         {gateway}/
  OpenAPI         {gateway}/openapi.json
  health          {gateway}/health
  mail            {mail}
  SMS             {sms}
  logs            var/log/
  operator token  {token}
  try             curl -H 'Authorization: Bearer {token}' {gateway}/partners
Ctrl-C stops everything.
""".format(
        gateway=gateway, token=token,
        mail="var/mail/" if embedded_mail else "{SMTP_HOST}:{SMTP_PORT}".format(**env),
        sms="var/sms/sms.jsonl" if embedded_sms else env["SMS_GATEWAY_URL"],
    ), flush=True)


def is_loopback(url):
    """Whether `url`'s host is this machine (the demo's made-up people must not reach real ones)."""
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start(stack):
    LOGS.mkdir(parents=True, exist_ok=True)
    start_servers(stack)
    for variable in DEV_SECRETS:
        stack.env[variable] = dev_secret(variable)
    token = stack.env["OPERATOR_TOKEN"]
    gateway = "http://127.0.0.1:{}".format(os.environ.get("GATEWAY_PORT") or 8000)
    # Links in emails and calendar URLs lead to this gateway unless PUBLIC_URL says otherwise.
    stack.env.setdefault("PUBLIC_URL", gateway)
    stack.run_once("backbone.topology", "RabbitMQ topology")
    stack.start_services()
    wait_until_healthy(stack, gateway + "/health")
    say("healthy: {}/health".format(gateway))
    stack.run_once("devstack.seed", "seed data")
    if os.environ.get("DEMO", "yes") != "no":
        leaving = [name for name, url in (("mail", "smtp://{}".format(stack.env.get("SMTP_HOST", "127.0.0.1"))),
                                              ("SMS", stack.env.get("SMS_GATEWAY_URL", "http://127.0.0.1")))
                      if not is_loopback(url)]
        if leaving:
            say("demo programme skipped: its {} would leave this machine (DEMO=no says so quietly)".format(
                " and ".join(leaving)))
        else:
            stack.run_once("devstack.demo", "demo programme (DEMO=no to leave it out)")
    banner(stack, gateway, token)


def main():
    # The SMS gateway runs in this process: its one line per message, like the SMTP sink's.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # Ctrl-C and SIGTERM both stop everything; SIGINT explicitly too, because a shell that starts us
    # in the background hands us SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack = Stack()
    status = 1
    try:
        start(stack)
        # From here on a crash is restarted, not fatal: a service that cannot start at all has
        # already failed the start above, with its log.
        supervisor = stack.supervisor()
        while True:
            supervisor.tick()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print(flush=True)
        say("stopping")
        status = 0
    except Failure as failure:
        say(str(failure))
    finally:
        # Every step of the shutdown is bounded; a second Ctrl-C must not cut it short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
