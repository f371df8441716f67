"""Named operator accounts, their personal tokens, viewers who read only, and the audit of who acted:
black-box over HTTP against one running system for the module (real broker, SecantusDB over TCP)."""
import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from backbone.database import mongo_client
from tests.helpers import Client, Programme, assert_error


@pytest.fixture(scope="module")
def world(module_system):
    base = module_system["GATEWAY_URL"]
    system = Client(base, module_system["OPERATOR_TOKEN"])
    client = mongo_client(module_system["MONGO_URI"])
    prefix = module_system["DATABASE_PREFIX"]

    def db(service):
        return client["{}_{}".format(prefix, service)]

    def account(name, email, role):
        response = system.post("/operators", {"full_name": name, "email": email, "role": role})
        assert response.status_code == 201, response.text
        created = response.json()
        token = system.post("/operators/{}/tokens".format(created["id"]))
        assert token.status_code == 201, token.text
        return created, Client(base, token.json()["api_token"])

    admin, as_admin = account("Trần Quản Trị", "quantri@dxcenter.example", "admin")
    lan, as_lan = account("Nguyễn Thị Lan", "lan.nguyen@dxcenter.example", "operator")
    vy, as_vy = account("Phạm Tường Vy", "vy.pham@dxcenter.example", "viewer")
    yield {"base": base, "system": system, "db": db, "admin": admin, "as_admin": as_admin, "lan": lan,
           "as_lan": as_lan, "vy": vy, "as_vy": as_vy}
    client.close()


