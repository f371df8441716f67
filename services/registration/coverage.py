"""Coverage for leaders: what share of each unit's officials has been trained, against the
programme's targets. Pure: it counts what it is given (store.py reads it).

- `staff`: a unit's officials on its roster, or its declared headcount when that is larger (not all
  staff imported yet), per audience group;
- `registered`: officials with a registration standing on the day (made by then, not cancelled by
  then); `attended`: officials checked in to at least one part by then; `trained`: officials who
  completed at least one course by then (an official counts once, however many courses);
- `coverage`: trained / staff; `target`: the programme's share for the group (for a unit, the
  share its groups' targets add up to); `gap`: officials still to train to reach the target.
"""
import math
from collections import defaultdict
from datetime import date

GROUPINGS = ("unit", "audience_group", "partner", "month")
COLUMNS = ("key", "name", "staff", "trained", "coverage", "registered", "attended", "target", "gap")


def stands(registration, day_end):
    """Made by `day_end` and not cancelled by then."""
    if registration["created_at"] > day_end:
        return False
    cancelled = registration.get("cancelled_at")
    return registration["status"] != "cancelled" or (cancelled is not None and cancelled > day_end)


def progress(registrations, day_end):
    """{official id: (registered, attended, trained)} as things stood at `day_end`."""
    out = defaultdict(lambda: [False, False, False])
    for registration in registrations:
        flags = out[registration["official_id"]]
        if stands(registration, day_end):
            flags[0] = True
        checked_in = registration.get("first_checkin_at")
        if checked_in is not None and checked_in <= day_end:
            flags[1] = True
        completed = registration.get("completed_at")
        if completed is not None and completed <= day_end:
            flags[2] = True
    return out


def staff_of(units, officials):
    """{(unit code, group): staff}: the roster, or the declared headcount when larger."""
    roster = defaultdict(int)
    for official in officials:
        roster[(official["unit_code"], official["audience_group"])] += 1
    staff = dict(roster)
    for code, unit in units.items():
        for group, declared in (unit.get("headcount") or {}).items():
            staff[(code, group)] = max(declared, roster.get((code, group), 0))
    return staff


def row(key, name, staff, counts, target_people):
    registered, attended, trained = counts
    target = round(target_people / staff, 4) if staff and target_people is not None else None
    return {"key": key, "name": name, "staff": staff, "trained": trained,
            "coverage": round(trained / staff, 4) if staff else None, "registered": registered,
            "attended": attended, "target": target,
            "gap": max(0, math.ceil(target_people - 1e-9) - trained) if target_people is not None else None}


def report(by, officials, registrations, units, targets, day_end, sessions=None, partners=None, months=()):
    """{"items": rows, "totals": row} of coverage `by` unit, audience_group, partner or month.
    `targets`: {group: share}; `sessions`: {id: partner id}; `partners`: {id: name}; `months`: the
    (label, end instant) of each month for `by=month`."""
    officials = list(officials)
    staff = staff_of(units, officials)
    done = progress(registrations, day_end)
    counts = defaultdict(lambda: [0, 0, 0])
    for official in officials:
        flags = done.get(official["_id"], (False, False, False))
        for i, flag in enumerate(flags):
            counts[(official["unit_code"], official["audience_group"])][i] += flag
    total_staff = sum(staff.values())
    total_counts = [sum(c[i] for c in counts.values()) for i in range(3)]
    total_target = sum(n * targets[g] for (_, g), n in staff.items() if g in targets) if targets else None
    totals = row("total", "Toàn chương trình", total_staff, total_counts, total_target)
    if by == "unit":
        keys = sorted({code for code, _ in staff})
        items = [row(code, (units.get(code) or {}).get("name", code),
                     sum(n for (c, _), n in staff.items() if c == code),
                     [sum(v[i] for (c, _), v in counts.items() if c == code) for i in range(3)],
                     sum(n * targets[g] for (c, g), n in staff.items() if c == code and g in targets))
                 for code in keys]
    elif by == "audience_group":
        groups = sorted({g for _, g in staff})
        items = [row(g, g, sum(n for (_, gg), n in staff.items() if gg == g),
                     [sum(v[i] for (_, gg), v in counts.items() if gg == g) for i in range(3)],
                     sum(n for (_, gg), n in staff.items() if gg == g) * targets[g] if g in targets else None)
                 for g in groups]
    elif by == "partner":
        by_partner = defaultdict(lambda: defaultdict(lambda: [False, False, False]))
        for registration in registrations:
            partner = (sessions or {}).get(registration["session_id"])
            flags = progress([registration], day_end)[registration["official_id"]]
            mine = by_partner[partner][registration["official_id"]]
            for i in range(3):
                mine[i] = mine[i] or flags[i]
        items = [row(p, (partners or {}).get(p, p), total_staff,
                     [sum(f[i] for f in by_partner[p].values()) for i in range(3)], None)
                 for p in sorted(by_partner, key=str) if p]
    else:
        items = []
        for label, end in months:
            month_done = progress(registrations, end)
            month_counts = [sum(1 for o in officials if month_done.get(o["_id"], (0, 0, 0))[i]) for i in range(3)]
            items.append(row(label, label, total_staff, month_counts, total_target))
    return {"items": items, "totals": totals}


def within(scope, officials, units, registrations):
    """What coverage counts for a coordinator: the officials of its units (`scope`), those units, and
    those officials' registrations."""
    officials = [o for o in officials if o["unit_code"] in scope]
    mine = {o["_id"] for o in officials}
    return (officials, {code: unit for code, unit in units.items() if code in scope},
            [r for r in registrations if r["official_id"] in mine])


def month_ends(first, last, end_of):
    """(`2025-03`, the end of that month) for each month from `first` to `last` (dates); `end_of`
    turns a date into the instant its day ends."""
    out, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        following = date(year + month // 12, month % 12 + 1, 1)
        end_day = min(date.fromordinal(following.toordinal() - 1), last)
        out.append(("{:04d}-{:02d}".format(year, month), end_of(end_day)))
        year, month = following.year, following.month
    return out
