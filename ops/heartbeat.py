"""The heartbeat file that the pod's probe reads (`python -m ops.probe <service>`).

Every service container runs one (`ops.container.Container` attaches it; nothing to declare): every
`HEARTBEAT_SECONDS` (5) it writes `<HEARTBEAT_DIR>/trainops-<service>.health` (`/tmp`) with the result
of the last health check of this process, the same checks the `health` RPC runs (MongoDB through the
container's own client, the broker, the outbox).

Writing and checking are two threads. The writer only reports, so the file stays fresh as long as the
process's event loop runs, whatever its dependencies do: a MongoDB that does not answer keeps one check
waiting for its server selection (30 s) while the file goes on saying so, and the probe then finds the
pod unready but alive. A hung event loop stops writing, and the liveness probe restarts the pod.

Two containers of one service in one process (tests) write the same file: harmless. Production runs
one service per process.
"""
import logging
import os
import time
from datetime import datetime, timezone

from eventlet.event import Event
from eventlet.green import threading
from kombu import Connection
from nameko import config
from nameko.extensions import DependencyProvider

from backbone import topology
from backbone.database import database_of
from ops.probe import DEFAULT_DIR, heartbeat_path, write_heartbeat
from ops.rpcs import health_report

log = logging.getLogger(__name__)

DEFAULT_SECONDS = 5


class Heartbeat(DependencyProvider):
    """Writes this process's health to its heartbeat file: the checks of the service's `health` RPC
    (`ops.rpcs.health_report`), with the broker connection kept from one check to the next
    (and opened again after a failure) instead of a new one every few seconds."""

    def __init__(self, check=health_report):
        self.check = check
        self._stopped = False
        self._wakeup = threading.Event()
        self._checked = None  # sent when the check in flight is done
        self._connection = None
        self._last = {"status": "starting", "checks": {}, "checked": None}
        self._failing = False

    def setup(self):
        # Never a busy loop, whatever the configuration says.
        self.interval = max(float(config.get("HEARTBEAT_SECONDS") or DEFAULT_SECONDS), 0.1)
        self.path = heartbeat_path(self.container.service_name, config.get("HEARTBEAT_DIR", DEFAULT_DIR))
        # A file left by the previous process in this pod says nothing about this one.
        self._remove()

    def start(self):
        database = database_of(self.container)
        if database is None:
            log.warning("heartbeat: %s has no Database; no heartbeat file", self.container.service_name)
            return
        self.db = database.db
        self.event_types = topology.subscriptions_of(self.container.service_cls)
        self.container.spawn_managed_thread(self._beat, identifier="heartbeat")

    def stop(self):
        self._stopped = True
        self._wakeup.set()
        self._close_connection()
        # A container that stopped says so at once instead of going stale.
        self._remove()

    def kill(self):
        # Emergency stop: the file is left to go stale, as a hung process's would.
        self._stopped = True
        self._wakeup.set()
        self._close_connection(graceful=False)

    def _beat(self):
        while not self._stopped:
            # One check at a time: a check that waits for MongoDB is not joined by another every beat.
            if self._checked is None or self._checked.ready():
                self._checked = Event()
                self.container.spawn_managed_thread(self._check, identifier="heartbeat-check")
            self._write()
            self._wakeup.wait(self.interval)

    def _check(self):
        try:
            if self._connection is None:
                self._connection = Connection(config["AMQP_URI"], connect_timeout=1.0)
            report = self.check(self.container.service_name, self.db, self.event_types, self._connection)
            if report["checks"].get("broker") != "ok":
                self._close_connection()
            self._last = {"status": report["status"], "checks": report["checks"], "checked": time.monotonic()}
        except Exception as exc:  # the check itself failed: say so, and keep beating
            log.exception("heartbeat: health check failed")
            self._last = {"status": "down", "checks": {"heartbeat": "check failed: {}".format(type(exc).__name__)},
                          "checked": time.monotonic()}
        finally:
            if self._stopped:  # stop() ran while we checked: what we opened is ours to close
                self._close_connection()
            self._checked.send()
        # Written at once: a pod is ready as soon as its first check passes, not one interval later.
        if not self._stopped:
            self._write()

    def _write(self):
        record = dict(self._last, service=self.container.service_name, pid=os.getpid(), interval=self.interval,
                      beat=time.monotonic(), written_at=datetime.now(timezone.utc).isoformat())
        try:
            write_heartbeat(self.path, record)
        except OSError as exc:
            # Logged once per failure, not every beat; the liveness probe restarts a pod that cannot write.
            if not self._failing:
                log.error("heartbeat: cannot write %s (%s)", self.path, exc)
            self._failing = True
        else:
            if self._failing:
                log.info("heartbeat: writing %s again", self.path)
            self._failing = False

    def _close_connection(self, graceful=True):
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                if graceful:
                    connection.release()
                else:  # a kill does not wait for the closing handshake: drop the socket
                    connection.collect()
            except Exception:  # already broken; nothing to give back
                pass

    def _remove(self):
        try:
            os.remove(self.path)
        except OSError:  # not there: nothing to remove
            pass
