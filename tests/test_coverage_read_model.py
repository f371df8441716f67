"""Coverage's and the reports' read model (issue 20) beside coordinators, edits and erasure (issue 18),
against the real stack: a coordinator's coverage and reports, read from the counters, are what a
count over its units' officials and registrations gives; after an official is moved to another unit
and audience group (`POST /officials/{id}/update`) and another is erased, the kept model answers what
a model rebuilt from scratch answers, for the operator and for the coordinator."""
from datetime import timedelta

import pytest

from backbone.clock import local_date, utcnow
from services.registration import coverage, reports, store
from services.registration.service import end_of_day
from tests.helpers import programme_with_coordinator, wait_for

A, B = "Q1", "Q3"
GROUPINGS = ("unit", "audience_group", "month")


@pytest.fixture(scope="module")
def world(module_system):
    """A coordinator of Q1; two officials of Q1 and two of Q3 registered for one session, one of
    them cancelled."""
    client, db, operator, programme, coordinator = programme_with_coordinator(module_system, A, {
        "full_name": "Lê Văn Điều Phối", "email": "dieuphoi.mo@q1.gov.vn", "phone": "0903 444 555"})
    session = programme.known_session(audience_groups=["ward_commune", "department"])
    officials = {name: programme.official(unit, group) for name, unit, group in (
        ("a1", A, "ward_commune"), ("a2", A, "ward_commune"), ("b1", B, "ward_commune"), ("b2", B, "department"))}
    registrations = {name: programme.registered(session, official) for name, official in officials.items()}
    cancelled = operator.post("/registrations/{}/cancel".format(registrations["b2"]["id"]), {"reason": "Bận"})
    assert cancelled.status_code == 200, cancelled.text
    yield {"operator": operator, "co": operator.as_(coordinator["api_token"]), "db": db,
           "officials": officials, "programme": programme, "session": session}
    client.close()


def recounted_coverage(db, by, scope):
    """Coverage as a count over every official and registration gives it (no read model)."""
    officials, units, registrations, sessions = store.coverage_inputs(db)
    if scope is not None:
        officials, units, registrations = coverage.within(scope, officials, units, registrations)
    today = local_date()
    first = min((r["created_at"] for r in registrations), default=None)
    months = coverage.month_ends(local_date(first) if first else today, today, end_of_day) if by == "month" else ()
    return coverage.report(by, officials, registrations, units, {}, end_of_day(today), sessions=sessions,
                           months=months)


def answers(client):
    """Every coverage grouping the read model serves and every report, as `client` reads them."""
    out = {by: client.get("/reports/coverage?by=" + by).json() for by in GROUPINGS}
    out.update({"report " + by: client.get("/reports/" + by).json() for by in reports.GROUPINGS})
    return out


def test_a_coordinators_coverage_and_reports_from_the_counters_count_its_units_alone(world):
    db, co = world["db"]("registration"), world["co"]
    for by in GROUPINGS:
        found = co.get("/reports/coverage?by=" + by)
        assert found.status_code == 200, found.text
        expected = recounted_coverage(db, by, {A})
        assert (found.json()["items"], found.json()["totals"]) == (expected["items"], expected["totals"]), by
    # Q1's two officials, both registered: nothing of Q3 in any figure.
    assert (found.json()["totals"]["staff"], found.json()["totals"]["registered"]) == (2, 2)
    for by in reports.GROUPINGS:
        table = co.get("/reports/" + by)
        assert table.status_code == 200, table.text
        assert [list(r.values()) for r in table.json()["items"]] == reports.build(db, by, "now", {A})["rows"], by
    # ... while the operator's counts every unit.
    assert world["operator"].get("/reports/coverage?by=unit").json()["totals"]["staff"] == 4


