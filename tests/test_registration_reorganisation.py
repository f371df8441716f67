"""A reorganisation of units is checked as a whole before anything is written (pure rules)."""
import pytest

from backbone.errors import DomainError
from services.registration import reorganisation

UNITS = {
    "NTB": {"code": "NTB", "name": "Phường Nguyễn Thái Bình", "kind": "ward", "parent_code": "Q1", "status": "active"},
    "BN": {"code": "BN", "name": "Phường Bến Nghé", "kind": "ward", "parent_code": "Q1", "status": "active"},
    "BT": {"code": "BT", "name": "Phường Bến Thành", "kind": "ward", "parent_code": "Q1", "status": "active"},
    "OLD": {"code": "OLD", "name": "Phường Cũ", "kind": "ward", "status": "dissolved"},
    "26743": {"code": "26743", "name": "Phường Bến Thành", "kind": "ward", "status": "active"},
}


def change(olds, news, **extra):
    return dict({"from_": olds, "into": [{"code": c, "name": "Phường " + c} for c in news]}, **extra)


def refusal(changes):
    with pytest.raises(DomainError) as raised:
        reorganisation.plan(changes, {code: UNITS.get(code) for c in changes
                                      for code in c["from_"] + [n["code"] for n in c["into"]]})
    return raised.value


def test_each_change_is_named_for_what_it_does():
    steps = reorganisation.plan([change(["BN", "BT"], ["SG"]), change(["NTB"], ["26743"])], UNITS)
    assert [(s["kind"], s["from"], [u["code"] for u in s["into"]]) for s in steps] == [
        ("merge", ["BN", "BT"], ["SG"]), ("absorb", ["NTB"], ["26743"])]
    # A new unit takes the first old unit's kind and parent unless told.
    assert (steps[0]["into"][0]["kind"], steps[0]["into"][0]["parent_code"]) == ("ward", "Q1")
    [rename] = reorganisation.plan([change(["BN"], ["SG"])], UNITS)
    assert rename["kind"] == "rename"


def test_a_split_places_officials_as_told_then_by_its_default_then_not_at_all():
    [split] = reorganisation.plan([change(["NTB"], ["BT2", "SG"], officials={"o-1": "SG"}, default="BT2")], UNITS)
    assert split["kind"] == "split"
    placed, unplaced = reorganisation.where_officials_go(split, [{"_id": "o-1"}, {"_id": "o-2"}])
    assert (placed, unplaced) == ({"o-1": "SG", "o-2": "BT2"}, [])
    [split] = reorganisation.plan([change(["NTB"], ["BT2", "SG"], officials={"o-1": "SG"})], UNITS)
    assert reorganisation.where_officials_go(split, [{"_id": "o-1"}, {"_id": "o-2"}]) == ({"o-1": "SG"}, ["o-2"])


@pytest.mark.parametrize("changes, index, field, words", [
    ([change(["BN"], ["SG"]), change(["BN", "BT"], ["X"])], 1, "from", "also dissolved by change 0"),
    ([change(["NOPE"], ["SG"])], 0, "from", "No unit NOPE"),
    ([change(["OLD"], ["SG"])], 0, "from", "dissolved already"),
    ([change(["BN"], ["SG"]), change(["BT"], ["SG"])], 1, "into", "also made by change 0"),
    ([change(["BN"], ["SG"]), change(["SG2"], ["BN"])], 1, "from", "No unit SG2"),
    ([change(["BN"], ["X"]), change(["BT"], ["BN"])], 0, "from", "chain or a cycle"),  # BN dissolved, then taking BT
    ([change(["BN", "BT"], ["X", "Y"])], 0, "into", "not both"),
    ([change(["NTB"], ["X", "X"])], 0, "into", "made twice"),
    ([change(["BN"], ["OLD"])], 0, "into", "cannot take"),  # a dissolved unit takes nothing
    ([change(["NTB"], ["X", "26743"])], 0, "into", "exists already"),
    ([change(["NTB"], ["X", "Y"], officials={"o-1": "Z"})], 0, "officials", "does not make"),
    ([change(["NTB"], ["X", "Y"], default="Z")], 0, "default", "not made by this change"),
    ([change(["BN", "BT"], ["X"], officials={"o-1": "X"})], 0, "officials", "Only a split"),
])
def test_a_plan_that_cannot_be_carried_out_is_refused_naming_the_change(changes, index, field, words):
    error = refusal(changes)
    assert error.code == "invalid_reorganization" and error.status == 422
    [message] = error.fields["changes"][str(index)][field]
    assert words in message


def test_units_that_would_swap_into_each_other_are_a_cycle_refused():
    error = refusal([change(["BN"], ["BT"]), change(["BT"], ["BN"])])
    [message] = error.fields["changes"]["0"]["from"]
    assert "a chain or a cycle" in message


@pytest.mark.parametrize("eligible, after", [
    (["BN", "Q3"], ["SG", "Q3"]),          # a merged unit stands for its successor
    (["NTB"], ["BT2", "SG2"]),             # a split unit for each of its parts
    ([], []),                              # every unit invited stays so
])
def test_sessions_invite_what_dissolved_units_became(eligible, after):
    steps = reorganisation.plan([change(["BN", "BT"], ["SG"]), change(["NTB"], ["BT2", "SG2"])], UNITS)
    assert reorganisation.eligible_after(eligible, steps) == after
