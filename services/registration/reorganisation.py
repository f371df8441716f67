"""A reorganisation of units as data (the 2025 reform is one): which units are dissolved into which,
checked as a whole before anything is written. Pure: no database.

One change has one shape: several units merged into one (a new unit, or an existing one that
absorbs them), one unit renamed (a new code), or one unit split into several. A plan is refused with
422 naming the change (`changes.<n>`) when a unit is unknown or already dissolved, when a unit is
in two changes, when a unit dissolved by the plan is also made by it (a chain or a cycle), when a
new code is taken, or when a split places an official in a unit it does not make.
"""
from backbone.errors import DomainError, invalid

MERGE, ABSORB, RENAME, SPLIT = "merge", "absorb", "rename", "split"


def refused(index, field, message):
    return DomainError("invalid_reorganization", "Change {}: {}".format(index, message),
                       {"changes": {str(index): {field: [message]}}}, 422)


def is_active(unit):
    return unit is not None and unit.get("status", "active") == "active"


def plan(changes, units):
    """The checked plan: one entry per change, {"index", "kind", "from", "into" (the new units'
    fields), "officials" ({official id: code}), "default"}. `units`: {code: unit} of every code the
    changes name."""
    dissolved, made = {}, {}
    out = []
    for index, change in enumerate(changes):
        olds = list(dict.fromkeys(change["from_"]))
        news = change["into"]
        codes = [n["code"] for n in news]
        if len(set(codes)) != len(codes):
            raise refused(index, "into", "A code is made twice.")
        if len(olds) > 1 and len(news) > 1:
            raise refused(index, "into", "One change merges units or splits one, not both: make it two changes.")
        for code in olds:
            if code in dissolved:
                raise refused(index, "from", "{} is also dissolved by change {}.".format(code, dissolved[code]))
            if code not in units or units[code] is None:
                raise refused(index, "from", "No unit {}.".format(code))
            if not is_active(units[code]):
                raise refused(index, "from", "{} was dissolved already.".format(code))
            dissolved[code] = index
        for code in codes:
            if code in made:
                raise refused(index, "into", "{} is also made by change {}.".format(code, made[code]))
            made[code] = index
        kind = SPLIT if len(news) > 1 else (MERGE if len(olds) > 1 else RENAME)
        if len(news) == 1 and units.get(codes[0]) is not None:
            if not is_active(units[codes[0]]) or codes[0] in olds:
                raise refused(index, "into", "{} exists already and cannot take these units.".format(codes[0]))
            kind = ABSORB
        else:
            for code in codes:
                if units.get(code) is not None:
                    raise refused(index, "into", "{} exists already.".format(code))
        placed = dict(change.get("officials") or {})
        default = change.get("default")
        if kind != SPLIT and (placed or default):
            raise refused(index, "officials", "Only a split places officials: the others move as a whole.")
        for official_id, code in placed.items():
            if code not in codes:
                raise refused(index, "officials", "{} is placed in {}, which this change does not make.".format(
                    official_id, code))
        if default is not None and default not in codes:
            raise refused(index, "default", "{} is not made by this change.".format(default))
        first = units[olds[0]]
        into = [dict({"kind": first.get("kind"), "parent_code": first.get("parent_code")}, **{
            k: v for k, v in new.items() if v is not None}) for new in news]
        out.append({"index": index, "kind": kind, "from": olds, "into": into, "officials": placed,
                    "default": default if kind == SPLIT else codes[0]})
    for code, index in dissolved.items():
        if code in made:
            raise refused(index, "from", "{} is both dissolved and made by this plan (a chain or a cycle): "
                                         "make it two reorganisations.".format(code))
    return out


def where_officials_go(step, officials):
    """For one step: {official id: new code} of the officials of its old units, and the ids it cannot
    place (a split without a rule for them: they wait for their coordinator)."""
    placed, unplaced = {}, []
    for official in officials:
        code = step["officials"].get(official["_id"]) or step["default"]
        if code:
            placed[official["_id"]] = code
        else:
            unplaced.append(official["_id"])
    return placed, unplaced


def eligible_after(eligible, steps):
    """A session's eligible units after the plan: each dissolved unit stands for what it became."""
    became = {old: [u["code"] for u in step["into"]] for step in steps for old in step["from"]}
    out = []
    for code in eligible:
        for new in became.get(code, [code]):
            if new not in out:
                out.append(new)
    return out


def require_known_officials(step, found):
    """Every official a split places is one of the split unit's officials."""
    strangers = sorted(set(step["officials"]) - set(found))
    if strangers:
        raise invalid({"changes": {str(step["index"]): {"officials": [
            "Not officials of {}: {}.".format(", ".join(step["from"]), ", ".join(strangers[:20]))]}}})