def test_an_admin_creates_accounts_and_each_refusal_says_why(world):
    system, as_admin = world["system"], world["as_admin"]
    created = as_admin.post("/operators", {"full_name": "Lê Văn Hùng", "email": "Hung.Le@dxcenter.example",
                                           "role": "operator"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("operator-") and body["role"] == "operator" and body["active"] is True
    assert {"id", "full_name", "email", "role", "active"} <= set(body)
    listed = system.get("/operators").json()["items"]
    assert body["id"] in [a["id"] for a in listed] and world["vy"]["id"] in [a["id"] for a in listed]

    fields = assert_error(system.post("/operators", {"full_name": "X", "email": "not-an-address", "role": "admin"}),
                          422, "invalid_fields")["fields"]
    assert "email" in fields
    fields = assert_error(system.post("/operators", {"full_name": "X", "email": "x@dxcenter.example",
                                                     "role": "superuser"}), 422, "invalid_fields")["fields"]
    assert "role" in fields
    fields = assert_error(system.post("/operators", {"email": "y@dxcenter.example", "role": "viewer"}),
                          422, "invalid_fields")["fields"]
    assert "full_name" in fields
    # The same address, whatever its case, is one person.
    assert_error(system.post("/operators", {"full_name": "Hùng", "email": "hung.le@DXCENTER.example",
                                            "role": "viewer"}), 409, "email_taken")

    partner = system.post("/partners", {"code": "ACC-UNI", "name": "Trường Thử", "kind": "university",
                                        "contact_email": "daotao@acc.example.edu.vn"}).json()
    as_partner = system.as_(partner["api_key"])
    new = {"full_name": "Ai Đó", "email": "aido@dxcenter.example", "role": "admin"}
    for who in (world["as_lan"], world["as_vy"], as_partner):
        assert_error(who.post("/operators", new), 403, "forbidden")
        assert_error(who.get("/operators"), 403, "forbidden")
        assert_error(who.post("/operators/{}/deactivate".format(world["admin"]["id"])), 403, "forbidden")
    assert_error(system.as_("op_" + "x" * 43).get("/operators"), 401, "unauthenticated")
    assert_error(system.post("/operators/operator-0000000000000000/deactivate"), 404, "not_found")


def test_personal_tokens_are_shown_once_kept_as_digests_and_stop_when_revoked_or_deactivated(world):
    system, base = world["system"], world["base"]
    account = system.post("/operators", {"full_name": "Đỗ Minh Khoa", "email": "khoa.do@dxcenter.example",
                                         "role": "operator"}).json()
    # The account itself holds a token an admin issued, then issues its own second one.
    first = system.post("/operators/{}/tokens".format(account["id"])).json()
    as_khoa = Client(base, first["api_token"])
    assert first["api_token"].startswith("op_")
    second = as_khoa.post("/operators/{}/tokens".format(account["id"]))
    assert second.status_code == 201, second.text
    as_khoa_too = Client(base, second.json()["api_token"])
    assert as_khoa.get("/units").status_code == 200 and as_khoa_too.get("/units").status_code == 200

    stored = list(world["db"]("gateway").operator_tokens.find({"operator_id": account["id"]}))
    assert len(stored) == 2
    for record, token in zip(sorted(stored, key=lambda r: r["created_at"]),
                             (first["api_token"], second.json()["api_token"])):
        assert record["digest"] == hashlib.sha256(token.encode()).hexdigest()
        assert token not in str(record)

    # Another account's tokens are none of a non-admin's business.
    assert_error(as_khoa.post("/operators/{}/tokens".format(world["lan"]["id"])), 403, "forbidden")
    assert_error(world["as_lan"].post("/operators/{}/tokens/{}/revoke".format(account["id"], first["id"])),
                 403, "forbidden")

    revoked = as_khoa.post("/operators/{}/tokens/{}/revoke".format(account["id"], second.json()["id"]))
    assert revoked.status_code == 200, revoked.text
    assert_error(as_khoa_too.get("/units"), 401, "unauthenticated")
    assert as_khoa.get("/units").status_code == 200

    assert system.post("/operators/{}/deactivate".format(account["id"])).json()["active"] is False
    assert_error(as_khoa.get("/units"), 401, "unauthenticated")
    assert_error(system.post("/operators/{}/tokens".format(account["id"])), 422, "operator_inactive")


def test_a_token_of_each_account_acts_with_its_access(world):
    """An operator account writes, a viewer reads, an admin administers."""
    as_lan, as_vy = world["as_lan"], world["as_vy"]
    unit = as_lan.post("/units", {"code": "ACC-W1", "name": "Phường Thử Một", "kind": "ward_commune"})
    assert unit.status_code == 201, unit.text
    assert as_vy.get("/units?q=ACC-W1").status_code == 200
    assert_error(as_vy.post("/units", {"code": "ACC-W2", "name": "Phường Thử Hai", "kind": "ward_commune"}),
                 403, "forbidden")
    assert world["as_admin"].get("/operators").status_code == 200


# -- viewers read only ------------------------------------------------------------------------------

def routes(client):
    document = client.get("/openapi.json").json()
    for path, operations in sorted(document["paths"].items()):
        for method, operation in sorted(operations.items()):
            yield method.upper(), path, operation


@pytest.fixture(scope="module")
def programme(world):
    programme = Programme(world["system"], world["db"])
    session = programme.known_session()
    official = programme.official()
    registration = programme.registered(session, official)
    key_id = world["system"].get("/partners/" + programme.siu_id).json()["api_keys"][0]["key_id"]
    return {"partner_id": programme.siu_id, "agreement_id": programme.agreement_id,
            "offering_id": programme.offering_id, "venue_id": programme.venue_id, "session_id": session["id"],
            "official_id": official["id"], "registration_id": registration["id"], "key_id": key_id,
            "code": "Q1", "letter_id": "scheduling:nothing", "notice_id": "nothing", "by": "session",
            "operator_id": world["admin"]["id"], "token_id": "optoken-0000000000000000"}


def concrete(path, values):
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def test_a_viewer_reads_every_list_and_report_and_is_refused_every_write(world, programme):
    as_vy = world["as_vy"]
    refused_reads, let_in_writes, read = [], [], 0
    for method, path, operation in routes(as_vy):
        if operation["description"].startswith(("No authentication", "An official's own")):
            continue  # an official's own routes refuse every operator (tests/test_authorization.py)
        url = concrete(path, programme)
        admin_only = operation["description"].startswith("Operator token only, of an admin")
        if method == "GET":
            answer = as_vy.get(url)
            read += 1
            if admin_only:
                if answer.status_code != 403:
                    refused_reads.append("{} {}: {} (an admin's)".format(method, path, answer.status_code))
            elif answer.status_code in (401, 403):
                refused_reads.append("{} {}: {} {}".format(method, path, answer.status_code, answer.text[:200]))
            continue
        if path == "/officials/import":
            answer = as_vy.post(url, data=b"full_name,email,phone,unit_code,audience_group\n",
                                headers={"Content-Type": "text/csv"})
        else:
            answer = as_vy.post(url, {})
        if answer.status_code != 403:
            let_in_writes.append("{} {}: {} {}".format(method, path, answer.status_code, answer.text[:200]))
    assert read >= 25
    assert not refused_reads, "\n".join(refused_reads)
    assert not let_in_writes, "\n".join(let_in_writes)
    # And what it read is what an operator reads.
    for path in ("/officials", "/reports/session", "/reports/coverage", "/notifications", "/dead-letters",
                 "/sessions/{}/registrations".format(programme["session_id"])):
        assert as_vy.get(path).status_code == 200, path
    assert as_vy.get("/registrations/" + programme["registration_id"]).json().get("official", {}).get("email")


# -- the audit of who acted -------------------------------------------------------------------------

def test_every_write_records_who_acted_and_reads_do_not(world):
    system, as_lan, db = world["system"], world["as_lan"], world["db"]
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    partner = system.post("/partners", {"code": "AUD-UNI", "name": "Trường Kiểm Tra", "kind": "university",
                                        "contact_email": "daotao@aud.example.edu.vn"}, headers={
                                            "X-Correlation-Id": "corr-audit-system"})
    assert partner.status_code == 201
    partner = partner.json()
    as_partner = system.as_(partner["api_key"])
    by_lan = as_lan.post("/partners/{}/keys".format(partner["id"]))
    assert by_lan.status_code == 201
    rotated = as_partner.post("/partners/{}/calendar/rotate".format(partner["id"]))
    assert rotated.status_code == 200, rotated.text
    refused = as_partner.post("/partners/{}/keys".format(partner["id"]))
    assert refused.status_code == 403
    assert system.get("/partners/" + partner["id"]).status_code == 200

    audit = db("gateway").audit
    # Written before the answer left: no waiting.
    records = list(audit.find({"targets": partner["id"]}).sort("at", 1))
    routes_seen = [(r["actor"], r["route"], r["status"]) for r in records]
    assert ("operator:" + world["lan"]["id"], "POST /partners/<partner_id>/keys", 201) in routes_seen
    assert ("partner:" + partner["id"], "POST /partners/<partner_id>/calendar/rotate", 200) in routes_seen
    assert ("partner:" + partner["id"], "POST /partners/<partner_id>/keys", 403) in routes_seen
    assert not any(r["route"].startswith("GET ") for r in audit.find({}))
    created = audit.find_one({"route": "POST /partners", "correlation_id": "corr-audit-system"})
    assert created["actor"] == "system" and created["status"] == 201 and created["at"] >= started
    # No body is kept: the partner's contact address is nowhere in the audit.
    assert "daotao@aud.example.edu.vn" not in str(list(audit.find({})))
    assert created["expires_at"] - created["at"] == timedelta(days=400)


def test_the_audit_is_read_by_admins_filtered_and_paged(world):
    system, as_admin = world["system"], world["as_admin"]
    since = datetime.now(timezone.utc)
    codes = ["AUD-P{}".format(n) for n in range(5)]
    for code in codes:
        assert world["as_lan"].post("/units", {"code": code, "name": "Phường " + code,
                                               "kind": "ward_commune"}).status_code == 201
    lan = "operator:" + world["lan"]["id"]
    seen, cursor = [], None
    query = "/audit?actor={}&since={}&limit=2".format(lan, since.isoformat().replace("+00:00", "Z"))
    while True:
        page = as_admin.get(query + ("&cursor=" + cursor if cursor else ""))
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 2
        seen += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert [i["route"] for i in seen] == ["POST /units"] * 5
    assert all(i["actor"] == lan and i["status"] == 201 for i in seen)
    assert [i["at"] for i in seen] == sorted(i["at"] for i in seen)

    by_target = system.get("/audit?target=" + world["admin"]["id"]).json()["items"]
    assert by_target and all(world["admin"]["id"] in i["target"].values() for i in by_target)
    assert_error(system.get("/audit?since=yesterday"), 422, "invalid_fields")
    assert_error(system.get("/audit?cursor=junk"), 422, "invalid_fields")
    for who in (world["as_lan"], world["as_vy"]):
        assert_error(who.get("/audit"), 403, "forbidden")
