"""The MongoDB dependency of a service, and the transaction that writes events with the change.

A service declares `db = Database(indexes=store.INDEXES, migrations=store.MIGRATIONS)`. Each container
opens one client to its service's own database (`<prefix>_<service>`), brings it up to date at start
(the data migrations, then the service's and the platform's indexes: once per database, under a lease,
by whichever replica starts first; `backbone/migrate.py`) and runs the outbox relay (`backbone/outbox.py`). A worker gets a `WorkerDatabase`:
collections by name for reads, and `transaction(work)` for every change that publishes events:

    def onboard(tx):
        tx.partners.insert_one(doc)
        tx.emit("partner_onboarded", {...})
    self.db.transaction(onboard)

`tx` is a `Transaction`: the same collections, bound to one MongoDB transaction, and `emit`. The
events go into the `outbox` collection in that transaction, so either both happen or neither.
"""
import functools
import uuid
import eventlet
from eventlet.queue import Empty
from nameko import config
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, IndexModel, MongoClient
from pymongo.errors import DuplicateKeyError

from backbone.clock import utcnow
from backbone.config import database_name, events_setting, privacy_setting
from backbone.errors import not_found
from backbone.events import make_envelope
from backbone.grouped import GroupCommit
from backbone.logs import bind, current
from backbone.migrate import migrate, plan
from backbone.outbox import OutboxRelay, outbox_record
from backbone.personal import handled_events_index

PLATFORM_INDEXES = {
    # Only what waits to be published; the relay deletes what the broker confirmed, so one index
    # serves its order.
    "outbox": [IndexModel([("created_at", ASCENDING)])],
    # The producer's record of what it said; the audit trail looks events up by correlation id.
    "published_events": [IndexModel([("correlation_id", ASCENDING)])],
    # One document per handled event id: the unique _id is what makes consumers idempotent; a TTL
    # index (its period a setting: `Database.plan`) ends them.
    "handled_events": [],
    "dead_letters": [IndexModel([("status", ASCENDING), ("parked_at", ASCENDING)])],
    "leases": [],
}


class AlreadyHandled(Exception):
    """The event being handled was handled before; its effects were rolled back."""


def new_id(kind):
    """Readable ids: the kind, then 16 random hex digits (`session-3f2a...`)."""
    return "{}-{}".format(kind, uuid.uuid4().hex[:16])


def mongo_client(uri=None):
    return MongoClient(uri or config["MONGO_URI"], tz_aware=True, uuidRepresentation="standard")


def take_queued(queue, linger=0.0, fill=0):
    """For group commits: the next item to arrive on an eventlet queue (waiting for it), and every
    item queued behind it by then. Fewer than `fill` of them wait `linger` seconds, once, for the
    items right behind."""
    items = [queue.get()]
    while True:
        try:
            items.append(queue.get_nowait())
        except Empty:
            if not linger or len(items) >= fill:
                return items
            eventlet.sleep(linger)
            linger = 0


def one_or_404(collection, key, what):
    """The document whose _id is `key`, or 404 `not_found` naming `what` (`session`, `venue`...)."""
    found = collection.find_one({"_id": key}) if isinstance(key, str) else None
    if found is None:
        raise not_found(what, key)
    return found


def handled_record(event):
    """The record that makes a consumer idempotent; its type and correlation id serve the audit trail."""
    return {"_id": event["event_id"], "event_type": event.get("type"),
            "correlation_id": event.get("correlation_id"), "handled_at": utcnow()}


class _InTransaction:
    """A collection whose every operation joins the transaction's session."""

    def __init__(self, collection, session):
        self._collection = collection
        self._session = session

    def __getattr__(self, operation):
        return functools.partial(getattr(self._collection, operation), session=self._session)


class Transaction:
    """The `tx` that `transaction(work)` hands to `work`: collections bound to one MongoDB
    transaction, and `emit` to publish an event with the change."""

    def __init__(self, db, session, producer, correlation_id):
        self._db = db
        self.session = session
        self.producer = producer
        self.correlation_id = correlation_id
        self.events = []

    def __getattr__(self, name):
        return _InTransaction(self._db[name], self.session)

    def emit(self, type_, payload, version=1):
        envelope = make_envelope(type_, payload, self.producer, self.correlation_id, version)
        self.events.append(envelope)
        return envelope


