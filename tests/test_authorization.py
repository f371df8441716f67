"""The authorisation matrix: every route of the public API, asked by every kind of caller, answers
what its rights say, never more. Callers: nobody, a junk token, a revoked key, a calendar feed token
sent as a Bearer, another partner, the partner whose records they are, and the operator.

What a caller may do is the route's `auth` (operator, partner, any, feed, or none) and whose records
it names; the expected status of each cell is derived from those, so a route added without the
right checks fails here."""
import pytest

from tests.helpers import SIU

# Kinds of records a path may name, and whose they are in this programme (the venue is the Banking
# University's, which hosts it; everything else is SIU's).
HOSTED = ("venue_id",)


@pytest.fixture
def world(programme, operator, db):
    """SIU (with an agreement, an offering, a session at the Banking University's venue, an official
    registered), another university (HUB, no agreement), a revoked key and a feed token."""
    session = programme.known_session()
    official = programme.official()
    registration = programme.registered(session, official)
    hub = operator.post("/partners", dict(SIU, code="HUB", name="Trường Đại học Kinh tế")).json()
    spare = operator.post("/partners/{}/keys".format(programme.siu_id)).json()
    assert operator.post("/partners/{}/keys/{}/revoke".format(programme.siu_id, spare["key_id"])).status_code == 200
    feed_url = operator.get("/partners/" + programme.siu_id).json()["calendar_url"]
    feed_token = feed_url.split("token=", 1)[1]
    key_id = operator.get("/partners/" + programme.siu_id).json()["api_keys"][0]["key_id"]
    values = {
        "partner_id": programme.siu_id, "agreement_id": programme.agreement_id,
        "offering_id": programme.offering_id, "venue_id": programme.venue_id, "session_id": session["id"],
        "official_id": official["id"], "registration_id": registration["id"], "key_id": key_id,
        "code": "AAAAA-BBBBB-CCCCC-DDDDD", "letter_id": "scheduling:nothing", "notice_id": "nothing",
        "by": "session",
    }
    callers = {
        "nobody": operator.as_(None), "junk": operator.as_("tok_" + "j" * 43),
        "revoked": operator.as_(spare["api_key"]), "feed": operator.as_(feed_token),
        "other": operator.as_(hub["api_key"]), "own": programme.siu, "host": programme.buh,
        "operator": operator,
    }
    return {"values": values, "callers": callers, "programme": programme}


def routes(anonymous):
    document = anonymous.get("/openapi.json").json()
    for path, operations in sorted(document["paths"].items()):
        for method, operation in sorted(operations.items()):
            yield method.upper(), path, operation


def concrete(path, values):
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def auth_of(operation):
    """The route's rights, from the document's words (gateway/openapi.py AUTH_TEXT)."""
    text = operation["description"]
    if text.startswith("No authentication"):
        return None
    if text.startswith("Operator token only"):
        return "operator"
    if text.startswith("The feed's own"):
        return "feed"
    if text.startswith("A partner's API key"):
        return "partner"
    if text.startswith("An official's own"):
        return "official"
    return "any"


def expected(caller, auth, path):
    """The statuses a caller may get on a route: a set."""
    allowed = {200, 201, 404, 409, 422}  # let in: then the route's own answers (409/422 for a `{}` body)
    if auth is None:
        return allowed
    if caller in ("nobody", "junk", "revoked", "feed"):
        return {401}
    if auth == "official":
        return {403}  # none of these callers is an official (tests/test_selfservice.py has those)
    if caller == "operator":
        return allowed
    if auth == "operator":
        return {403}
    owner = "host" if any(name in path for name in HOSTED) else "own"
    names_records = "{" in path
    if caller in ("own", "host"):
        if auth == "any" or not names_records or caller == owner:
            return allowed
        return allowed | {403}  # the other partner of a session (deliverer or host) may be refused
    # Another partner: reads the programme's sessions, venues and calendars (what it sees there is
    # its own: `visible_to` in scheduling), never SIU's records.
    readable = auth == "any" or (auth == "feed" and "{partner_id}" not in path)
    if readable or not names_records:
        return allowed
    return {403, 404}


def test_every_route_answers_each_caller_as_its_rights_say(world, anonymous):
    answers, wrong = {}, []
    callers = world["callers"]
    # The operator last: its writes (a terminated agreement, a withdrawn offering) change nothing of
    # what the others are refused.
    for name in ("nobody", "junk", "revoked", "feed", "other", "host", "own", "operator"):
        for method, path, operation in routes(anonymous):
            auth = auth_of(operation)
            url = concrete(path, world["values"])
            client = callers[name]
            if method == "GET":
                answer = client.get(url)
            elif path == "/officials/import":
                answer = client.post(url, data=b"full_name,email,phone,unit_code,audience_group\n",
                                     headers={"Content-Type": "text/csv"})
            else:
                answer = client.post(url, {})
            answers[(name, method, path)] = answer.status_code
            if answer.status_code not in expected(name, auth, path):
                wrong.append("{} {} {} ({}): {} {}".format(name, method, path, auth, answer.status_code,
                                                          answer.text[:160]))
    assert len({(m, p) for _, m, p in answers}) >= 50
    assert not wrong, "\n".join(wrong)


def test_the_matrix_can_fail():
    """The expectation is no blanket: a partner on an operator route, anyone with a junk token, and
    another partner on SIU's records are each expected to be refused."""
    assert expected("own", "operator", "/partners/{partner_id}/keys") == {403}
    assert expected("junk", "any", "/sessions") == {401}
    assert expected("other", "partner", "/offerings/{offering_id}") == {403, 404}
    assert 401 not in expected("operator", "operator", "/metrics")
