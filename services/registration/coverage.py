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


# -- the read model: what each official adds to counters per unit, group and day -------------------------------
#
# Coverage at 500,000 registrations is read from counters, never recounted per request. Each
# official's share of the counters (`contribution`) is worked out from their own registrations and
# kept beside the counters; a change to an official (a registration, a cancellation, a check-in, a
# move) works their share out again and adds the difference. Counters per (unit, group, month) carry
# each day's changes, so "as of a day" and the month series are sums of what came before.

STAFF = "staff"
# Every change of a (unit, group) also adds to its running total: coverage as of today reads the
# totals (one counter per unit and group), not every month of the programme.
TOTAL = "total"
# ... and to the city's counter of its month: the month series reads one counter per month.
CITY = "*"


def _day(instant, local_date):
    day = local_date(instant)
    return "{:04d}-{:02d}".format(day.year, day.month), "{:02d}".format(day.day)


def contribution(official, registrations, local_date):
    """{bucket key: [registered, attended, trained]} that `official` adds: +1/-1 registered on the
    local days their standing registrations go from none to some and back, +1 attended on the day of
    their first check-in, +1 trained on the day of their first completion; and [1, 0, 0] under the
    (unit, group) staff key. Keys: (unit, group, month, day) and (unit, group, STAFF, "")."""
    unit, group = official["unit_code"], official["audience_group"]
    out = {(unit, group, STAFF, ""): [1, 0, 0]}

    def add(instant, i, n):
        month, day = _day(instant, local_date)
        out.setdefault((unit, group, month, day), [0, 0, 0])[i] += n

    changes = defaultdict(int)  # local day -> standing registrations gained (or lost) that day
    for registration in registrations:
        changes[_day(registration["created_at"], local_date)] += 1
        if registration["status"] == "cancelled" and registration.get("cancelled_at"):
            changes[_day(registration["cancelled_at"], local_date)] -= 1
    standing = 0
    for month, day in sorted(changes):
        before, standing = standing, standing + changes[(month, day)]
        if (before > 0) != (standing > 0):
            out.setdefault((unit, group, month, day), [0, 0, 0])[0] += 1 if standing > 0 else -1
    checkins = [r["first_checkin_at"] for r in registrations if r.get("first_checkin_at")]
    if checkins:
        add(min(checkins), 1, 1)
    completions = [r["completed_at"] for r in registrations if r.get("completed_at")]
    if completions:
        add(min(completions), 2, 1)
    for (unit_, group_, month, day), counts in list(out.items()):
        if day:
            for key in ((unit_, group_, TOTAL, ""), (CITY, CITY, month, day)):
                total = out.setdefault(key, [0, 0, 0])
                for i in range(3):
                    total[i] += counts[i]
    return {key: counts for key, counts in out.items() if any(counts)}


def officials_changed(events):
    """The officials whose registrations these events of registration's changed: each names its
    official (`official.id`, or `official_id` for attendance and erasure); the others none."""
    out = set()
    for event in events:
        payload = event.get("payload") or {}
        official = payload.get("official_id") or (payload.get("official") or {}).get("id")
        if official:
            out.add(official)
    return out


def difference(old, new):
    """What to add to the counters to go from contribution `old` to `new`."""
    out = {}
    for key in set(old) | set(new):
        width = len(old.get(key) or new.get(key))
        delta = [b - a for a, b in zip(old.get(key, [0] * width), new.get(key, [0] * width))]
        if any(delta):
            out[key] = delta
    return out


def bucket_key(unit, group, month):
    return "{}|{}|{}".format(unit, group, month)


def report_from_counters(by, counters, units, targets, as_of_month, as_of_day, months=(), scope=None):
    """The same answer as `report` for unit, audience_group or month, from the read model's
    counters: [{unit, group, month, totals: [r, a, t], days: {dd: [r, a, t]}}] (staff under month
    STAFF). `months`: the (label, last day "YYYY-MM-DD") of each month for `by=month`. `scope`: a
    coordinator's units (None: every unit), whose counters alone count."""
    roster = defaultdict(int)
    done = defaultdict(lambda: [0, 0, 0])
    series = defaultdict(lambda: [0, 0, 0])  # month -> the month's own changes, all units
    if scope is None:
        # The city's counters serve the month series alone; the units' counters everything else.
        counters = [c for c in counters if (c["unit"] == CITY) == (by == "month") or c["month"] == STAFF]
    else:
        # A coordinator's month series is summed from its units' months (the city's counts them all).
        counters = [c for c in counters if c["unit"] in scope]
        units = {code: unit for code, unit in units.items() if code in scope}
    if by != "month" and any(c["month"] == TOTAL for c in counters):
        # As of a day from the running totals: less what changed after that day.
        for counter in counters:
            key, month = (counter["unit"], counter["group"]), counter["month"]
            if month == STAFF:
                roster[key] += counter["totals"][0]
            elif month == TOTAL:
                found = counter["totals"]
            elif month == as_of_month:
                found = [-sum(counts[i] for day, counts in (counter.get("days") or {}).items() if day > as_of_day)
                         for i in range(3)]
            elif month > as_of_month:
                found = [-n for n in counter["totals"]]
            else:
                continue
            if month != STAFF:
                for i in range(3):
                    done[key][i] += found[i]
        counters = ()
    for counter in counters:
        key = (counter["unit"], counter["group"])
        if counter["month"] == STAFF:
            roster[key] += counter["totals"][0]
            continue
        month = counter["month"]
        if month == TOTAL:
            continue
        if month < as_of_month:
            found = counter["totals"]
        elif month == as_of_month:
            found = [sum(counts[i] for day, counts in (counter.get("days") or {}).items() if day <= as_of_day)
                     for i in range(3)]
        else:
            continue
        for i in range(3):
            done[key][i] += found[i]
            series[month][i] += found[i]
    staff = {k: n for k, n in roster.items() if n}
    for code, unit in units.items():
        for group, declared in (unit.get("headcount") or {}).items():
            staff[(code, group)] = max(declared, roster.get((code, group), 0))
    counts = {k: v for k, v in done.items()}
    total_staff = sum(staff.values())
    total_counts = [sum(c[i] for c in counts.values()) for i in range(3)]
    total_target = sum(n * targets[g] for (_, g), n in staff.items() if g in targets) if targets else None
    totals = row("total", "Toàn chương trình", total_staff, total_counts, total_target)
    if by == "unit":
        items = [row(code, (units.get(code) or {}).get("name", code),
                     sum(n for (c, _), n in staff.items() if c == code),
                     [sum(v[i] for (c, _), v in counts.items() if c == code) for i in range(3)],
                     sum(n * targets[g] for (c, g), n in staff.items() if c == code and g in targets))
                 for code in sorted({code for code, _ in staff})]
    elif by == "audience_group":
        items = [row(g, g, sum(n for (_, gg), n in staff.items() if gg == g),
                     [sum(v[i] for (_, gg), v in counts.items() if gg == g) for i in range(3)],
                     sum(n for (_, gg), n in staff.items() if gg == g) * targets[g] if g in targets else None)
                 for g in sorted({g for _, g in staff})]
    else:
        items, running, ordered = [], [0, 0, 0], sorted(series)
        for label, _ in months:
            for month in [m for m in ordered if m <= label]:
                for i in range(3):
                    running[i] += series[month][i]
            ordered = [m for m in ordered if m > label]
            items.append(row(label, label, total_staff, list(running), total_target))
    return {"items": items, "totals": totals}
