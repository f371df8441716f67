"""Group commit for the event handlers that ask for it (`@subscribe(..., grouped=True)`): the
transactions of events a consumer takes together are written as one.

Hand-written because a consumer's prefetch (as many events as it has workers) arrives at once, and
each event alone costs a transaction: the handler's writes, the handled-event record and the commit,
three round trips or more to a database that shares the cores. Measured on the shared 2-core machine,
`make bench` (3,000 events, the bench's consumer with BENCH_GROUPED=0 and 1, five runs each):
`events_end_to_end_backbone` 0.39-0.44 of bare nameko events in the same run grouped, 0.29-0.39
alone; SecantusDB's CPU per event 1.23-1.52 ms grouped, 1.94-2.85 ms alone (three runs each); the
consumer by itself (3,000 events waiting in its queue) 990-1,020 events/s grouped, 725-790 alone.

While a grouped handler's transaction is being written, the other grouped handlers of the container
that call `self.db.transaction(work)` wait, in arrival order, and go into the next transaction
together: each `work(tx)` in turn (each with its own `tx`, so the events it emits carry its own
event's correlation id), then one insert of all their handled-event records, one of all their
events into the outbox, and one commit. Each caller gets what its own `work` returned. The first
caller to find nobody writing writes at once: a lone event waits for nothing.

Never lost or doubled: when a group's transaction fails (a work raised, an event of it was handled
already, the database refused), nothing of it was written, and each of its members runs its
transaction alone, exactly as it would have without the group: the one whose work fails hears its
own error (retried, then dead-lettered), one handled before hears AlreadyHandled, the others are
written. A work may so run twice (as `with_transaction` may rerun it anyway): it must only write
through `tx`.

Opt-in, because the leader runs the others' work: a handler that holds a lock (registration's
session locks) while it waits in the group would deadlock with a leader whose work needs that lock;
and a work must not call `transaction` itself (it would wait for the group it is in).

`GroupQueue` is the queue and its leader, also registration's seating (`services/registration/seating.py`).
"""
import logging
import time
from collections import deque

import eventlet
from eventlet.event import Event

from backbone import counters

log = logging.getLogger(__name__)

# At most this many events in one transaction (a container's workers bound it anyway).
MOST = 100
# While events come together (the last group had several), the leader waits up to this long for
# the rest of the prefetch rather than write half of it.
GATHER_SECONDS = 0.003


class GroupQueue:
    """Callers waiting, in arrival order, to be written together (a group commit). The first caller
    to find nobody writing leads: it writes groups from the front of the queue until its own item
    is written, then hands the lead to the oldest caller still waiting. An item has `woken` (an
    Event, sent "done" or "lead") and `done`."""

    def __init__(self, most, gather_seconds):
        self.waiting = deque()
        self.leader = None
        self.most = most
        self.gather_seconds = gather_seconds
        self.last_group = 1

    def join(self, item, write, unfinished):
        """Return once `item` was written by `write(group)`, in a group written by this caller or
        the leader of its turn. `unfinished(item)` ends each item of a group that `write` left not
        done (the leader died mid-group: its container was killed)."""
        self.waiting.append(item)
        if self.leader is None:
            self.leader = item
        else:
            item.woken.wait()
        if not item.done:
            self._lead(item, write, unfinished)

    def _lead(self, mine, write, unfinished):
        try:
            while not mine.done:
                # A group costs about the same whatever its size: while callers come in a burst
                # (the last group had several), wait a little for all of them rather than write
                # two half groups in turn; a lone caller waits for nothing.
                expected = self.most if self.last_group > 1 else 1
                gather_until = time.monotonic() + self.gather_seconds
                while len(self.waiting) < expected and time.monotonic() < gather_until:
                    eventlet.sleep(0.001)
                group = [self.waiting.popleft() for _ in range(min(self.most, len(self.waiting)))]
                self.last_group = len(group)
                try:
                    write(group)
                finally:
                    for item in group:
                        if not item.done:
                            unfinished(item)
                        if item is not mine:
                            item.woken.send("done")
        finally:
            if self.waiting:
                self.leader = self.waiting[0]
                self.leader.woken.send("lead")
            else:
                self.leader = None


class _Member:
    """One handler's transaction waiting for its turn: its part, then how it went."""

    __slots__ = ("part", "result", "failure", "outcome", "woken")

    def __init__(self, part):
        self.part = part
        self.result = self.failure = None
        # "written" (result is set), "failed" (failure is set) or "alone" (write your own transaction)
        self.outcome = None
        # Sent once: "done" (outcome is set) or "lead" (write the next group).
        self.woken = Event()

    @property
    def done(self):
        return self.outcome is not None


class GroupCommit:
    """One container's grouped transactions (`WorkerDatabase.transaction` of a grouped handler).
    `write(parts)`: the parts in one transaction, their results."""

    def __init__(self, write, workers, service_name):
        self.write = write
        self.service_name = service_name
        # At most half the workers in a group: the other half's events are delivered, looked up and
        # gathered while it is written (with all of them in one group, nothing overlapped the
        # commit, and the consumer alone took 870-930 events/s instead of 990-1,020).
        self.queue = GroupQueue(max(1, min(MOST, workers // 2)), GATHER_SECONDS)

    def transaction(self, part):
        """What the part's work returned, written with the others waiting; or its own outcome alone."""
        mine = _Member(part)
        self.queue.join(mine, self._write, _alone)
        if mine.outcome == "alone":
            result, = self.write([part])
            self._count(1)
            return result
        if mine.outcome == "failed":
            raise mine.failure
        return mine.result

    def _write(self, group):
        """The group in one transaction, or (any error) nothing of it and each member left alone;
        one member alone hears its own error at once."""
        try:
            results = self.write([member.part for member in group])
        except Exception as exc:
            if len(group) == 1:
                group[0].failure, group[0].outcome = exc, "failed"
            else:
                log.info("a group of %d events was not written (%s: %s); each is written alone",
                         len(group), type(exc).__name__, exc)
            return
        for member, result in zip(group, results):
            member.result, member.outcome = result, "written"
        self._count(len(group))

    def _count(self, size):
        counters.EVENT_GROUPS.labels(self.service_name).observe(size)


def _alone(member):
    """Not written with its group: as if there were no group."""
    member.outcome = "alone"