class WorkerDatabase:
    """A worker's view of its service's database: `db.<collection>` and `db.transaction(work)`."""

    def __init__(self, provider, worker_ctx):
        self._provider = provider
        self._worker_ctx = worker_ctx
        self.db = provider.db

    def __getattr__(self, name):
        return self.db[name]

    def _handled_event(self):
        # Only the event-handler entrypoint marks events handled; an RPC call made from inside a
        # handler must not, which is why this is not in the (propagated) context data.
        if getattr(self._worker_ctx.entrypoint, "marks_handled", False):
            return self._worker_ctx.args[0]
        return None

    def transaction(self, work):
        """Run `work(tx)` in one MongoDB transaction together with its events and, inside an event
        handler, the record that this event was handled. Returns what `work` returns. Raises
        AlreadyHandled (everything rolled back) when the event was handled before. In a handler
        that groups (`@subscribe(..., grouped=True)`) the transaction may be shared with the
        handlers waiting beside it (`backbone/grouped.py`); the outcome is the same."""
        part = _Part(work, self._worker_ctx.context_data.get("correlation_id") or "none",
                     self._handled_event(), self._worker_ctx)
        if getattr(self._worker_ctx.entrypoint, "grouped", False):
            return self._provider.groups.transaction(part)
        return self._provider.write([part])[0]


class _Part:
    """One caller's share of a transaction: its work, the correlation id of what it emits, the event
    it marks handled (or None) and its worker."""

    __slots__ = ("work", "correlation_id", "handled", "worker_ctx")

    def __init__(self, work, correlation_id, handled, worker_ctx):
        self.work = work
        self.correlation_id = correlation_id
        self.handled = handled
        self.worker_ctx = worker_ctx


class Database(DependencyProvider):
    """The service's database: one client per container, indexes at start, the outbox relay."""

    def __init__(self, indexes=None, relay=True, migrations=()):
        self.indexes = indexes or {}
        self.migrations = tuple(migrations)
        self.run_relay = relay

    def plan(self):
        """This database's migrations in order: the data migrations, then every index declared."""
        indexes = dict(PLATFORM_INDEXES)
        # Its period is a setting (PRIVACY.handled_events_hours): a changed one is a new index migration.
        indexes["handled_events"] = [handled_events_index(float(privacy_setting("handled_events_hours")) * 3600)]
        for collection, models in self.indexes.items():
            indexes[collection] = list(indexes.get(collection, [])) + list(models)
        return plan(self.migrations, indexes)

    def setup(self):
        self.client = mongo_client()
        self.db = self.client[database_name(self.container.service_name)]
        # Before any entrypoint starts: the code that follows may rely on every migration.
        migrate(self.db, self.plan(), float(events_setting("lease_seconds", 10)))
        self.relay = OutboxRelay(self.db, self.container.service_name)
        self.groups = GroupCommit(self.write, self.container.max_workers, self.container.service_name)

    def start(self):
        if self.run_relay:
            self.container.spawn_managed_thread(self.relay.run, identifier="outbox-relay")

    def stop(self):
        if hasattr(self, "relay"):
            self.relay.stop()

    kill = stop

    def write(self, parts):
        """Each part's work in turn, their handled-event records and their events, in one
        transaction; returns what each work returned. One part whose event was handled before:
        AlreadyHandled (several: the BulkWriteError; `backbone/grouped.py` then writes each alone)."""
        results, written = [], []

        def attempt(session):
            results.clear()
            written.clear()
            leaders_id = current("correlation_id")
            try:
                for part in parts:
                    bind(correlation_id=part.correlation_id)  # a grouped part's log lines say its own
                    tx = Transaction(self.db, session, self.container.service_name, part.correlation_id)
                    results.append(part.work(tx))
                    written.extend(tx.events)
            finally:
                bind(correlation_id=leaders_id)
            records = [handled_record(part.handled) for part in parts if part.handled]
            if len(records) == 1:
                try:
                    self.db.handled_events.insert_one(records[0], session=session)
                except DuplicateKeyError:
                    raise AlreadyHandled(records[0]["_id"])
            elif records:
                self.db.handled_events.insert_many(records, session=session)
            if written:
                self.db.outbox.insert_many([outbox_record(e) for e in written], session=session)

        with self.client.start_session() as session:
            session.with_transaction(attempt)
        for part in parts:
            if part.handled:
                # Tell the subscriber not to record it again after the handler returns.
                part.worker_ctx.handled_recorded = True
        if written:
            self.relay.wake()
        return results

    def get_dependency(self, worker_ctx):
        return WorkerDatabase(self, worker_ctx)


def database_of(container):
    """The Database dependency of a container (for extensions that work on the service's data)."""
    return next((d for d in container.dependencies if isinstance(d, Database)), None)

