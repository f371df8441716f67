"""The embedded local stack for `make run` and the tests: SecantusDB, RabbitMQ, an SMTP sink and an
SMS gateway that record what they are sent, and the orchestrator that runs the services on them."""
import socket
import subprocess
from pathlib import Path

# The repo root is the folder holding config.yml; `var/` lives there wherever a command is run from.
REPO_ROOT = Path(__file__).resolve().parent.parent
VAR = REPO_ROOT / "var"


def free_port(host="127.0.0.1"):
    """A port nobody listens on right now, as the OS picks it."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_taken(port, host="127.0.0.1"):
    with socket.socket() as probe:
        # As servers do, so a port held only by connections in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
        return False


def listening(host, port, timeout=2):
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


def log_tail(path, lines=20):
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log at {})".format(path)
    return "\n".join(text.splitlines()[-lines:])


class ChildServer:
    """What the supervisor and the crash tests ask of an embedded server run as a child process
    (`self._process`, a Popen, or None when it is not running)."""

    @property
    def pid(self):
        return self._process.pid if self._process else None

    def alive(self):
        return self._process is not None and self._process.poll() is None

    def exit_status(self):
        """The exit status once it has died on its own (negative: the signal), else None."""
        return self._process.poll() if self._process is not None else None


def stop_process(process, timeout=10):
    """Ask a child to stop (SIGTERM); kill it if it has not within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
