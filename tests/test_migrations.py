"""Migrations run once per database, under a lease, whichever replica starts first; the others wait for
them and a replica that starts later does nothing; `python -m backbone.migrate --status` says what has
run. And the migration that was waiting: a database deployed before notifications renamed its
collection `deliveries` to `notices` is served, failed notices and all, by the new code."""
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import eventlet
import pytest
from pymongo import ASCENDING, IndexModel

from backbone import migrate
from backbone.clock import utcnow
from backbone.database import mongo_client
from backbone.events import read_envelope
from backbone.lease import Lease
from services.notifications import store as notices_store
from services.notifications.service import NotificationsService
from services.notifications.templates import with_every_field
from tests.helpers import Client

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def database(mongo):
    client = mongo_client(mongo)
    db = client["migrate{}".format(uuid.uuid4().hex[:10])]
    yield db
    client.drop_database(db.name)
    client.close()


class Counted:
    """A migration that counts how often it ran, slow enough for the replicas to overlap."""

    def __init__(self, id_, seconds=0.3):
        self.runs = 0
        self.seconds = seconds
        self.migration = migrate.Migration(id_, "counted " + id_, self.apply)

    def apply(self, db):
        self.runs += 1
        eventlet.sleep(self.seconds)
        db.marks.insert_one({"by": self.migration.id, "run": self.runs})


INDEXES = {"marks": [IndexModel([("by", ASCENDING)])]}


def test_five_replicas_starting_at_once_apply_each_migration_once_and_all_wait_for_it(database):
    first, second = Counted("first"), Counted("second")
    planned = migrate.plan([first.migration, second.migration], INDEXES)
    finished = []

    def replica(n):
        ran = migrate.migrate(database, planned, lease_seconds=2, holder="replica-{}".format(n))
        # Whoever returns finds every migration applied, by itself or by another.
        finished.append((n, ran, sorted(migrate.applied(database))))

    pool = eventlet.GreenPool()
    for n in range(5):
        pool.spawn(replica, n)
    pool.waitall()

    assert first.runs == 1 and second.runs == 1
    ids = sorted(m.id for m in planned)
    assert all(done == ids for _, _, done in finished)
    ran = [ran for _, ran, _ in finished if ran]
    assert ran == [[m.id for m in planned]]  # one replica applied all of them, in order
    assert database.marks.count_documents({}) == 2
    assert "by_1" in database.marks.index_information()
    records = migrate.applied(database)
    assert records["first"]["applied_at"] <= records["second"]["applied_at"]
    # The lease is free for the next release.
    assert Lease(database.leases, migrate.LEASE, "next", 2).acquire()


def test_a_replica_starting_later_reads_the_record_and_does_nothing(database):
    counted = Counted("only", seconds=0)
    planned = migrate.plan([counted.migration], INDEXES)
    assert migrate.migrate(database, planned, lease_seconds=2) == ["only", planned[-1].id]
    for _ in range(3):
        assert migrate.migrate(database, planned, lease_seconds=2) == []
    assert counted.runs == 1


def test_a_new_index_is_a_new_migration_applied_once(database):
    before = migrate.plan([], INDEXES)
    migrate.migrate(database, before, lease_seconds=2)
    after = migrate.plan([], {"marks": INDEXES["marks"] + [IndexModel([("run", ASCENDING)], unique=True)]})
    assert before[-1].id != after[-1].id
    assert migrate.migrate(database, after, lease_seconds=2) == [after[-1].id]
    assert "run_1" in database.marks.index_information()
    assert migrate.migrate(database, after, lease_seconds=2) == []


def test_the_migrations_of_a_replica_that_died_holding_the_lease_are_taken_over(database):
    counted = Counted("taken-over", seconds=0)
    planned = migrate.plan([counted.migration], {})
    # A replica took the lease and died before applying anything: its lease runs out after 1 s.
    Lease(database.leases, migrate.LEASE, "dead-replica", 1).acquire()
    ran = migrate.migrate(database, planned, lease_seconds=1, holder="survivor")
    assert ran == [m.id for m in planned] and counted.runs == 1
    assert migrate.applied(database)["taken-over"]["by"] == "survivor"


def test_a_replica_waits_no_longer_than_told_for_a_live_holder(database):
    planned = migrate.plan([Counted("blocked", seconds=0).migration], {})
    Lease(database.leases, migrate.LEASE, "busy-replica", 30).acquire()
    with pytest.raises(TimeoutError, match="busy-replica"):
        migrate.migrate(database, planned, lease_seconds=30, timeout=0.5)


# -- the real one: deliveries became notices --------------------------------------------------------------

