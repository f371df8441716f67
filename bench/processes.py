"""The services and the gateway as their own `nameko run` processes, as deployed (one per pod): for
the figures that belong to one process (its memory), and for the soak, which kills them."""
import signal
import subprocess
import sys
from pathlib import Path

from devstack import REPO_ROOT
from devstack.run import processes


def rss_kib(pid):
    """Resident memory of a process in KiB, from /proc (None once it is gone)."""
    try:
        for line in Path("/proc/{}/status".format(pid)).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class Services:
    """The five `nameko run` processes, each killable and started again. `env`: their settings."""

    def __init__(self, env, logs):
        self.env, self.logs = env, Path(logs)
        self.targets = processes()
        self.running = {}

    def start(self, name):
        with open(self.logs / "{}.log".format(name), "ab") as log:
            self.running[name] = subprocess.Popen(
                [str(Path(sys.executable).parent / "nameko"), "run", "--config", "config.yml", self.targets[name]],
                cwd=REPO_ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def start_all(self):
        for name in self.targets:
            self.start(name)

    def kill(self, name):
        self.running[name].send_signal(signal.SIGKILL)
        self.running[name].wait()

    def rss(self):
        return {name: rss_kib(process.pid) for name, process in self.running.items()}

    def stop(self):
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()
        for process in self.running.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
