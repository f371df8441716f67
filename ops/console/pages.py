"""What each console page shows, gathered from the services by RPC (each asked with a short timeout:
a page of a service that is down says so instead of failing)."""
from collections import Counter
from datetime import date, datetime, timezone

from backbone.auth import OPERATOR
from backbone.clock import local_date
from ops import fleet
from ops.console import charts


def overview(gateway):
    healthy, services, details = fleet.health(gateway)
    queues = [q for d in details.values() for q in d.get("queues", [])]
    letters = fleet.dead_letters(gateway, OPERATOR, status="parked")
    dead_counts = Counter(d["consumer"] for d in letters["items"])
    dead_counts = {name: dead_counts.get(name, 0) for name in fleet.services() if name not in letters["unavailable"]}
    return {"healthy": healthy, "services": services, "details": details, "queues": queues,
            "dead_counts": dead_counts}


def dead_letters(gateway, replayed=None):
    letters = fleet.dead_letters(gateway, OPERATOR)
    kinds = Counter((d["consumer"], d["event_type"]) for d in letters["items"]
                    if d["status"] == "parked" and d["event_type"])
    return {"items": letters["items"], "unavailable": letters["unavailable"], "kinds": dict(kinds),
            "replayed": replayed}


def sessions(gateway):
    """Upcoming scheduled sessions with seats taken and waitlist (registration), and check-ins when
    registration reports them."""
    now = datetime.now(timezone.utc)
    listed = fleet.ask_all(gateway, lambda s: s.list_sessions(OPERATOR, {"status": "scheduled", "limit": 200}),
                         ("scheduling",))["scheduling"] or {"items": []}
    upcoming = [s for s in listed["items"] if s.get("starts_at") and s["starts_at"] >= now]
    seats = fleet.ask_all(gateway, lambda r: [r.seats(s["id"]) for s in upcoming], ("registration",))["registration"]
    attended = _attended_per_session(gateway)
    for session, numbers in zip(upcoming, seats or [{}] * len(upcoming)):
        session.update(seats_taken=numbers.get("seats_taken"), waitlist_length=numbers.get("waitlist_length"),
                       checked_in=None if attended is None else attended.get(session["id"], 0))
    return {"items": upcoming}


def _attended_per_session(gateway):
    """{session id: officials who checked in}, from registration's per-session report; None if it
    does not answer."""
    report = fleet.ask_all(gateway, lambda r: r.report(OPERATOR, "session", {}), ("registration",),
                         timeout=5)["registration"]
    if not report or "attended" not in report.get("columns", []):
        return None
    column = report["columns"].index("attended")
    return {row[0]: row[column] for row in report["rows"]}


def _notices(client, filters, pages=20):
    """Notices in the log, page after page (at most `pages` of 200)."""
    found, cursor = [], None
    for _ in range(pages):
        answer = client.list_notices(OPERATOR, dict(filters, limit=200, **({"cursor": cursor} if cursor else {})))
        if isinstance(answer, list):  # an unpaged log
            return answer
        found += answer["items"]
        cursor = answer.get("next_cursor")
        if not cursor:
            break
    return found


def notifications(gateway, outcome=""):
    """Delivery by channel and status, and the latest notices that failed or wait for a retry."""
    def gather(client):
        return {"all": _notices(client, {}, 50),
                "failing": _notices(client, {"status": "failed"}, 5) + _notices(client, {"status": "retrying"}, 5)}
    answer = fleet.ask_all(gateway, gather, ("notifications",), timeout=5)["notifications"]
    counts = Counter((n["channel"], n["status"]) for n in (answer or {}).get("all", []))
    failing = sorted((answer or {}).get("failing", []), key=lambda n: str(n.get("created_at")), reverse=True)
    return {"counts": dict(sorted(counts.items())), "failures": failing[:50], "unavailable": answer is None,
            "outcome": outcome}


# The console lists the agreements whose last day is at most this many local days away (the first
# warning to partner and operators goes 60 days before).
ENDING_WITHIN_DAYS = 60


