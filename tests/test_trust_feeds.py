"""Abuse tests of the calendar feeds, black-box over HTTP: a calendar URL leaks (calendar sync
services, proxies, shared links), so it carries a read-only token of its own that opens that feed and
nothing else, never an API key or the operator token; the partner, venue and session answers give it
as a ready `calendar_url`; rotating a feed ends the old URL at once."""
from urllib.parse import parse_qs, urlsplit

import nameko
import pytest
import requests
from icalendar import Calendar

from tests.helpers import LAB, assert_error

FEEDS = ("/partners/{}/calendar.ics", "/venues/{}/calendar.ics", "/sessions/{}/calendar.ics")


def token_of(calendar_url):
    return parse_qs(urlsplit(calendar_url).query)["token"][0]


def events(response):
    assert response.status_code == 200, response.text
    return {str(event["UID"]) for event in Calendar.from_ical(response.content).events}


@pytest.fixture
def feeds(programme):
    """A session of SIU's at the Banking University's venue, and the URLs of every feed about it."""
    session = programme.scheduled()
    return {
        "session": session,
        "partner": programme.siu.get("/partners/" + programme.siu_id).json()["calendar_url"],
        "venue": programme.buh.get("/venues/" + programme.venue_id).json()["calendar_url"],
        "session_feed": programme.siu.get("/sessions/" + session["id"]).json()["calendar_url"],
    }


def test_each_answer_gives_its_feed_as_a_ready_absolute_url_that_opens_without_a_header(programme, feeds):
    session_uid = feeds["session"]["id"] + "@trainops"
    base = programme.operator.base_url
    for url, path in ((feeds["partner"], FEEDS[0].format(programme.siu_id)),
                      (feeds["venue"], FEEDS[1].format(programme.venue_id)),
                      (feeds["session_feed"], FEEDS[2].format(feeds["session"]["id"]))):
        assert url.startswith(base + path + "?token=feed_")
        assert session_uid in events(requests.get(url, timeout=10))  # a calendar app sends no header
    # The operator gets each one too, the same (one per feed, not per reader).
    assert programme.operator.get("/venues/" + programme.venue_id).json()["calendar_url"] == feeds["venue"]
    # Behind a proxy, the URL starts with PUBLIC_URL.
    nameko.config["PUBLIC_URL"] = "https://daotao-ai.example.gov.vn/"
    shown = programme.siu.get("/sessions/" + feeds["session"]["id"]).json()["calendar_url"]
    assert shown == feeds["session_feed"].replace(base, "https://daotao-ai.example.gov.vn")


def test_only_the_partners_a_feed_is_about_get_its_url(programme, operator, feeds):
    vnu = operator.as_(operator.post("/partners", {"code": "VNU", "name": "Đại học Quốc gia TP.HCM",
                                                   "kind": "university", "contact_email": "hoptac@vnuhcm.edu.vn"}
                                     ).json()["api_key"])
    # SIU delivers the session but does not host the venue, whose feed shows every partner's sessions.
    assert programme.siu.get("/venues/" + programme.venue_id).json()["calendar_url"] is None
    assert programme.buh.get("/sessions/" + feeds["session"]["id"]).json()["calendar_url"] == feeds["session_feed"]
    assert vnu.get("/sessions/" + feeds["session"]["id"]).json()["calendar_url"] is None
    assert vnu.get("/venues/" + programme.venue_id).json()["calendar_url"] is None
    assert_error(vnu.get("/partners/" + programme.siu_id), 403, "forbidden")


def test_an_api_key_or_the_operator_token_in_the_url_is_refused_on_every_feed(programme, anonymous, feeds):
    targets = (programme.siu_id, programme.venue_id, feeds["session"]["id"])
    for path, target in zip(FEEDS, targets):
        for key in (programme.operator.token, programme.siu.token, programme.buh.token, "", "feed_", "feed_x" * 8):
            refused = anonymous.get(path.format(target) + "?token=" + key)
            assert_error(refused, 401, "unauthenticated")
    # Not even next to a good header: whatever is in the URL is what is judged.
    assert_error(programme.siu.get(FEEDS[0].format(programme.siu_id) + "?token=" + programme.siu.token),
                 401, "unauthenticated")


def test_a_feed_token_as_a_bearer_token_is_refused_everywhere(programme, feeds, operator):
    as_feed = operator.as_(token_of(feeds["partner"]))
    for method, path in (("GET", "/partners/" + programme.siu_id), ("GET", "/sessions"),
                         ("GET", "/sessions/" + feeds["session"]["id"]), ("GET", "/venues"),
                         ("GET", FEEDS[0].format(programme.siu_id)),
                         ("GET", "/sessions/{}/registrations".format(feeds["session"]["id"])),
                         ("POST", "/offerings"), ("POST", "/partners/{}/calendar/rotate".format(programme.siu_id)),
                         ("GET", "/notifications")):
        assert_error(as_feed.request(method, path, json={}), 401, "unauthenticated")


