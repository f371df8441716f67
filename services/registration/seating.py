"""Seats, by group commit: hand-written because a burst of registrations (a popular class opening)
would otherwise queue one transaction each on the session's seat counter. The registrations that
arrive while one transaction is being written wait, in arrival order, and go into the next
transaction together.

One registration alone costs a handful of database round trips and a commit, so the registrations
of a burst are written in batches: one transaction reads the sessions and the officials of the batch
(two reads), decides each registration in arrival order (confirmed while seats and the unit's quota
remain, else the next waitlist place), writes the touched sessions' counters (one bulk write, one
update per session), and inserts the registrations and their events (an event per registration, in
the same transaction): six round trips with the commit for up to BATCH registrations, where each
one alone took five.

The database stays the arbiter: each session's counters are written with a conditional update that
only matches the counters that were read, inside the transaction, so a change by anyone else in
between (another replica, a cancellation) makes the batch start again instead of over-booking.
Within this process the batch also holds the FIFO lock of each session it touches, the lock that
cancellations, capacity changes and quota changes take: they don't write-conflict with it.

Arrival order is waitlist order: a registration joins the queue when it arrives and batches are
taken from its front, so the waitlist grows in the order the queue did. With several replicas
"arrival order" holds per replica.
"""
import contextlib
import secrets
import time
from collections import defaultdict
from datetime import datetime, timezone

import eventlet
from eventlet.event import Event
from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from backbone.clock import utcnow
from backbone.errors import DomainError, conflict, not_found
from backbone.grouped import GroupQueue
from services.registration import rules
from services.registration.schemas import official_ref, session_ref

# At most this many registrations in one transaction (bigger bursts take several).
BATCH = 100
# How long a batch keeps starting again when sessions keep changing under it (other replicas).
RETRY_SECONDS = 10.0
# A batch costs about the same whatever its size. While registrations come in a burst (the last
# batch had several), the leader waits up to this long for every worker's registration (the answers
# of the last batch bring the next requests) rather than writing two half batches in turn.
GATHER_SECONDS = 0.02

# One FIFO lock per session in this process (eventlet semaphores wake waiters in order).
_session_locks = defaultdict(Semaphore)


def session_lock(session_id):
    return _session_locks[session_id]


class SessionChanged(Exception):
    """A session's counters changed between the batch's read and its write: start the batch again."""


class Registration:
    """One caller's registration waiting for its turn: what it asks, then what it got."""

    __slots__ = ("session_id", "official_id", "after_cutoff", "correlation_id", "answer", "failure", "woken")

    def __init__(self, session_id, official_id, after_cutoff, correlation_id):
        self.session_id = session_id
        self.official_id = official_id
        self.after_cutoff = after_cutoff
        self.correlation_id = correlation_id
        self.answer = None
        self.failure = None
        # Sent once: "done" (answer or failure is set) or "lead" (write the next batches).
        self.woken = Event()

    @property
    def done(self):
        return self.answer is not None or self.failure is not None

    def finish(self, answer=None, failure=None):
        self.answer, self.failure = answer, failure


class Seating(DependencyProvider):
    """The queue of registrations waiting for the seat counters, one per container
    (`backbone.grouped.GroupQueue`: the first caller to find nobody writing leads, writing batches
    from the front of the queue until its own registration is written)."""

    def setup(self):
        # Every registration in this container is a worker: no more can wait than there are workers.
        self.queue = GroupQueue(min(BATCH, self.container.max_workers), GATHER_SECONDS)

    def get_dependency(self, worker_ctx):
        return Desk(self, worker_ctx)


class Desk:
    """A worker's way into the queue."""

    def __init__(self, seating, worker_ctx):
        self._seating = seating
        self._correlation_id = worker_ctx.context_data.get("correlation_id") or "none"

    def register(self, db, session_id, official_id, after_cutoff=False):
        """The registration document as written (status confirmed or waitlisted, with its waitlist
        position), or the DomainError that refused it: 404 unknown session, 422 `unknown_official`
        / `registration_closed` / `not_eligible`, 409 `already_registered`."""
        mine = Registration(session_id, official_id, after_cutoff, self._correlation_id)
        self._seating.queue.join(mine, lambda batch: write_batch(db, batch), _interrupted)
        if mine.failure is not None:
            raise mine.failure
        return mine.answer


def _interrupted(registration):
    """The leader died mid-batch (container killed)."""
    registration.finish(failure=DomainError(
        "service_unavailable", "Registration was interrupted; try again.", {}, 503))


def write_batch(db, batch):
    """Decide and write `batch` (in its order) in one transaction; every registration ends with its
    answer or its failure. Starts again while the sessions change under it, up to RETRY_SECONDS."""
    session_ids = sorted({r.session_id for r in batch})
    deadline = time.monotonic() + RETRY_SECONDS
    with contextlib.ExitStack() as held:
        for session_id in session_ids:  # in one order: never two holders waiting for each other
            held.enter_context(session_lock(session_id))
        # Registering twice is rare: the first attempt lets the unique _id find out (the transaction
        # then aborts), the next ones look for earlier registrations first.
        look_for_earlier = False
        while True:
            try:
                outcomes = db.transaction(lambda tx: _seat(tx, batch, session_ids, look_for_earlier))
                break
            except Exception as exc:
                # Someone else wrote a session in between, or one of these was registered before.
                if _written_meanwhile(exc) and time.monotonic() < deadline:
                    look_for_earlier = look_for_earlier or not isinstance(exc, SessionChanged)
                    if isinstance(exc, SessionChanged):
                        eventlet.sleep(0.005)
                    continue
                for registration in batch:
                    registration.finish(failure=exc)
                return
    for registration, (answer, failure) in zip(batch, outcomes):
        registration.finish(answer, failure)


