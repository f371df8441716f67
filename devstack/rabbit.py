"""RabbitMQ for `make run`, `make test` and `make bench`: Debian's `rabbitmq-server` on loopback.

`ensure_rabbitmq` starts it when it is installed but not running; the tests give each run a vhost of
its own with `make_vhost`/`delete_vhost`. `python -m devstack.rabbit` (`make rabbitmq`) ensures it runs.
"""
import os
import shutil
import subprocess
import time
from urllib.parse import urlsplit

from devstack import listening

DEFAULT_URI = "amqp://guest:guest@127.0.0.1:5672/"
INSTALL = "sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached"
START_TIMEOUT = 60
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _tool(name):
    # Debian puts the server tools in /usr/sbin, which is not on a normal user's PATH.
    path = shutil.which(name) or "/usr/sbin/" + name
    return path if os.path.exists(path) else None


def _address(amqp_uri):
    parts = urlsplit(amqp_uri)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def ensure_rabbitmq(amqp_uri=DEFAULT_URI):
    """Return once something listens at the URI's address, starting the local server if need be.

    Only a loopback address is ever started here; a remote broker is only checked."""
    host, port = _address(amqp_uri)
    if listening(host, port):
        return
    if host not in LOOPBACK:
        raise SystemExit("RabbitMQ at {}:{} (AMQP_URI) is not reachable.".format(host, port))
    server = _tool("rabbitmq-server")
    if server is None:
        raise SystemExit("RabbitMQ is not installed. Install and start it with:\n  " + INSTALL)
    print("starting RabbitMQ: rabbitmq-server -detached", flush=True)
    started = subprocess.run([server, "-detached"], capture_output=True, text=True)
    if started.returncode != 0:
        raise SystemExit("rabbitmq-server -detached failed ({}); try: sudo rabbitmq-server -detached"
                         .format((started.stderr or started.stdout).strip()))
    deadline = time.monotonic() + START_TIMEOUT
    while not listening(host, port):
        if time.monotonic() > deadline:
            raise SystemExit("RabbitMQ did not open {}:{} within {} s; see /var/log/rabbitmq/"
                             .format(host, port, START_TIMEOUT))
        time.sleep(1)


def _rabbitmqctl(*args):
    command = _tool("rabbitmqctl")
    if command is None:
        raise SystemExit("rabbitmqctl not found. Install RabbitMQ with:\n  " + INSTALL)
    result = subprocess.run([command, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError("rabbitmqctl {} failed: {}".format(
            " ".join(args), (result.stderr or result.stdout).strip()))
    return result.stdout


def make_vhost(name):
    """Create the vhost (an existing one is fine) and give guest every right in it."""
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")


def delete_vhost(name):
    """Delete the vhost with everything in it; one already gone is fine."""
    if name in _rabbitmqctl("list_vhosts", "--silent").splitlines():
        _rabbitmqctl("delete_vhost", name)


def main():
    uri = os.environ.get("AMQP_URI") or DEFAULT_URI
    ensure_rabbitmq(uri)
    print("RabbitMQ is up at {}:{}".format(*_address(uri)))


if __name__ == "__main__":
    main()
