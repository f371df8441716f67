"""What the registration scenarios share (no tests here): the programme from the scheduling
scenarios, the units of the first class, officials, and a session registration has heard of."""
import itertools

import pytest

from backbone.outbox import emitted_events
from tests.helpers import wait_for
from tests.test_scheduling import Programme, at  # noqa: F401  (`at` is re-exported for the scenarios)

UNITS = [
    {"code": "HCM", "name": "Thành phố Hồ Chí Minh", "kind": "city"},
    {"code": "Q1", "name": "Quận 1", "kind": "district", "parent_code": "HCM"},
    {"code": "Q3", "name": "Quận 3", "kind": "district", "parent_code": "HCM"},
    {"code": "Q4", "name": "Quận 4", "kind": "district", "parent_code": "HCM"},
    {"code": "BEN-NGHE", "name": "Phường Bến Nghé", "kind": "ward_commune", "parent_code": "Q1"},
]

_numbers = itertools.count(1)


class Registrations(Programme):
    """The programme, the units, and helpers to make officials and sessions registration knows."""

    def __init__(self, operator, db):
        super().__init__(operator, db)
        self.db = db
        for unit in UNITS:
            response = operator.post("/units", unit)
            assert response.status_code == 201, response.text

    def official(self, unit_code="Q1", audience_group="district", full_name=None):
        n = next(_numbers)
        response = self.operator.post("/officials", {
            "full_name": full_name or "Cán bộ Số {}".format(n), "email": "canbo{}@{}.gov.vn".format(n, unit_code.lower()),
            "phone": "0903{:06d}".format(n), "unit_code": unit_code, "audience_group": audience_group})
        assert response.status_code == 201, response.text
        return response.json()

    def known_session(self, **fields):
        """A session scheduled through the API, once registration has heard of it."""
        session = self.scheduled(**fields)
        wait_for(lambda: self.db("registration").sessions.find_one({"_id": session["id"]}))
        return session

    def register(self, session, official, **extra):
        return self.operator.post("/sessions/{}/registrations".format(session["id"]),
                                  dict({"official_id": official["id"]}, **extra))

    def registered(self, session, official):
        response = self.register(session, official)
        assert response.status_code == 201, response.text
        return response.json()

    def outbox(self, type_):
        return [e["payload"] for e in emitted_events(self.db("registration"), {"type": type_})]


@pytest.fixture
def programme(operator, db):
    return Registrations(operator, db)


@pytest.fixture
def registration_only(runner_factory, app_config, db):
    """The programme without the notifications service: for scenarios about seats alone, so that
    thousands of confirmation emails don't share the test's CPU with the race being measured."""
    from gateway.service import GatewayService
    from services.partners.service import PartnersService
    from services.registration.service import RegistrationService
    from services.scheduling.service import SchedulingService
    from tests.helpers import Client
    runner = runner_factory(PartnersService, SchedulingService, RegistrationService, GatewayService)
    runner.start()
    return Registrations(Client(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"]), db)


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    return response.json()["error"]
