"""A lease in MongoDB: whoever holds it does the work that must run once across replicas (the outbox
relay, agreement expiry, reminders). It is renewed while held and taken over when it runs out, so a
replica that dies hands the work on within `seconds`."""
import os
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone

from pymongo.errors import DuplicateKeyError


def holder_id():
    """`<host>-<pid>-<random>`: names the process that holds a lease, so an operator (or a test) can
    tell which replica runs the relay or a timer."""
    return "{}-{}-{}".format(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])


class Lease:
    def __init__(self, collection, name, holder, seconds):
        self.collection = collection
        self.name = name
        self.holder = holder
        self.seconds = seconds
        self._renewed = None  # monotonic time of our last successful take or renewal

    def acquire(self):
        """Take or renew the lease; True while we hold it. A lease renewed less than a third of its
        time ago is not written again: every relay polls it, several times a second, and on the
        embedded database those writes cost as much as a service's own work."""
        if self._renewed is not None and time.monotonic() - self._renewed < self.seconds / 3:
            return True
        now = datetime.now(timezone.utc)
        # The lease runs from the moment we asked, not from the answer: a database slow to answer must
        # not make us trust it past the expiry it wrote (two holders, under load).
        asked = time.monotonic()
        try:
            self.collection.update_one(
                {"_id": self.name, "$or": [{"holder": self.holder}, {"expires_at": {"$lt": now}}]},
                {"$set": {"holder": self.holder, "expires_at": now + timedelta(seconds=self.seconds)}},
                upsert=True,
            )
        except DuplicateKeyError:
            # The upsert found someone else's live lease and tried to insert a second one.
            self._renewed = None
            return False
        if time.monotonic() - asked >= self.seconds:
            self._renewed = None  # it ran out while we waited for the answer: another may hold it now
            return False
        self._renewed = asked
        return True

    def release(self):
        self._renewed = None
        self.collection.update_one(
            {"_id": self.name, "holder": self.holder},
            {"$set": {"expires_at": datetime.fromtimestamp(0, timezone.utc)}},
        )
