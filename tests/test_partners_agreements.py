"""Cooperation agreements: validity by local calendar day, amendments and termination with their
history and events, and the expiry sweep that announces each ended agreement exactly once, however
many replicas run it."""
from datetime import date, datetime, timezone

import eventlet
from nameko.testing.services import entrypoint_hook

from backbone.auth import OPERATOR
from backbone.clock import local_date
from backbone.outbox import emitted_events
from backbone.timer import LeasedTimer
from services.partners.rules import agreement_status
from services.partners.service import PartnersService
from tests.helpers import AGREEMENT_TITLE, SIU, iso_day, onboard, sign, wait_for


def events(db, type_):
    return emitted_events(db("partners"), {"type": type_})


# -- validity, by local calendar day ---------------------------------------------------------------

def test_an_agreement_is_valid_from_its_first_through_its_last_day_in_local_time():
    agreement = {"valid_from": "2025-03-13", "valid_until": "2026-12-31"}
    assert agreement_status(agreement, date(2025, 3, 12)) == "pending"  # the day before
    assert agreement_status(agreement, date(2025, 3, 13)) == "active"  # the first day
    assert agreement_status(agreement, date(2026, 12, 31)) == "active"  # the last day
    assert agreement_status(agreement, date(2027, 1, 1)) == "expired"  # the day after

    # Midnight in Ho Chi Minh City (UTC+7) is 17:00 UTC the day before.
    at = lambda *utc: local_date(datetime(*utc, tzinfo=timezone.utc))  # noqa: E731
    assert agreement_status(agreement, at(2025, 3, 12, 16, 59, 59)) == "pending"
    assert agreement_status(agreement, at(2025, 3, 12, 17, 0, 0)) == "active"
    assert agreement_status(agreement, at(2026, 12, 31, 16, 59, 59)) == "active"
    assert agreement_status(agreement, at(2026, 12, 31, 17, 0, 0)) == "expired"


def test_a_terminated_agreement_ends_on_its_termination_day_even_before_it_began():
    running = {"valid_from": "2025-03-13", "valid_until": "2026-12-31", "terminated_on": "2025-06-01"}
    assert agreement_status(running, date(2025, 5, 31)) == "active"
    assert agreement_status(running, date(2025, 6, 1)) == "expired"
    not_yet_begun = {"valid_from": "2025-09-01", "valid_until": "2026-12-31", "terminated_on": "2025-06-01"}
    assert agreement_status(not_yet_begun, date(2025, 6, 1)) == "expired"


def test_the_api_derives_status_from_todays_local_date(operator):
    partner, _ = onboard(operator)
    assert sign(operator, partner["id"], iso_day(1), iso_day(30))["status"] == "pending"
    assert sign(operator, partner["id"], iso_day(0), iso_day(30))["status"] == "active"
    assert sign(operator, partner["id"], iso_day(-30), iso_day(0))["status"] == "active"
    assert sign(operator, partner["id"], iso_day(-30), iso_day(-1))["status"] == "expired"
    listed = operator.get("/partners/{}/agreements".format(partner["id"])).json()
    assert sorted(a["status"] for a in listed["items"]) == ["active", "active", "expired", "pending"]
    assert listed["items"][0]["parties"] == ["HCMC-DXCENTER", "SIU"]


# -- amendments and termination --------------------------------------------------------------------

def test_amendments_extend_and_shorten_an_agreement_and_its_history_keeps_each(operator, db):
    partner, _ = onboard(operator)
    agreement = sign(operator, partner["id"], iso_day(-10), iso_day(10))
    path = "/agreements/{}".format(agreement["id"])

    extended = operator.post(path + "/amend", {"valid_until": iso_day(100), "reason": "Phụ lục gia hạn số 01"})
    assert extended.status_code == 200, extended.text
    shortened = operator.post(path + "/amend", {"valid_until": iso_day(50), "reason": "Phụ lục số 02"}).json()

    assert shortened["valid_until"] == iso_day(50) and shortened["status"] == "active"
    assert [(h["before"]["valid_until"], h["after"]["valid_until"], h["reason"]) for h in shortened["history"]] == [
        (iso_day(10), iso_day(100), "Phụ lục gia hạn số 01"), (iso_day(100), iso_day(50), "Phụ lục số 02")]
    amended = [e["payload"] for e in events(db, "agreement_amended")]
    assert [(p["previous_valid_until"], p["valid_until"]) for p in amended] == [
        (iso_day(10), iso_day(100)), (iso_day(100), iso_day(50))]
    assert operator.get(path).json() == shortened


def test_an_amendment_that_does_not_fit_is_refused_and_changes_nothing(operator, db):
    partner, _ = onboard(operator)
    agreement = sign(operator, partner["id"], iso_day(-10), iso_day(10))
    path = "/agreements/{}/amend".format(agreement["id"])

    reversed_dates = operator.post(path, {"valid_until": iso_day(-20), "reason": "nhầm"})
    assert reversed_dates.status_code == 422
    assert list(reversed_dates.json()["error"]["fields"]) == ["valid_until"]
    assert operator.post(path, {"reason": "không có ngày"}).status_code == 422
    assert operator.post(path, {"valid_until": iso_day(20)}).json()["error"]["fields"] == {
        "reason": ["Missing data for required field."]}
    assert operator.post(path, {"valid_until": iso_day(10), "reason": "như cũ"}).status_code == 422

    assert operator.get("/agreements/" + agreement["id"]).json()["history"] == []
    assert events(db, "agreement_amended") == []


