"""The city's administrative map, as data from where it is kept:

- the 168 commune-level units of Ho Chi Minh City since 2025-07-01 (wards, communes and the special
  zone Côn Đảo), with their official codes, from the `vietnam-provinces` package (data of 2025);
- the city's departments and leadership, from `data/departments.csv` in this repository;
- the districts and wards of early 2025 that the first class was for, dissolved on 2025-07-01, with
  the units they became, from `data/units_2024.csv` (`python -m devstack.map_data` writes it from
  `vietnamadminunits`' data);
- where each unit of 2025 lies, for the coverage map, from `data/ward_positions.csv`.

Nothing here reaches a network: the packages carry their data."""
import csv
import json
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

import vietnam_provinces

from contracts.common import REFORM_DAY

DATA = Path(__file__).resolve().parent / "data"
CITY = {"code": "79", "name": "Thành phố Hồ Chí Minh", "kind": "city"}
KINDS = {"phường": "ward", "xã": "commune", "đặc khu": "special_zone"}


def _rows(name):
    with open(DATA / name, encoding="utf-8") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def current_units():
    """The city and its 168 units of today, as {code, name, kind, parent_code, valid_from}."""
    divisions = json.loads(Path(vietnam_provinces.NESTED_DIVISIONS_JSON_PATH).read_text(encoding="utf-8"))
    [city] = [p for p in divisions if str(p["code"]) == CITY["code"]]
    units = [dict(CITY, parent_code=None, valid_from=None)]
    where = positions()
    for ward in city["wards"]:
        code = str(ward["code"])
        unit = {"code": code, "name": " ".join(ward["name"].split()), "kind": KINDS[ward["division_type"]],
                "parent_code": CITY["code"], "valid_from": REFORM_DAY.isoformat()}
        if code in where:
            latitude, longitude, area = where[code]
            unit["position"] = {"latitude": latitude, "longitude": longitude, "area_km2": area}
        units.append(unit)
    return units


def departments():
    return [dict(row, valid_from=None) for row in _rows("departments.csv")]


def units_of_2024():
    """The first class's districts and wards, dissolved on REFORM_DAY, each with its successors."""
    return [{"code": row["code"], "name": row["name"], "kind": row["kind"], "parent_code": row["parent_code"],
             "valid_until": (REFORM_DAY - timedelta(days=1)).isoformat(), "status": "dissolved",
             "successors": row["successors"].split()} for row in _rows("units_2024.csv")]


@lru_cache(maxsize=1)
def positions():
    """{code: (latitude, longitude, km²)} of the units of 2025."""
    return {row["code"]: (float(row["latitude"]), float(row["longitude"]), float(row["area_km2"]))
            for row in _rows("ward_positions.csv")}


def every_unit():
    """What loading the map writes: today's units, the departments and leadership, and the units of
    2024 the first class was for."""
    return current_units() + departments() + units_of_2024()
