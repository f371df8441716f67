"""What the scenario tests share: a client of the public API, waiting for an outcome, dates in
local time, the programme every scheduling and registration scenario starts from, and a few ways to
make and read events. Fixtures live in conftest.py; this module holds no tests and no fixtures."""
import inspect
import itertools
import json
import os
import secrets
import time
from datetime import timedelta

import eventlet
import requests
from prometheus_client.parser import text_string_to_metric_families

from backbone import topology
from backbone.clock import local_date
from backbone.events import make_envelope
from backbone.outbox import ConfirmedPublisher, emitted_events, event_message
from backbone.subscriber import Subscriber

# The local RabbitMQ; each test run works in a vhost of its own on it.
AMQP_BASE = os.environ.get("TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672/")
# The secrets the services need (config.yml has none), made for this run; the services the tests
# start as processes get them as environment variables.
TEST_SECRETS = {"FEED_SECRET": secrets.token_urlsafe(32), "UNSUBSCRIBE_SECRET": secrets.token_urlsafe(32)}


def wait_for(predicate, timeout=30, interval=0.05):
    """Poll until `predicate()` is truthy; return its value or fail the test. In a browser, an element
    of the page a click is leaving goes stale as the next one loads: that is "not yet", not a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as error:
            if type(error).__name__ != "StaleElementReferenceException":
                raise
            value = None
        if value:
            return value
        eventlet.sleep(interval)
    raise AssertionError("condition not met within {}s".format(timeout))


class Client:
    """The public HTTP API as a caller sees it."""

    def __init__(self, base_url, token=None):
        self.base_url = base_url
        self.http = requests.Session()
        self.token = token

    def as_(self, token):
        return Client(self.base_url, token)

    def request(self, method, path, json=None, data=None, headers=None):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        return self.http.request(method, self.base_url + path, json=json, data=data, headers=headers,
                                 timeout=30)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.request("POST", path, json=json, **kw)


def assert_error(response, status, code):
    """The response is the error `code` with `status`; returns the error body."""
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    return response.json()["error"]


# -- dates, as people here write them ----------------------------------------------------------------

def day(offset):
    """The local calendar day `offset` days from today in Ho Chi Minh City."""
    return local_date() + timedelta(days=offset)


def iso_day(offset):
    """The same day as the API writes dates (`2026-12-06`)."""
    return day(offset).isoformat()


def at(offset, clock):
    """`at(3, "08:00")`: 08:00 +07:00 three local days from today, as the API takes it."""
    return "{}T{}:00+07:00".format(day(offset).isoformat(), clock)


def full_day(offset):
    """A full day of class with a lunch break: two parts."""
    return {"starts_at": at(offset, "08:00"), "ends_at": at(offset, "17:00"),
            "parts": [{"starts_at": at(offset, "08:00"), "ends_at": at(offset, "11:30")},
                      {"starts_at": at(offset, "13:30"), "ends_at": at(offset, "17:00")}]}


# -- partners -----------------------------------------------------------------------------------------

SIU = {"code": "SIU", "name": "Trường Đại học Quốc tế Sài Gòn", "kind": "university",
       "contact_email": "hoptac@siu.edu.vn"}
AGREEMENT_TITLE = "Thỏa thuận hợp tác đào tạo, bồi dưỡng cán bộ, công chức giai đoạn 2025–2026"
MODULES = [{"title": "Xu hướng và ứng dụng AI trong công tác hành chính, văn phòng", "hours": 4},
           {"title": "An toàn thông tin khi sử dụng AI", "hours": 4}]


def onboard(operator, partner=SIU):
    """A new partner, and a client that calls with its API key."""
    response = operator.post("/partners", partner)
    assert response.status_code == 201, response.text
    return response.json(), operator.as_(response.json()["api_key"])


def sign(operator, partner_id, valid_from, valid_until, scope=("ward_commune", "department")):
    response = operator.post("/partners/{}/agreements".format(partner_id), {
        "title": AGREEMENT_TITLE, "parties": ["HCMC-DXCENTER", "SIU"], "signed_on": valid_from,
        "valid_from": valid_from, "valid_until": valid_until, "scope": list(scope)})
    assert response.status_code == 201, response.text
    return response.json()


def offering(**changes):
    """An offering body: the programme's course for district and ward officials, from 5 to 25 days
    ahead; a change to None leaves that field out."""
    body = {"title": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc",
            "title_en": "Knowledge and skills for using AI tools at work",
            "audience_groups": ["ward_commune"], "modules": MODULES,
            "starts_from": iso_day(5), "ends_by": iso_day(25)}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


# -- the programme of the scheduling and registration scenarios ---------------------------------------

UNITS = [
    {"code": "HCM", "name": "Thành phố Hồ Chí Minh", "kind": "city"},
    {"code": "Q1", "name": "Quận 1", "kind": "district", "parent_code": "HCM"},
    {"code": "Q3", "name": "Quận 3", "kind": "district", "parent_code": "HCM"},
    {"code": "Q4", "name": "Quận 4", "kind": "district", "parent_code": "HCM"},
    {"code": "BEN-NGHE", "name": "Phường Bến Nghé", "kind": "ward_commune", "parent_code": "Q1"},
]

HALL, LAB = "Hội trường lớn", "Phòng máy 1"
_numbers = itertools.count(1)


class Programme:
    """What every scheduling and registration scenario starts from: SIU with an agreement active from a
    year ago to a year ahead, its published offering (which scheduling has heard of), the Banking
    University of HCMC as the venue host, with a hall and a computer lab, and the units of the first
    class."""

    def __init__(self, operator, db):
        self.operator = operator
        siu = operator.post("/partners", {"code": "SIU", "name": "Trường Đại học Quốc tế Sài Gòn",
                                          "kind": "university", "contact_email": "hoptac@siu.edu.vn"}).json()
        buh = operator.post("/partners", {"code": "BUH", "name": "Trường Đại học Ngân hàng TP. Hồ Chí Minh",
                                          "kind": "venue_host", "contact_email": "hoptac@hub.edu.vn"}).json()
        self.siu_id, self.buh_id = siu["id"], buh["id"]
        self.siu, self.buh = operator.as_(siu["api_key"]), operator.as_(buh["api_key"])
        agreement = operator.post("/partners/{}/agreements".format(self.siu_id), {
            "title": "Thỏa thuận hợp tác đào tạo", "signed_on": day(-400).isoformat(),
            "valid_from": day(-400).isoformat(), "valid_until": day(400).isoformat(), "scope": []})
        assert agreement.status_code == 201, agreement.text
        self.agreement_id = agreement.json()["id"]
        offering = self.siu.post("/offerings", {
            "title": "Bồi dưỡng kiến thức và kỹ năng ứng dụng AI trong công việc",
            "audience_groups": ["ward_commune", "department"],
            "modules": [{"title": "AI trong công tác văn phòng", "hours": 4}],
            "starts_from": day(-365).isoformat(), "ends_by": day(365).isoformat()})
        assert offering.status_code == 201, offering.text
        self.offering_id = offering.json()["id"]
        venue = operator.post("/venues", {
            "name": "Trường Đại học Ngân hàng TP. Hồ Chí Minh",
            "address": "36 Tôn Thất Đạm, phường Nguyễn Thái Bình, Quận 1, TP. Hồ Chí Minh",
            "host_partner_id": self.buh_id,
            "rooms": [{"name": HALL, "capacity": 160, "equipment": ["máy chiếu", "âm thanh"]},
                      {"name": LAB, "capacity": 40, "equipment": ["40 máy tính", "máy chiếu"]}]})
        assert venue.status_code == 201, venue.text
        self.venue_id = venue.json()["id"]
        # Scheduling learns of the offering from partners' event, asynchronously.
        wait_for(lambda: db("scheduling").offerings.find_one({"_id": self.offering_id}))
        self.db = db
        for unit in UNITS:
            response = operator.post("/units", unit)
            assert response.status_code == 201, response.text

    def session(self, **fields):
        """A session body: a morning in the hall, 150 seats for Quận 1 and 3, unless told otherwise."""
        return dict({
            "offering_id": self.offering_id, "venue_id": self.venue_id, "room": HALL,
            "trainer": "TS. Nguyễn Văn A", "starts_at": at(10, "08:00"), "ends_at": at(10, "12:00"),
            "capacity": 150, "eligible_units": ["Q1", "Q3"], "audience_groups": ["ward_commune"]}, **fields)

    def schedule(self, client=None, **fields):
        return (client or self.operator).post("/sessions", self.session(**fields))

    def scheduled(self, **fields):
        response = self.schedule(**fields)
        assert response.status_code == 201, response.text
        return response.json()

    def official(self, unit_code="Q1", audience_group="ward_commune", full_name=None):
        """A new official of `unit_code` (a number of its own in its name, email and phone)."""
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


def programme_with_coordinator(system, unit_code, coordinator):
    """What a module's world of coordinators begins with, on `system` (module_system): (the client of
    its databases, to close at the end; db(service); the operator's Client; the Programme; the answer
    that created `coordinator`, a coordinator of `unit_code`, with its `api_token`)."""
    from backbone.database import mongo_client
    client = mongo_client(system["MONGO_URI"])

    def db(service):
        return client["{}_{}".format(system["DATABASE_PREFIX"], service)]

    operator = Client(system["GATEWAY_URL"], system["OPERATOR_TOKEN"])
    programme = Programme(operator, db)
    created = operator.post("/units/{}/coordinators".format(unit_code), coordinator)
    assert created.status_code == 201, created.text
    return client, db, operator, programme, created.json()


# -- events ---------------------------------------------------------------------------------------------

def emitted(db, service, type_):
    """The payloads of the events of `type_` that `service` wrote, oldest first."""
    return [e["payload"] for e in emitted_events(db(service), {"type": type_})]


def publish(app_config, type_, payload, producer="partners"):
    """Publish an event as its producer would, straight to the exchange."""
    publisher = ConfirmedPublisher(app_config["AMQP_URI"])
    try:
        publisher.publish_batch([event_message(make_envelope(type_, payload, producer, "test"),
                                               topology.exchange_name())])
    finally:
        publisher.close()


def publish_to(app_config, service, envelope):
    """Straight into one consumer's queue, as the relay would have routed it there."""
    publisher = ConfirmedPublisher(app_config["AMQP_URI"])
    try:
        publisher.publish_batch([("", topology.queue_name(service), json.dumps(envelope).encode(), {
            "content_type": "application/json", "message_id": envelope["event_id"], "type": envelope["type"],
            "correlation_id": envelope["correlation_id"]})])
    finally:
        publisher.close()