def test_termination_ends_an_agreement_at_once_and_for_good(operator, db):
    partner, _ = onboard(operator)
    agreement = sign(operator, partner["id"], iso_day(-10), iso_day(300))
    path = "/agreements/{}".format(agreement["id"])

    terminated = operator.post(path + "/terminate", {"reason": "Hai bên thống nhất chấm dứt"})
    assert terminated.status_code == 200, terminated.text
    assert terminated.json()["status"] == "expired"
    assert terminated.json()["terminated_on"] == iso_day(0)
    assert terminated.json()["history"][-1]["action"] == "terminated"

    # Terminating again (a retry) is the same termination; without a body it is allowed too.
    assert operator.post(path + "/terminate").json() == operator.get(path).json()
    [event] = events(db, "agreement_terminated")
    assert event["payload"] | {"agreement_id": agreement["id"], "terminated_on": iso_day(0),
                               "reason": "Hai bên thống nhất chấm dứt"} == event["payload"]

    # An ended agreement is history: not amended, and it covers no new offering.
    refused = operator.post(path + "/amend", {"valid_until": iso_day(400), "reason": "gia hạn"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "agreement_ended"
    offering = operator.post("/offerings", {
        "partner_id": partner["id"], "title": "Ứng dụng AI trong công việc", "audience_groups": ["ward_commune"],
        "starts_from": iso_day(10), "ends_by": iso_day(20)})
    assert offering.json()["error"]["code"] == "no_active_agreement"


def test_an_expired_agreement_is_neither_amended_nor_terminated(operator):
    partner, _ = onboard(operator)
    agreement = sign(operator, partner["id"], iso_day(-30), iso_day(-1))
    path = "/agreements/{}".format(agreement["id"])
    for action, body in (("/amend", {"valid_until": iso_day(30), "reason": "gia hạn"}), ("/terminate", {})):
        response = operator.post(path + action, body)
        assert response.status_code == 422 and response.json()["error"]["code"] == "agreement_ended"
    assert operator.get(path).json()["status"] == "expired"


# -- the expiry sweep ------------------------------------------------------------------------------

def replicas(container_factory, sweep_seconds):
    """Two replicas of the partners service on the same database, as production runs them."""
    started = []
    for _ in range(2):
        container = container_factory(PartnersService, {"AGREEMENT_SWEEP_SECONDS": sweep_seconds})
        container.start()
        started.append(container)
    return started


def record(container, partner_id, valid_from, valid_until):
    with entrypoint_hook(container, "create_agreement") as create_agreement:
        return create_agreement(OPERATOR, partner_id, {
            "title": AGREEMENT_TITLE, "signed_on": valid_from, "valid_from": valid_from, "valid_until": valid_until})


def lease_holder(container):
    """The name the container's expiry timer holds its lease under."""
    [timer] = [e for e in container.entrypoints if isinstance(e, LeasedTimer)]
    return timer.lease.holder


def test_with_two_replicas_running_each_ended_agreement_is_announced_expired_once(
        container_factory, app_config, db):
    first, second = replicas(container_factory, sweep_seconds=0.1)
    with entrypoint_hook(first, "create_partner") as create_partner:
        partner = create_partner(OPERATOR, SIU)
    ended = [record(first, partner["id"], iso_day(-60), iso_day(-1))["id"] for _ in range(3)]
    last_day_today = record(second, partner["id"], iso_day(-60), iso_day(0))["id"]
    terminated = record(second, partner["id"], iso_day(-60), iso_day(60))["id"]
    with entrypoint_hook(first, "terminate_agreement") as terminate:
        terminate(OPERATOR, terminated, {})

    expired = lambda: [e["payload"]["agreement_id"] for e in events(db, "agreement_expired")]  # noqa: E731
    wait_for(lambda: len(expired()) >= 3, timeout=10)

    # Later sweeps in each replica, seen by what they announce: one that ends after those were
    # announced is announced by the sweeping replica; when it stops, the other takes the lease over
    # and announces the next. Each of those sweeps had every agreement above in view.
    lease = lambda: db("partners").leases.find_one({"_id": "agreement-expiry"})["holder"]  # noqa: E731
    sweeping = next(c for c in (first, second) if lease_holder(c) == lease())
    other = second if sweeping is first else first
    later = [record(other, partner["id"], iso_day(-60), iso_day(-1))["id"]]
    wait_for(lambda: later[0] in expired(), timeout=10)
    sweeping.stop()
    wait_for(lambda: lease() == lease_holder(other), timeout=10)
    later.append(record(other, partner["id"], iso_day(-60), iso_day(-1))["id"])
    wait_for(lambda: later[1] in expired(), timeout=10)

    assert sorted(expired()) == sorted(ended + later)
    assert last_day_today not in expired() and terminated not in expired()
    assert len(events(db, "agreement_terminated")) == 1
    # And the relay published them.
    wait_for(lambda: db("partners").published_events.count_documents({"type": "agreement_expired"}) == 5)


def test_two_sweeps_at_the_same_moment_still_announce_each_expiry_once(container_factory, app_config, db):
    # The lease keeps the timer to one replica; this proves the sweep is safe even when it fails to.
    first, second = replicas(container_factory, sweep_seconds=3600)
    with entrypoint_hook(first, "create_partner") as create_partner:
        partner = create_partner(OPERATOR, SIU)
    ended = {record(first, partner["id"], iso_day(-60), iso_day(-1))["id"] for _ in range(10)}

    def sweep(container):
        with entrypoint_hook(container, "expire_agreements") as expire_agreements:
            return expire_agreements()

    # One sweep per replica, interleaved on every database call.
    announced = list(eventlet.GreenPool(2).imap(sweep, [first, second]))
    assert sum(announced) == 10
    assert sorted(e["payload"]["agreement_id"] for e in events(db, "agreement_expired")) == sorted(ended)
    history = [h["action"] for a in db("partners").agreements.find() for h in a["history"]]
    assert history == ["expired"] * 10
