"""Operators' reports: registered, attended and completed per session, unit, district or partner.
Counted in Python from one pass over the registrations (no server-side aggregation: SecantusDB's
is not the fast path, and these are operator reports, not hot paths).

Units two ways: `now`, each registration under the unit of today its unit became (a dissolved unit
rolls up to its first successor, transitively), or `then`, under the unit it was made under."""
from collections import defaultdict

from services.registration import rules

GROUPINGS = ("session", "unit", "district", "partner")
COUNTS = ("registered", "confirmed", "waitlisted", "cancelled", "attended", "completed")


def rolled_up(code, units):
    """The unit of today a unit became: itself if active, else its first successor's, transitively."""
    seen = set()
    while code in units and rules.is_dissolved(units[code]) and code not in seen:
        seen.add(code)
        successors = rules.successors_of(units[code])
        if not successors:
            break
        code = successors[0]
    return code


def build(db, by, units_as_of="now", scope=None):
    """The report `by` session, unit, district or partner; `scope`: a coordinator's units (None:
    every registration), whose registrations alone are counted (by the unit each was made under or
    is under now)."""
    units = {u["_id"]: u for u in db.units.find({}, {"name": 1, "kind": 1, "parent_code": 1, "status": 1,
                                                       "successors": 1, "merged_into": 1})}
    sessions = {s["_id"]: s for s in db.sessions.find({}, {"title": 1, "starts_at": 1, "partner_id": 1})}

    def district(code):
        unit = units.get(code) or {}
        if unit.get("kind") in ("ward", "ward_commune") and unit.get("parent_code"):
            return unit["parent_code"]
        return code

    def unit_of(registration):
        if units_as_of == "then":
            return registration.get("unit_code_then") or registration["unit_code"]
        return rolled_up(registration["unit_code"], units)

    def key_of(registration):
        if by == "session":
            return registration["session_id"]
        if by == "unit":
            return unit_of(registration)
        if by == "district":
            return district(unit_of(registration))
        return (sessions.get(registration["session_id"]) or {}).get("partner_id")

    rows = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    for registration in db.registrations.find({}, {"session_id": 1, "unit_code": 1, "unit_code_then": 1,
                                                      "status": 1, "attended_parts": 1}):
        if scope is not None and registration["unit_code"] not in scope:
            continue
        counts = rows[key_of(registration)]
        status = registration["status"]
        if status in ("confirmed", "waitlisted", "cancelled"):
            counts[status] += 1
        if status != "cancelled":
            counts["registered"] += 1
        if registration.get("attended_parts"):
            counts["attended"] += 1
        if status == "completed":
            counts["completed"] += 1

    def label(key):
        if by == "session":
            session = sessions.get(key) or {}
            return session.get("title", "")
        if by in ("unit", "district"):
            return (units.get(key) or {}).get("name", "")
        return ""

    columns = [by, "name"] + list(COUNTS)
    out = []
    for key in sorted(rows, key=lambda k: str(k)):
        out.append([key, label(key)] + [rows[key][c] for c in COUNTS])
    return {"columns": columns, "rows": out}


# -- the read model: counts per session, and per (unit, unit then, partner) ---------------------------------------

def counts_of(registration):
    """What one registration adds to each of COUNTS."""
    status = registration["status"]
    return [int(status != "cancelled"), int(status == "confirmed"), int(status == "waitlisted"),
            int(status == "cancelled"), int(bool(registration.get("attended_parts"))), int(status == "completed")]


def share(registrations, partner_of):
    """{counter key: counts} that an official's `registrations` add to the report counters: under
    ("session", id), ("session_unit", id, unit now) and ("units", unit now, unit then, partner).
    `partner_of`: {session id: partner id}. A coordinator's report reads the last two, limited to its
    units (`counter_unit`); the operator's by session the first (one counter a session, not one per unit)."""
    out = {}
    for registration in registrations:
        counts = counts_of(registration)
        for key in (("session", registration["session_id"]),
                    ("session_unit", registration["session_id"], registration["unit_code"]),
                    ("units", registration["unit_code"], registration.get("unit_code_then") or registration["unit_code"],
                     partner_of.get(registration["session_id"]) or "")):
            have = out.setdefault(key, [0] * len(COUNTS))
            for i, n in enumerate(counts):
                have[i] += n
    return out


def counter_unit(key):
    """The registrations' unit (as they are now) that a report counter's key counts (None: every unit's)."""
    if key[0] == "session":
        return None
    return key[2] if key[0] == "session_unit" else key[1]


def build_from_counters(by, counters, units, sessions, units_as_of="now"):
    """The same table as `build`, from the read model's counters ({"key": [...], "counts": [...]})."""
    def district(code):
        unit = units.get(code) or {}
        if unit.get("kind") in ("ward", "ward_commune") and unit.get("parent_code"):
            return unit["parent_code"]
        return code

    rows = defaultdict(lambda: [0] * len(COUNTS))
    for counter in counters:
        key = counter["key"]
        if (by == "session") != key[0].startswith("session"):
            continue
        if by == "session":
            grouped = key[1]
        else:
            unit = key[2] if units_as_of == "then" else rolled_up(key[1], units)
            grouped = {"unit": unit, "district": district(unit), "partner": key[3] or None}[by]
        for i, n in enumerate(counter["counts"]):
            rows[grouped][i] += n

    def label(key):
        if by == "session":
            return (sessions.get(key) or {}).get("title", "")
        if by in ("unit", "district"):
            return (units.get(key) or {}).get("name", "")
        return ""

    return {"columns": [by, "name"] + list(COUNTS),
            "rows": [[key, label(key)] + rows[key] for key in sorted(rows, key=lambda k: str(k)) if any(rows[key])]}
