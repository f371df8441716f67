"""Group commit: the writes (and look-ups by _id) that concurrent workers make at one moment go to
MongoDB together, one round trip per collection. Why: the database's cost is per request rather than
per document, and with a request per write it, not SMTP, set the pace of a fan-out.

A flusher (a green thread) takes whatever workers queued while its previous round ran, so batches
grow with the load and a lone notice waits for nothing; a few run (NOTIFICATIONS.flushers), so this
process and the database work at the same time. Each worker still gets its own outcome: a duplicate
key is news for the worker whose write it was only.
"""
from eventlet.event import Event
from eventlet.queue import LightQueue
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from backbone.database import take_queued
from backbone.outbox import outbox_record


class Batches:
    """The service's database through a few flushers: `write`, `existing` and `commit` queue their
    work and wait; a flusher (`run`, a managed thread each) takes everything queued since its last
    round and does it in one round: the look-ups (one find per collection), the writes (one bulk
    write per collection), then the commits (one transaction). A worker's own steps are in one
    round, in order; different workers' rounds touch different notices, so rounds in flight at
    once don't conflict."""

    def __init__(self, database, linger=0.0, fill=16):
        self.db = database.db
        self.client = database.client
        self._queue = LightQueue()
        # A round costs a few round trips whatever its size (a commit: three, and the server's
        # transaction bookkeeping): a round that found less than `fill` waits `linger` seconds
        # for the senders right behind it.
        self.linger = linger
        self.fill = fill

    def write(self, *steps):
        """Write each step in turn, not atomically: a step is (collection, pymongo operation), e.g.
        ("notices", InsertOne(notice)), or (collection, operation, operation on a duplicate key) to
        update what an insert found there. Returns one entry per step: None when written, the
        DuplicateKeyError when an insert or upsert met an existing _id. Raises any other error; the
        steps after the one that failed are not written."""
        return self._submit("write", steps)

    def existing(self, collection, ids):
        """Which of these _ids the collection has (a set)."""
        return self._submit("read", (collection, ids))

    def commit(self, operations, envelopes=()):
        """Write the (collection, operation) pairs and put the events (envelopes) in the outbox: all
        in one transaction, with other workers' commits. The relay publishes them at its next poll:
        not woken for each commit, it publishes a fan-out's events in fewer, larger batches."""
        self._submit("commit", (operations, envelopes))

    def _submit(self, kind, item):
        done = Event()
        self._queue.put((kind, item, done))
        return done.wait()

    def run(self):
        while True:
            batch = take_queued(self._queue, self.linger, self.fill)
            for kind, flush in (("read", self._read), ("write", self._write), ("commit", self._commit)):
                entries = [(item, done) for k, item, done in batch if k == kind]
                if not entries:
                    continue
                try:
                    results = flush([item for item, _ in entries])
                except Exception as exc:  # the database is away: every worker of the round hears it
                    results = [exc] * len(entries)
                for (_, done), result in zip(entries, results):
                    if isinstance(result, Exception):
                        done.send_exception(result)
                    else:
                        done.send(result)

    # -- the round trips ----------------------------------------------------------------------------

    def _write(self, items):
        """Each item's steps in order, all items' n-th steps together (one bulk write per
        collection): a step runs once the ones before it in its item were written."""
        results = [[None] * len(steps) for steps in items]
        failed = [None] * len(items)
        # (item, position, collection, operation, what to do on a duplicate key)
        current = [(item, 0) + tuple(steps[0]) + (None,) * (3 - len(steps[0]))
                   for item, steps in enumerate(items) if steps]
        while current:
            outcomes = self._bulk([(collection, operation) for _, _, collection, operation, _ in current])
            following = []
            for (item, position, collection, _, on_duplicate), outcome in zip(current, outcomes):
                if isinstance(outcome, DuplicateKeyError) and on_duplicate is not None:
                    following.append((item, position, collection, on_duplicate, None))
                    continue
                if outcome is not None and not isinstance(outcome, DuplicateKeyError):
                    failed[item] = outcome  # the rest of this item is not written
                    continue
                results[item][position] = outcome
                steps = items[item]
                if position + 1 < len(steps):
                    step = steps[position + 1]
                    following.append((item, position + 1) + tuple(step) + (None,) * (3 - len(step)))
            current = following
        return [failure or result for failure, result in zip(failed, results)]

    def _bulk(self, writes):
        """(collection, operation) pairs, one bulk write per collection: None, or the exception, per pair."""
        outcomes = [None] * len(writes)
        by_collection = {}
        for index, (collection, operation) in enumerate(writes):
            by_collection.setdefault(collection, []).append((index, operation))
        for collection, entries in by_collection.items():
            try:
                self.db[collection].bulk_write([operation for _, operation in entries], ordered=False)
            except BulkWriteError as error:
                for failure in error.details["writeErrors"]:
                    kind = DuplicateKeyError if failure["code"] == 11000 else OperationFailure
                    outcomes[entries[failure["index"]][0]] = kind(failure["errmsg"], failure["code"], failure)
                concern = error.details.get("writeConcernErrors")
                if concern:
                    for index, _ in entries:
                        outcomes[index] = outcomes[index] or OperationFailure(str(concern))
            except Exception as exc:  # the database is away: every write of the collection failed
                for index, _ in entries:
                    outcomes[index] = exc
        return outcomes

    def _read(self, items):
        by_collection = {}
        for collection, ids in items:
            by_collection.setdefault(collection, set()).update(ids)
        found = {collection: {doc["_id"] for doc in self.db[collection].find({"_id": {"$in": list(ids)}}, {"_id": 1})}
                 for collection, ids in by_collection.items()}
        return [found[collection].intersection(ids) for collection, ids in items]

    def _commit(self, items):
        envelopes = [envelope for _, events in items for envelope in events]
        by_collection = {}
        for operations, _ in items:
            for collection, operation in operations:
                by_collection.setdefault(collection, []).append(operation)

        def work(session):
            for collection, operations in by_collection.items():
                self.db[collection].bulk_write(operations, session=session)
            if envelopes:
                self.db.outbox.insert_many([outbox_record(e) for e in envelopes], session=session)

        with self.client.start_session() as session:
            session.with_transaction(work)
        return [None] * len(items)