def old_notice(official_id, status, n):
    """A notice as the version before the rename stored it in `deliveries` (the same document): a
    confirmation, its context as the service builds it from the event."""
    from tests.test_notifications import an_official, confirmed
    official = dict(an_official(phone=False), id=official_id)
    envelope, payload = read_envelope(confirmed(official))
    context = dict(with_every_field({"type": envelope["type"], "payload": payload}), language="vi",
                   unsubscribe={"email": "http://127.0.0.1/u", "sms": "http://127.0.0.1/u"})
    now = utcnow() - timedelta(days=1, minutes=n)
    doc = notices_store.new_notice(
        now, now, envelope["event_id"], "email", official["email"], "registration_confirmed", "vi", context,
        "corr-old", official_id=official_id)
    doc.update(status=status, attempts=1, claimed_until=notices_store.NEVER)
    if status == "failed":
        doc["last_error"] = "SMTP 550 Mailbox unavailable"
    return doc


def test_a_database_from_before_the_rename_is_served_from_notices_after_the_first_start(
        container_factory, app_config, db, smtp_sink):
    official_id = "official-" + uuid.uuid4().hex[:10]
    old = [old_notice(official_id, "sent", 1), old_notice(official_id, "failed", 2)]
    database = db("notifications")
    database.deliveries.insert_many(old)
    # A replica of the new version that started first had already written one notice of its own.
    newer = old_notice(official_id, "sent", 3)
    database.notices.insert_one(newer)

    from gateway.service import GatewayService
    # Two replicas of notifications start at once: one migrates, the other waits for it.
    containers = [container_factory(NotificationsService), container_factory(NotificationsService),
                  container_factory(GatewayService)]
    pool = eventlet.GreenPool()
    for container in containers:
        pool.spawn(container.start)
    pool.waitall()

    assert "deliveries" not in database.list_collection_names()
    assert {d["_id"] for d in database.notices.find()} == {d["_id"] for d in old + [newer]}
    [record] = [r for r in database.migrations.find() if r["_id"] == "notices-were-deliveries"]
    assert record["times"] == 1

    operator = Client(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"])
    listed = operator.get("/notifications?official_id={}".format(official_id)).json()["items"]
    assert sorted(item["id"] for item in listed) == sorted(d["_id"] for d in old + [newer])
    [failed] = [item for item in listed if item["status"] == "failed"]
    assert failed["last_error"] == "SMTP 550 Mailbox unavailable"
    # The operator resends the notice the old version failed: it goes out now.
    resent = operator.post("/notifications/{}/resend".format(failed["id"]))
    assert resent.status_code == 200 and resent.json()["status"] == "sent", resent.text


def test_the_move_is_idempotent_and_applied_again_on_demand(database):
    database.deliveries.insert_many([{"_id": "a", "v": 1}, {"_id": "b", "v": 1}])
    database.notices.insert_one({"_id": "a", "v": 2})
    planned = migrate.plan(notices_store.MIGRATIONS, {})
    migrate.migrate(database, planned, lease_seconds=2)
    assert sorted((d["_id"], d["v"]) for d in database.notices.find()) == [("a", 2), ("b", 1)]
    # An older replica still running during the rollout wrote one more: applied again, it moves too.
    database.deliveries.insert_one({"_id": "c", "v": 1})
    migrate.again(database, planned, "notices-were-deliveries", lease_seconds=2)
    assert sorted(d["_id"] for d in database.notices.find()) == ["a", "b", "c"]
    assert "deliveries" not in database.list_collection_names()
    assert migrate.applied(database)["notices-were-deliveries"]["times"] == 2


# -- the command -----------------------------------------------------------------------------------------------

def test_migrate_status_says_what_waits_then_what_ran(mongo):
    prefix = "cli{}".format(uuid.uuid4().hex[:8])
    env = dict(os.environ, MONGO_URI=mongo, DATABASE_PREFIX=prefix)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "backbone.migrate", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    client = mongo_client(mongo)
    try:
        client["{}_notifications".format(prefix)].deliveries.insert_one({"_id": "old"})
        before = run("--status")
        assert before.returncode == 1, before.stderr
        assert "{}_notifications".format(prefix) in before.stdout
        assert "  waiting  notices-were-deliveries  the collection deliveries is now notices" in before.stdout
        for name in ("partners", "scheduling", "registration", "notifications", "gateway"):
            assert "{}_{}".format(prefix, name) in before.stdout
        assert "deliveries" in client["{}_notifications".format(prefix)].list_collection_names()  # changed nothing

        applied = run()
        assert applied.returncode == 0, applied.stderr
        after = run("--status")
        assert after.returncode == 0 and "waiting" not in after.stdout
        assert "  applied  notices-were-deliveries  " in after.stdout
        assert after.stdout.count("  applied  indexes-") == 5
        assert client["{}_notifications".format(prefix)].notices.find_one({"_id": "old"})
    finally:
        for name in client.list_database_names():
            if name.startswith(prefix):
                client.drop_database(name)
        client.close()
