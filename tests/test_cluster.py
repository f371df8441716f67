"""On the engine production runs on: a real three-node RabbitMQ cluster (devstack/cluster.py) with
quorum queues and deploy's policies, the services connected with failover across the nodes. A node
is stopped (and later one killed) in the middle of a registration burst, with HTTP calls (RPC) and
events (registrations, notices) flowing: nothing is lost or doubled, nobody is over-booked, /health
comes back to ok and the node rejoins. `make chaos` runs it (`.ci/run` too); it prints what each loss
cost in seconds without an answer, the figures deploy/README.md quotes."""
import time
import uuid

import eventlet
import pytest

from tests.helpers import Client, Poison, Programme, at, publish_to, wait_for, withdrawn

pytestmark = pytest.mark.chaos

BURST = 40
SEATS = 30


@pytest.fixture(scope="module")
def cluster():
    from devstack.cluster import Cluster
    started = Cluster().start()
    print("\ncluster of three nodes started in {:.1f} s".format(started.started_in))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def on_cluster(cluster, mongo, smtp_sink, sms_gateway):
    """Every service and the gateway on the cluster, quorum queues as deploy declares them."""
    import nameko
    from kombu import Connection
    from nameko.runners import ServiceRunner
    from backbone import topology
    from backbone.config import service_classes
    from backbone.database import mongo_client
    from gateway.service import GatewayService
    from tests.conftest import service_config
    vhost = "trainops-chaos"
    cluster.make_vhost(vhost)
    data = service_config(mongo, cluster.amqp_uri(vhost), smtp_sink, sms_gateway)
    data["QUEUE_TYPE"] = "quorum"
    # Retries slow enough that events still wait in the delay queues when a node goes down.
    data["EVENTS"].update(retry_delays=[2, 4, 8, 16])
    with nameko.config.patch(data, clear=True):
        cluster.apply_policies(vhost, topology.definitions(vhost)["policies"])
        with Connection(data["AMQP_URI"]) as connection:
            topology.declare(connection)
        runner = ServiceRunner()
        for cls in list(service_classes().values()) + [GatewayService]:
            runner.add_service(cls)
        runner.start()
        client = mongo_client(mongo)
        db = lambda service: client["{}_{}".format(data["DATABASE_PREFIX"], service)]  # noqa: E731
        try:
            yield data, db
        finally:
            runner.kill()
            client.close()


def register_all(programme, session, officials, fault):
    """Every official registers at once (a retry after a 503 with the same Idempotency-Key, as a
    client should); `fault()` runs after the first few are sent. Returns ({official: answer}, the
    longest time in seconds no request was answered with success)."""
    answers, successes = {}, []

    def one(official):
        key = uuid.uuid4().hex
        while True:
            response = programme.operator.post("/sessions/{}/registrations".format(session["id"]),
                                               {"official_id": official["id"]}, headers={"Idempotency-Key": key})
            if response.status_code < 500:
                successes.append(time.monotonic())
                answers[official["id"]] = response
                return
            eventlet.sleep(0.5)

    pool = eventlet.GreenPool(10)
    began = time.monotonic()
    threads = [pool.spawn(one, official) for official in officials[:8]]
    wait_for(lambda: len(answers) >= 4, timeout=60)
    faulted = time.monotonic()
    fault()
    threads += [pool.spawn(one, official) for official in officials[8:]]
    with eventlet.Timeout(300):
        for thread in threads:
            thread.wait()
    moments = sorted([began, faulted] + successes)
    gap = max(b - a for a, b in zip(moments, moments[1:]) if b >= faulted)
    return answers, gap


