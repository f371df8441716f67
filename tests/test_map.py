"""The map's data files are what `python -m devstack.map_data` writes from the packages that keep
the data (a hand edit, or a new package version, shows here), and the map holds together: every
successor of a unit of 2024 is a unit of today, and every unit of today but one has its place."""
from devstack import map_data
from services.registration import map as citymap


def test_the_data_files_are_what_the_generator_writes():
    for path, text in map_data.files().items():
        assert path.read_text(encoding="utf-8") == text, "run python -m devstack.map_data ({})".format(path.name)


def test_the_units_of_2024_became_units_of_today_and_today_s_units_have_their_places():
    today = {u["code"]: u for u in citymap.current_units()}
    assert len([u for u in today.values() if u["kind"] in ("ward", "commune", "special_zone")]) == 168
    for unit in citymap.units_of_2024():
        assert unit["successors"] and set(unit["successors"]) <= set(today), unit["code"]
    placed = {code for code, unit in today.items() if "position" in unit}
    # vietnamadminunits 1.0.4 has no point for Xã Thanh An (once of Dầu Tiếng, Bình Dương): the page lists it.
    assert set(today) - placed == {"79", "25807"}
    for code in placed:
        latitude, longitude = today[code]["position"]["latitude"], today[code]["position"]["longitude"]
        assert 8.5 < latitude < 11.6 and 106.2 < longitude < 107.6, code  # the merged city, Côn Đảo included