def withdrawn(correlation_id, contact=""):
    return make_envelope("offering_withdrawn", {
        "offering_id": "offering-00000000000000aa", "partner_id": "partner-00000000000000bb",
        "reason": "withdrawn" + contact}, "partners", correlation_id)


class Poison:
    """Makes a real consumer's handler fail for one event type until `fix()`: what a bug, or a
    downstream outage, does to an event in production."""

    def __init__(self, monkeypatch, service_cls, event_type):
        name = next(name for name, fn in inspect.getmembers(service_cls, inspect.isfunction)
                    for entrypoint in getattr(fn, "nameko_entrypoints", ())
                    if isinstance(entrypoint, Subscriber) and entrypoint.event_type == event_type)
        original = getattr(service_cls, name)
        self.broken = True
        self.calls = []

        def handler(service, event):
            self.calls.append(event["event_id"])
            if self.broken:
                raise RuntimeError("downstream unavailable for {}".format(event["payload"]["offering_id"]))
            return original(service, event)

        monkeypatch.setattr(service_cls, name, handler)

    def fix(self):
        self.broken = False
        self.calls.clear()


# -- metrics --------------------------------------------------------------------------------------------

def samples(client):
    """{(name, frozenset(labels)): value} of a GET /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found, name, **labels):
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))


def moved(before, after, name, **labels):
    """How much a counter moved between two scrapes (counters live as long as the process: the tests'
    services share one)."""
    return value(after, name, **labels) - value(before, name, **labels)


def settled(service, event_type):
    """How many deliveries of `event_type` this process's `service` consumer has settled so far:
    handled, skipped as a repeat, sent to retry or dead-lettered. Every delivery ends in exactly one
    of these, so a test that knows how many it sent waits for this instead of sleeping before it
    asserts that nothing more happened."""
    from backbone import counters
    total = 0
    for counter in (counters.EVENTS_HANDLED, counters.EVENTS_DUPLICATE, counters.EVENTS_RETRIED,
                    counters.EVENTS_DEAD_LETTERED):
        total += counter.labels(service, event_type)._value.get()
    return total


# Debian's headless Chromium and its driver (`make browser` installs them), for the pages' tests.
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def headless_chromium(tmp_path, size="1400,900"):
    """A fresh headless Chromium (its own profile under `tmp_path`), `size` its window ("width,height"):
    a phone's width for the pages people read on one."""
    import tempfile
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=" + size, "--user-data-dir={}".format(tempfile.mkdtemp(dir=tmp_path))):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