def test_after_an_edit_and_an_erasure_the_kept_model_answers_what_a_rebuilt_one_answers(world):
    operator, db = world["operator"], world["db"]("registration")
    a2, b1 = world["officials"]["a2"], world["officials"]["b1"]
    moved = operator.post("/officials/{}/update".format(a2["id"]), {"unit_code": B, "audience_group": "department"})
    assert moved.status_code == 200, moved.text
    erased = operator.post("/officials/{}/erase".format(b1["id"]), {"reason": "Yêu cầu xóa dữ liệu"})
    assert erased.status_code == 202, erased.text
    # The erased official has no words left to be found by.
    assert db.officials.find_one({"_id": b1["id"]})["search_words"] == []

    kept = {"operator": answers(operator), "coordinator": answers(world["co"])}
    # The move is counted: Q1 has one official left, and the department group gained a2.
    assert kept["coordinator"]["unit"]["totals"]["staff"] == 1
    groups = {row["key"]: row for row in kept["operator"]["audience_group"]["items"]}
    assert (groups["department"]["staff"], groups["department"]["registered"]) == (2, 1)
    for by in GROUPINGS:
        assert kept["operator"][by]["items"] == recounted_coverage(db, by, None)["items"], by
    # The folder has caught up (nothing marked, waiting or published since its checkpoint): the
    # rebuild starts from what it counted.
    wait_for(lambda: store.read_models_behind(db) == 0)
    assert store.rebuild_coverage(db) == 4
    assert {"operator": answers(operator), "coordinator": answers(world["co"])} == kept


def test_a_registration_writes_nothing_for_the_read_models_and_the_folder_counts_it_by_itself(world):
    """A registration's transaction writes the registration, its session's counters and its event:
    neither the official nor a read model. The folder (a leased timer, no report asking) counts it
    from the event within seconds, as a rebuild would."""
    db, programme = world["db"]("registration"), world["programme"]
    official = programme.official(B, "ward_commune")
    wait_for(lambda: store.read_models_behind(db) == 0)  # the new official is counted (staff)
    programme.registered(world["session"], official)
    assert "coverage_stale" not in db.officials.find_one({"_id": official["id"]})

    def counted():
        person = db.coverage_people.find_one({"_id": official["id"]}) or {}
        return ["session", world["session"]["id"]] in [share["key"] for share in person.get("report_shares", [])]
    wait_for(counted)
    wait_for(lambda: store.read_models_behind(db) == 0)
    kept = answers(world["operator"])
    assert kept["unit"]["totals"]["registered"] == 4  # a1, a2 (now in Q3), b1 (erased) and the new one
    store.rebuild_coverage(db)
    assert answers(world["operator"]) == kept


def test_folds_stop_while_a_rebuild_runs_and_go_on_after_it(world):
    """A fold beside a rebuild would add to counters the rebuild then replaces (the scale bench met
    it as a duplicate official in the rebuilt model): while the rebuild's mark is up, the timer's fold
    stops between batches and a report's folds nothing; once it is down, the fold counts what waited."""
    db, programme = world["db"]("registration"), world["programme"]
    wait_for(lambda: store.read_models_behind(db) == 0)
    db.read_model_checkpoints.replace_one({"_id": store.REBUILDING}, {"until": utcnow() + timedelta(minutes=5)},
                                          upsert=True)
    try:
        official = programme.official(A, "ward_commune")  # marked: waits for a fold
        assert store.rebuilding(db)
        with pytest.raises(store.FoldDeferred):
            store.fold_read_models(db, rest=1)
        assert store.fold_read_models(db, pending=True) == 0
        assert db.coverage_people.find_one({"_id": official["id"]}) is None
        assert db.officials.find_one({"_id": official["id"]})["coverage_stale"] > 0
    finally:
        db.read_model_checkpoints.delete_one({"_id": store.REBUILDING})
    # A rebuild's own mark comes down when it ends, whatever the timer does meanwhile.
    assert store.rebuild_coverage(db, settle=0) == 6
    assert not store.rebuilding(db)
    assert db.coverage_people.find_one({"_id": official["id"]}) is not None
    # A mark left by a rebuild that died runs out on its own.
    db.read_model_checkpoints.replace_one({"_id": store.REBUILDING}, {"until": utcnow() - timedelta(seconds=1)},
                                          upsert=True)
    assert not store.rebuilding(db)
    db.read_model_checkpoints.delete_one({"_id": store.REBUILDING})