def nothing_lost_nor_doubled(programme, session, officials, answers):
    # A 503 whose reply was lost with the node may hide a registration that was made: the retry then
    # answers 409 already_registered, and the registration is there (counted below, once).
    for answer in answers.values():
        assert answer.status_code == 201 or (answer.status_code == 409 and answer.json()["error"]["code"]
                                             == "already_registered"), answer.text
    registrations = programme.db("registration").registrations
    rows = list(registrations.find({"session_id": session["id"]}))
    assert sorted(r["official_id"] for r in rows) == sorted(official["id"] for official in officials)
    statuses = [r["status"] for r in rows]
    assert statuses.count("confirmed") == SEATS and statuses.count("waitlisted") == len(officials) - SEATS
    copy = programme.db("registration").sessions.find_one({"_id": session["id"]})
    assert copy["seats_taken"] == SEATS <= copy["capacity"]
    # Every official hears once: one email notice per registration, each sent.
    ids = {official["id"] for official in officials}
    notices = programme.db("notifications").notices
    wait_for(lambda: notices.count_documents({"official_id": {"$in": list(ids)}, "channel": "email",
                                              "status": "sent"}) == len(officials), timeout=120)
    per_official = {}
    for notice in notices.find({"official_id": {"$in": list(ids)}, "channel": "email"}):
        per_official[notice["official_id"]] = per_official.get(notice["official_id"], 0) + 1
    assert set(per_official.values()) == {1} and len(per_official) == len(officials)


def healthy_again(programme, cluster):
    anonymous = Client(programme.operator.base_url)
    answers = []

    def ok():
        answers.append(anonymous.get("/health"))
        return answers[-1].status_code == 200
    try:
        wait_for(ok, timeout=120, interval=1)
    except AssertionError:
        # Which check stayed unhealthy, in the failure itself.
        raise AssertionError("/health still {}: {}".format(answers[-1].status_code, answers[-1].text))
    assert len(cluster.running_nodes()) == 3


@pytest.fixture(scope="module")
def programme(on_cluster):
    data, db = on_cluster
    return Programme(Client(data["GATEWAY_URL"], data["OPERATOR_TOKEN"]), db)


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_node_lost_mid_burst_loses_doubles_and_over_books_nothing(programme, cluster, how):
    # Every connection starts on the first URI's node (a): stopping it moves them all to b; killing b
    # next then moves them again.
    day = {"stop": 30, "kill": 31}[how]
    session = programme.known_session(capacity=SEATS, trainer="Trainer {}".format(how),
                                      starts_at=at(day, "08:00"), ends_at=at(day, "12:00"))
    officials = [programme.official() for _ in range(BURST)]
    node = {"stop": "a", "kill": "b"}[how]
    fault = {"stop": lambda: cluster.stop_node(node), "kill": lambda: cluster.kill_node(node)}[how]
    lost = time.monotonic()
    try:
        answers, gap = register_all(programme, session, officials, fault)
        print("\nnode {} {}: the longest wait for a successful HTTP answer was {:.1f} s".format(node, how, gap))
        nothing_lost_nor_doubled(programme, session, officials, answers)
        print("node {} {}: every notice sent {:.1f} s after the loss".format(node, how, time.monotonic() - lost))
    finally:
        # Even after a failure: the module's next test needs three nodes, not the failure's echo.
        back = time.monotonic()
        if cluster[node].process.poll() is not None:
            cluster.start_node(node)
    healthy_again(programme, cluster)
    print("node {} back and /health ok in {:.1f} s".format(node, time.monotonic() - back))


def test_events_waiting_for_their_retry_survive_a_node_restart(programme, cluster, on_cluster, monkeypatch):
    """The hop from a delay queue back to the service's queue is at-least-once dead-lettering: events
    waiting in `trainops.scheduling.retry.*` while the node they were declared on restarts are all
    handled, once each, when the handler works again."""
    from services.scheduling.service import SchedulingService
    data, db = on_cluster
    poison = Poison(monkeypatch, SchedulingService, "offering_withdrawn")
    events = [withdrawn("corr-retry-{}".format(n)) for n in range(10)]
    for event in events:
        publish_to(data, "scheduling", event)
    wait_for(lambda: len(set(poison.calls)) == len(events), timeout=60)  # each failed once: in retry
    cluster.stop_node("a")
    poison.fix()
    handled = db("scheduling").handled_events
    ids = [event["event_id"] for event in events]
    wait_for(lambda: handled.count_documents({"_id": {"$in": ids}}) == len(ids), timeout=180, interval=0.5)
    assert db("scheduling").dead_letters.count_documents({"event_id": {"$in": ids}}) == 0
    back = time.monotonic()
    cluster.start_node("a")
    healthy_again(programme, cluster)
    print("\nnode a back after its retries were handled and /health ok in {:.1f} s".format(time.monotonic() - back))
