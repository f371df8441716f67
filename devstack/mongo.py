"""SecantusDB, the embedded MongoDB-wire-compatible server, as a child process.

SecantusDB is GPL-2.0: it only ever runs as a separate process, and nothing here imports it.
"""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

from devstack import ChildServer, free_port, log_tail, port_taken, stop_process

START_TIMEOUT = 30
STOP_TIMEOUT = 10


class EmbeddedMongo(ChildServer):
    """`storage_path=":memory:"` keeps the data in a temporary directory that goes away on stop.

    The port is picked once, so a stopped server started again keeps its URI (tests use that to
    play a database that goes away and comes back)."""

    def __init__(self, port=None, storage_path=":memory:", log_path=None, sync_on_commit=None, cache_size=None):
        self.port = port
        # WiredTiger's cache ("1G" by default): the scale bench's city outgrows it.
        self.cache_size = cache_size
        # On disk, every commit reaches the disk before it is acknowledged: measured here, without it a
        # SIGKILL lost writes acknowledged up to ~0.1 s before (a whole burst, at times). In memory
        # there is nothing to keep.
        self.sync_on_commit = storage_path != ":memory:" if sync_on_commit is None else sync_on_commit
        self.storage_path = str(storage_path)
        self.log_path = log_path
        self._process = None
        self._reaper = None
        self._temporary_log = log_path is None

    @property
    def uri(self):
        # retryWrites=false: SecantusDB keeps every retryable write's reply (up to 10,000) and
        # prunes that table by scanning, and past the cap sorting, all of it on every write, which
        # cost its CPU more per write as a run went on; a one-node server on loopback has no
        # failover for the driver's retry to ride out. Real MongoDB keeps the driver's default.
        return "mongodb://127.0.0.1:{}/?directConnection=true&retryWrites=false".format(self.port)

    def start(self):
        if self.port is None:
            self.port = free_port()
        elif port_taken(self.port):
            # Checked first because a ping would otherwise reach whatever already listens there.
            raise RuntimeError("port {} is already in use (another MongoDB server?)".format(self.port))
        if self.storage_path != ":memory:":
            Path(self.storage_path).mkdir(parents=True, exist_ok=True)
        if self._temporary_log:
            handle, self.log_path = tempfile.mkstemp(prefix="secantusd-", suffix=".log")
            os.close(handle)
        else:
            Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).parent / "secantusd-py"),
            "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", self.storage_path,
            # No oplog: nothing here reads one (no change streams), and writing it cost a sixth of
            # the server's CPU per notice at fan-out (1.57 -> 1.33 ms). Transactions work without it
            # on this server, and the driver connects directly either way.
            "--standalone",
        ]
        if self.sync_on_commit:
            command.append("--sync-on-commit")
        if self.cache_size:
            command += ["--cache-size", self.cache_size]
        with open(self.log_path, "ab") as log:
            # Own session: a Ctrl-C in the terminal must not kill the database under the services
            # that are still shutting down; whoever started it stops it.
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_for_ping()
        self._reaper = TransactionReaper(self.uri)
        return self

    def _wait_for_ping(self):
        deadline = time.monotonic() + START_TIMEOUT
        client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
        try:
            while True:
                if self._process.poll() is not None:
                    problem = "exited with status {}".format(self._process.returncode)
                    break
                try:
                    client.admin.command("ping")
                    return
                except PyMongoError:
                    if time.monotonic() > deadline:
                        problem = "did not answer ping within {} s".format(START_TIMEOUT)
                        break
        finally:
            client.close()
        message = "SecantusDB on {} {}; last lines of {}:\n{}".format(
            self.uri, problem, "its log" if self._temporary_log else self.log_path,
            log_tail(self.log_path))
        self.stop()
        raise RuntimeError(message)

    def stop(self):
        if self._process is None:
            return
        if self._reaper is not None:
            self._reaper.stop()
            self._reaper = None
        self.thaw()  # a frozen server cannot act on SIGTERM
        stop_process(self._process, STOP_TIMEOUT)
        self._process = None
        if self._temporary_log:
            os.unlink(self.log_path)

    # -- faults, for the crash tests, `make soak` and make run's supervisor ---------------------------

    def kill(self):
        """SIGKILL, as the kernel's OOM killer does: no shutdown, the data as the last commit left it.
        `restart()` starts it again on the same port and data directory."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()

    def restart(self):
        """Start again after a crash or a kill, on the same port (and data, unless :memory:)."""
        if self._reaper is not None:
            self._reaper.stop()
            self._reaper = None
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("SecantusDB on {} is still running".format(self.uri))
        self._process = None
        if self._temporary_log:
            Path(self.log_path).unlink(missing_ok=True)  # start() makes a new one
        return self.start()

    def freeze(self):
        """SIGSTOP: connections stay open and nothing answers, as a server stalled on its disk."""
        if self.alive():
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self):
        if self.alive():
            self._process.send_signal(signal.SIGCONT)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


class TransactionReaper:
    """Stands in for mongod's background reaper of abandoned transactions. A process killed inside a
    transaction leaves it open with its write locks; mongod aborts it after transactionLifetimeLimitSeconds
    on its own, SecantusDB only when some transaction statement arrives, and a plain write that
    conflicts with it meanwhile retries inside the server: for ever, if nothing else uses a transaction.
    A tiny transaction every second gives SecantusDB that occasion."""

    def __init__(self, uri):
        self.client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=2000)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="secantusdb-transaction-reaper", daemon=True)
        self.thread.start()

    def run(self):
        ticks = self.client["devstack_reaper"].ticks
        while not self.stopped.wait(1):
            try:
                with self.client.start_session() as session:
                    session.with_transaction(lambda s: ticks.find_one({}, session=s))
            except PyMongoError:  # busy or away: the next second will do
                pass

    def stop(self):
        self.stopped.set()
        self.thread.join(5)
        self.client.close()