def partners(gateway):
    """Partners with their agreements (partners), and the agreements about to end with the warnings
    sent for them (scheduling)."""
    def gather(client):
        found = client.list_partners(OPERATOR, {"limit": 200})["items"]
        for partner in found:
            partner["agreements"] = client.list_agreements(OPERATOR, partner["id"], {"limit": 200})["items"]
        return found
    found = fleet.ask_all(gateway, gather, ("partners",), timeout=5)["partners"] or []
    warnings = fleet.ask_all(gateway, lambda client: client.ending_agreements(
        OPERATOR, {"within_days": ENDING_WITHIN_DAYS}), ("scheduling",), timeout=5)["scheduling"]
    return {"partners": found, "ending": ending_agreements(found, warnings, local_date()),
            "warnings_unavailable": warnings is None, "within_days": ENDING_WITHIN_DAYS}


def ending_agreements(partners, warnings, today, within=ENDING_WITHIN_DAYS):
    """The agreements that have not ended and whose last day is at most `within` days after `today`,
    soonest first: from partners' records (what they say is the agreement), with what scheduling
    says of each (`warnings`: its ending_agreements answer, or None): the warnings sent for that end,
    and the agreement that follows without a gap."""
    said = {item["agreement_id"]: item for item in (warnings or {}).get("items", [])}
    rows = []
    for partner in partners:
        titles = {a["id"]: a["title"] for a in partner.get("agreements") or []}
        for agreement in partner.get("agreements") or []:
            if agreement["status"] == "expired":
                continue
            days_left = (date.fromisoformat(agreement["valid_until"]) - today).days
            if not 0 <= days_left <= within:
                continue
            known = said.get(agreement["id"])
            rows.append({"partner": partner["name"], "code": partner["code"], "agreement_id": agreement["id"],
                         "title": agreement["title"], "last_day": agreement["valid_until"], "days_left": days_left,
                         "warned": known["warned"] if known else None,
                         "renewal": titles.get(known["renewal_id"]) if known and known["renewal_id"] else None})
    return sorted(rows, key=lambda row: (row["days_left"], row["code"], row["agreement_id"]))


COVERAGE_VIEWS = ("unit", "audience_group", "month", "partner")


def coverage_report(gateway, as_of=None):
    """The coverage report of the programme as of `as_of` (a date, today when None), every view of
    it: {view: the registration service's answer}, partners named; None when registration does
    not answer."""
    query = {"as_of": as_of.isoformat()} if as_of else {}

    def gather(client):
        return {by: client.coverage(OPERATOR, dict(query, by=by)) for by in COVERAGE_VIEWS}
    found = fleet.ask_all(gateway, gather, ("registration",), timeout=15)["registration"]
    if found is None:
        return None
    names = fleet.ask_all(gateway, lambda p: {x["id"]: x["name"] for x in p.list_partners(
        OPERATOR, {"limit": 200})["items"]}, ("partners",), timeout=5)["partners"] or {}
    for item in found["partner"]["items"]:
        item["name"] = names.get(item["key"], item["name"])
    return found


def active_units(gateway):
    """Today's units (the registration service's list, page by page)."""
    def gather(client):
        found, cursor = [], None
        while True:
            page = client.list_units(OPERATOR, dict({"status": "active", "limit": 200},
                                                    **({"cursor": cursor} if cursor else {})))
            found += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return found
    return fleet.ask_all(gateway, gather, ("registration",), timeout=10)["registration"] or []


def coverage(gateway, as_of=None):
    report = coverage_report(gateway, as_of)
    if report is None:
        return {"report": None, "as_of": as_of}
    programme = report["unit"].get("programme") or {}
    starts = date.fromisoformat(programme["starts_on"]) if programme.get("starts_on") else None
    asked = date.fromisoformat(report["unit"]["as_of"])
    quarters = charts.quarter_ends(starts, asked) if starts else []
    lowest = sorted((r for r in report["unit"]["items"] if r["staff"]), key=lambda r: (r["coverage"] or 0, r["name"]))
    rows = {r["key"]: r for r in report["unit"]["items"]}
    apart = [dict(rows.get(u["code"]) or {"staff": 0, "coverage": None}, name=u["name"])
             for u in active_units(gateway) if u["kind"] in COMMUNE_LEVEL and not on_the_map(u)]
    return {"report": report, "programme": programme, "as_of": asked, "quarters": quarters, "units": lowest,
            "apart": apart}


COMMUNE_LEVEL = ("ward", "commune", "special_zone")


def on_the_map(unit):
    """Drawn on the coverage map: a commune-level unit with a position, except the special zone Côn
    Đảo, 180 km out to sea (drawn, it would leave the city a strip at the top of the picture)."""
    return unit["kind"] in ("ward", "commune") and bool(unit.get("position"))
