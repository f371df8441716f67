"""Migrations: what a service's database needs before its code runs, applied once per database.

A service's migrations are its store's `MIGRATIONS` (data migrations, in order: `Migration(id,
description, apply)`) followed by its indexes (the platform's and `store.INDEXES`), which count as one
migration named by a fingerprint of every index declared (`indexes-<12 hex>`): a version that adds an
index has a new fingerprint, so its indexes are created once, by one replica.

The first replica to start takes the lease `migrations` in the database (backbone/lease.py), applies
what the `migrations` collection does not record yet, in order, records each, and releases the lease;
the others wait until everything is recorded (or take the lease over if its holder dies), and a
replica that starts later reads one collection and does nothing else. A lease is not a lock (a
paused holder may wake after it ran out), so every migration must be safe to run twice.

    python -m backbone.migrate --status        what has run in each service's database, and what waits
    python -m backbone.migrate                 apply what waits now (say, as a Job before a rollout)
    python -m backbone.migrate --again ID      apply one migration again (idempotent by rule)
"""
import argparse
import hashlib
import json
import logging
import threading
import time
from collections import namedtuple

from bson import json_util
from pymongo.errors import BulkWriteError, OperationFailure

from backbone.clock import utcnow
from backbone.lease import Lease, holder_id

log = logging.getLogger(__name__)

LEASE = "migrations"
COLLECTION = "migrations"
# A replica that waits for another's migrations looks this often.
POLL_SECONDS = 0.2

Migration = namedtuple("Migration", "id description apply")


def indexes_migration(indexes):
    """The indexes {collection: [IndexModel]} as one migration, named by what they are."""
    declared = sorted((collection, json_util.dumps(model.document, sort_keys=True))
                      for collection, models in indexes.items() for model in models)
    fingerprint = hashlib.sha256(json.dumps(declared).encode("utf-8")).hexdigest()[:12]

    def apply(db):
        for collection, models in indexes.items():
            if models:
                try:
                    db[collection].create_indexes(models)
                except OperationFailure as error:
                    if error.code not in (85, 86):
                        raise
                    _retime(db, collection, models)

    described = ", ".join("{}({})".format(c, len(m)) for c, m in sorted(indexes.items()) if m)
    return Migration("indexes-" + fingerprint, "indexes: " + described, apply)


def _retime(db, collection, models):
    """Create `models` one by one; a TTL index that exists with another period (a retention setting
    changed) gets the new period in place (collMod) instead of failing the release."""
    for model in models:
        try:
            db[collection].create_indexes([model])
        except OperationFailure as error:
            seconds = model.document.get("expireAfterSeconds")
            if error.code not in (85, 86) or seconds is None:
                raise
            db.command("collMod", collection, index={"keyPattern": dict(model.document["key"]),
                                                     "expireAfterSeconds": seconds})


def plan(migrations, indexes):
    """Every migration of a database, in the order they apply: data first, then the indexes."""
    planned = list(migrations) + [indexes_migration(indexes)]
    ids = [m.id for m in planned]
    if len(set(ids)) != len(ids):
        raise ValueError("two migrations share an id: {}".format(ids))
    return planned


def applied(db):
    """{id: record} of what this database records as applied."""
    return {record["_id"]: record for record in db[COLLECTION].find()}


def pending(db, planned):
    done = applied(db)
    return [m for m in planned if m.id not in done]


class _Renewal:
    """Keeps the lease while a long migration runs (a green thread under nameko, a thread otherwise)."""

    def __init__(self, lease):
        self.lease = lease
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stopped.wait(self.lease.seconds / 3):
            try:
                self.lease.acquire()
            except Exception:  # the migration itself will fail on the same database error
                log.exception("migrations: renewing the lease failed")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()


def _apply(db, migration, holder, again=False):
    started = time.monotonic()
    migration.apply(db)
    took = round(time.monotonic() - started, 3)
    record = {"description": migration.description, "applied_at": utcnow(), "by": holder, "seconds": took}
    if again:
        db[COLLECTION].update_one({"_id": migration.id}, {"$set": record, "$inc": {"times": 1}}, upsert=True)
    else:
        db[COLLECTION].update_one({"_id": migration.id}, {"$setOnInsert": dict(record, times=1)}, upsert=True)
    log.info("migration %s applied in %ss: %s", migration.id, took, migration.description,
             extra={"event": "migration_applied", "migration": migration.id})
    return migration.id