def _written_meanwhile(exc):
    if isinstance(exc, BulkWriteError):
        return all(error.get("code") == 11000 for error in exc.details.get("writeErrors", []))
    return isinstance(exc, (SessionChanged, DuplicateKeyError))


class _Counters:
    """A session's seat and waitlist counters while a batch is decided, and the one conditional
    update that writes them: it only matches the values that were read."""

    def __init__(self, session):
        self.session = session
        self.read = {k: session.get(k) for k in ("capacity", "seats_taken", "waitlist_length", "waitlist_next")}
        self.seats_taken = session.get("seats_taken") or 0
        self.waitlist_next = session.get("waitlist_next") or 0
        self.quotas = session.get("quotas") or {}
        self.unit_seats = dict(session.get("unit_seats") or {})
        self.seated = 0
        self.waitlisted = 0
        self.units = set()  # the units whose counters and quotas decided a place
        self.seated_by_unit = defaultdict(int)

    def place(self, unit_code):
        """(True, None) for a seat, else (False, waitlist position)."""
        key = rules.unit_key(unit_code)
        taken = self.unit_seats.get(key, 0)
        self.units.add(key)
        if rules.seat_free(self.session["capacity"], self.seats_taken, taken, self.quotas.get(key)):
            self.seats_taken += 1
            self.unit_seats[key] = taken + 1
            self.seated += 1
            self.seated_by_unit[key] += 1
            return True, None
        self.waitlist_next += 1
        self.waitlisted += 1
        return False, self.waitlist_next

    def update(self):
        """The session's one write (an UpdateOne that matches only the counters as read), or None."""
        if not self.seated and not self.waitlisted:
            return None
        match = {"_id": self.session["_id"], "status": "scheduled", **self.read}
        change = {}
        for key in self.units:
            match["unit_seats." + key] = (self.session.get("unit_seats") or {}).get(key)
            match["quotas." + key] = self.quotas.get(key)
        for key, seated in self.seated_by_unit.items():
            change["unit_seats." + key] = seated
        if self.seated:
            change["seats_taken"] = self.seated
        if self.waitlisted:
            change.update(waitlist_length=self.waitlisted, waitlist_next=self.waitlisted)
        return UpdateOne(match, {"$inc": change})


def _seat(tx, batch, session_ids, look_for_earlier):
    """The transaction's work: returns (registration document or None, DomainError or None) per
    registration of `batch`, in its order."""
    sessions = {s["_id"]: s for s in tx.sessions.find({"_id": {"$in": session_ids}})}
    officials = {o["_id"]: o for o in tx.officials.find({"_id": {"$in": list({r.official_id for r in batch})}})}
    wanted = [rules.registration_id(r.session_id, r.official_id) for r in batch]
    taken = set()
    if look_for_earlier:
        taken = {d["_id"] for d in tx.registrations.find({"_id": {"$in": list(set(wanted))}}, {"_id": 1})}
    counters = {session_id: _Counters(session) for session_id, session in sessions.items()}
    created_at, now = utcnow(), datetime.now(timezone.utc)
    outcomes, written = [], []
    for registration, registration_id in zip(batch, wanted):
        try:
            session = sessions.get(registration.session_id)
            if session is None:
                raise not_found("session", registration.session_id)
            official = officials.get(registration.official_id)
            rules.require_registrable(session, official, registration.after_cutoff, now)
            if registration_id in taken:
                raise conflict("already_registered", "This official is already registered for this session.",
                               {"official_id": ["Already registered."]})
        except DomainError as refusal:
            outcomes.append((None, refusal))
            continue
        taken.add(registration_id)
        seated, position = counters[session["_id"]].place(official["unit_code"])
        doc = {"_id": registration_id, "id": registration_id, "session_id": session["_id"],
               "official_id": official["_id"], "unit_code": official["unit_code"],
               # `unit_code` follows reorganisations (seats are counted by it); this stays.
               "unit_code_then": official["unit_code"],
               "audience_group": official["audience_group"], "official": official_ref(official),
               "qr_token": rules.qr_token(registration_id, secrets.token_urlsafe(12)),
               "created_at": created_at, "status": "confirmed" if seated else "waitlisted"}
        if not seated:
            doc["waitlist_position"] = position
        outcomes.append((doc, None))
        written.append((registration, doc))
    updates = [u for u in (counter.update() for counter in counters.values()) if u is not None]
    if updates and tx.sessions.bulk_write(updates, ordered=False).matched_count != len(updates):
        raise SessionChanged()
    if written:
        # Nothing else: coverage's and the reports' read models are folded from these events after
        # the fact (store.fold_read_models).
        tx.registrations.insert_many([doc for _, doc in written])
    for registration, doc in written:
        event = {"registration_id": doc["_id"], "session": session_ref(sessions[doc["session_id"]]),
                 "official": doc["official"]}
        # Each event carries the correlation id of the request that caused it, not the leader's.
        tx.correlation_id = registration.correlation_id
        if doc["status"] == "confirmed":
            tx.emit("registration_confirmed", dict(event, qr_token=doc["qr_token"]))
        else:
            tx.emit("registration_waitlisted", dict(event, waitlist_position=doc["waitlist_position"]))
    return outcomes