def test_a_feed_token_opens_its_own_feed_and_no_other(programme, operator, feeds):
    other_session = programme.scheduled(room=LAB, capacity=40, trainer="B")
    other_venue = operator.post("/venues", {"name": "Trường Đại học Quốc tế Sài Gòn", "address": "8C Tống Hữu Định",
                                            "host_partner_id": programme.siu_id,
                                            "rooms": [{"name": "P.201", "capacity": 60}]}).json()
    paths = {"partner": [FEEDS[0].format(programme.buh_id)],
             "venue": [FEEDS[1].format(other_venue["id"])],
             "session_feed": [FEEDS[2].format(other_session["id"])]}
    for name in ("partner", "venue", "session_feed"):
        token = token_of(feeds[name])
        own = urlsplit(feeds[name]).path
        wrong = [urlsplit(feeds[other]).path for other in ("partner", "venue", "session_feed") if other != name]
        for path in wrong + paths[name]:
            assert path != own
            assert_error(requests.get(programme.operator.base_url + path, params={"token": token}, timeout=10),
                         401, "unauthenticated")


def test_rotating_a_feed_ends_its_old_url_at_once(programme, feeds, operator, anonymous):
    old = feeds["partner"]
    rotated = programme.siu.post("/partners/{}/calendar/rotate".format(programme.siu_id))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["calendar_url"]
    assert new != old and urlsplit(new).path == urlsplit(old).path
    assert_error(requests.get(old, timeout=10), 401, "unauthenticated")
    assert events(requests.get(new, timeout=10))
    assert programme.siu.get("/partners/" + programme.siu_id).json()["calendar_url"] == new

    # The other feeds about the same session are not touched.
    assert events(requests.get(feeds["venue"], timeout=10)) and events(requests.get(feeds["session_feed"], timeout=10))

    # Who may rotate what: the operator anything; a partner its own feed, the venue it hosts, a
    # session it delivers or hosts.
    session_id = feeds["session"]["id"]
    assert programme.buh.post("/venues/{}/calendar/rotate".format(programme.venue_id)).status_code == 200
    assert_error(programme.siu.post("/venues/{}/calendar/rotate".format(programme.venue_id)), 403, "forbidden")
    assert programme.siu.post("/sessions/{}/calendar/rotate".format(session_id)).status_code == 200
    assert programme.buh.post("/sessions/{}/calendar/rotate".format(session_id)).status_code == 200
    assert_error(programme.buh.post("/partners/{}/calendar/rotate".format(programme.siu_id)), 403, "forbidden")
    assert operator.post("/partners/{}/calendar/rotate".format(programme.buh_id)).status_code == 200
    assert_error(anonymous.post("/sessions/{}/calendar/rotate".format(session_id)), 401, "unauthenticated")
    assert_error(operator.post("/venues/venue-0/calendar/rotate"), 404, "not_found")
    assert_error(operator.post("/sessions/session-0/calendar/rotate"), 404, "not_found")
    assert_error(operator.post("/partners/partner-0/calendar/rotate"), 404, "not_found")
    assert_error(requests.get(feeds["venue"], timeout=10), 401, "unauthenticated")
    assert_error(requests.get(feeds["session_feed"], timeout=10), 401, "unauthenticated")


def test_a_feed_url_with_anything_else_in_its_query_is_refused_once_the_token_is_known(programme, feeds, anonymous):
    assert_error(requests.get(feeds["venue"] + "&colour=red", timeout=10), 422, "invalid_fields")
    # An unknown caller learns nothing more than 401.
    assert_error(anonymous.get(FEEDS[1].format(programme.venue_id) + "?colour=red"), 401, "unauthenticated")


def test_the_feed_query_is_in_the_api_document(anonymous):
    paths = anonymous.get("/openapi.json").json()["paths"]
    for path in ("/partners/{partner_id}/calendar.ics", "/venues/{venue_id}/calendar.ics",
                 "/sessions/{session_id}/calendar.ics"):
        feed = paths[path]["get"]
        assert [p["name"] for p in feed["parameters"] if p["in"] == "query"] == ["token"]
        assert {} in feed["security"] and "401" in feed["responses"]
    for path in ("/partners/{partner_id}/calendar/rotate", "/venues/{venue_id}/calendar/rotate",
                 "/sessions/{session_id}/calendar/rotate"):
        assert paths[path]["post"]["security"] == [{"bearer": []}]