def migrate(db, planned, lease_seconds=10.0, timeout=None, holder=None):
    """Apply what `planned` has that `db` does not record, once across every replica: returns the ids
    this call applied (none when another replica did, or nothing waited). Waits at most `timeout`
    seconds (None: as long as it takes) for another replica's migrations."""
    if not pending(db, planned):
        return []
    holder = holder or holder_id()
    lease = Lease(db.leases, LEASE, holder, lease_seconds)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        waiting = pending(db, planned)
        if not waiting:
            return []
        if lease.acquire():
            try:
                with _Renewal(lease):
                    # What waits, read again under the lease: another holder may have just finished.
                    return [_apply(db, migration, holder) for migration in pending(db, planned)]
            finally:
                lease.release()
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("migrations of {} still wait for {}: {}".format(
                db.name, (db.leases.find_one({"_id": LEASE}) or {}).get("holder"), [m.id for m in waiting]))
        time.sleep(POLL_SECONDS)


def again(db, planned, migration_id, lease_seconds=10.0):
    """Apply one migration again, under the lease (for a data migration that older replicas, still
    running during a rollout, gave more work after it ran)."""
    [migration] = [m for m in planned if m.id == migration_id] or [None]
    if migration is None:
        raise KeyError("no migration {} in {}".format(migration_id, [m.id for m in planned]))
    holder = holder_id()
    lease = Lease(db.leases, LEASE, holder, lease_seconds)
    while not lease.acquire():
        time.sleep(POLL_SECONDS)
    try:
        with _Renewal(lease):
            return _apply(db, migration, holder, again=True)
    finally:
        lease.release()


# -- helpers for data migrations ------------------------------------------------------------------------

def copy_missing(source, target, batch=500):
    """Insert every document of `source` into `target` that `target` does not hold (by _id), in
    batches; what `target` holds already wins. Returns how many were copied."""
    copied = 0
    documents = []

    def flush():
        nonlocal copied
        if not documents:
            return
        try:
            copied += len(target.insert_many(documents, ordered=False).inserted_ids)
        except BulkWriteError as error:
            if any(e.get("code") != 11000 for e in error.details.get("writeErrors", ())):
                raise
            copied += error.details.get("nInserted", 0)
        documents.clear()

    for document in source.find().sort("_id", 1):
        documents.append(document)
        if len(documents) >= batch:
            flush()
    flush()
    return copied


def moved_collection(old, new):
    """A migration body: the collection `old` was renamed `new` in the code. Copies what `new` lacks
    (a replica of the new version may have written there already) and drops `old`. Not
    renameCollection: that refuses an existing target, or drops it."""
    def apply(db):
        if old in db.list_collection_names():
            copied = copy_missing(db[old], db[new])
            db[old].drop()
            log.info("migration: %s documents of %s moved to %s", copied, old, new)
    return apply


# -- the command -----------------------------------------------------------------------------------------

# The gateway is not in SERVICES (it is the HTTP entry), but it has a database too.
ENTRY = {"gateway": "gateway.service:GatewayService"}


def targets():
    """{name: Database dependency} of every configured service and the gateway (imported by name)."""
    import importlib
    from backbone.config import service_classes
    from backbone.database import Database
    classes = dict(service_classes())
    for name, target in ENTRY.items():
        module, _, attribute = target.partition(":")
        classes[name] = getattr(importlib.import_module(module), attribute)
    found = {}
    for name, cls in classes.items():
        for value in vars(cls).values():
            if isinstance(value, Database):
                found[name] = value
    return found


def main(argv=None):
    from nameko import config
    from backbone.config import database_name, install
    from backbone.database import mongo_client
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--status", action="store_true", help="say what has run and what waits; change nothing")
    parser.add_argument("--again", metavar="ID", help="apply this migration again in every database that has it")
    parser.add_argument("--service", action="append", help="only this service's database (repeatable)")
    args = parser.parse_args(argv)
    install()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    client = mongo_client()
    waiting_anywhere = False
    try:
        for name, database in sorted(targets().items()):
            if args.service and name not in args.service:
                continue
            db = client[database_name(name)]
            planned = database.plan()
            if args.again:
                if any(m.id == args.again for m in planned):
                    again(db, planned, args.again, float(config["EVENTS"]["lease_seconds"]))
                    print("{}: {} applied again".format(db.name, args.again))
                continue
            if not args.status:
                migrate(db, planned, float(config["EVENTS"]["lease_seconds"]))
            done = applied(db)
            print(db.name)
            for migration in planned:
                record = done.get(migration.id)
                if record:
                    print("  applied  {}  {}  by {} in {}s{}  {}".format(
                        migration.id, record["applied_at"].strftime("%Y-%m-%d %H:%M:%SZ"), record["by"],
                        record["seconds"], " ({} times)".format(record["times"]) if record.get("times", 1) > 1 else "",
                        migration.description))
                else:
                    waiting_anywhere = True
                    print("  waiting  {}  {}".format(migration.id, migration.description))
            for unknown in sorted(set(done) - {m.id for m in planned}):
                print("  applied  {}  (by another version: {})".format(unknown, done[unknown]["description"]))
    finally:
        client.close()
    return 1 if args.status and waiting_anywhere else 0


if __name__ == "__main__":
    raise SystemExit(main())
