"""The coverage page's pictures, drawn on the server as SVG by pygal: the page shows them as images,
so they need no JavaScript, print as they look, and the same numbers sit in a table below each.

pygal writes an inline config script into every chart (for its optional tooltips); an SVG shown
through <img> runs no script, and its own response forbids scripts too (`ops/routes.py`)."""
from datetime import date

import pygal
from pygal.style import Style

# Coverage bands for the map, low to high: red to blue (told apart without colour vision too, by
# lightness), and grey for a unit with no staff known yet.
BANDS = ((0.2, "#b2182b"), (0.4, "#e08050"), (0.6, "#a68d00"), (0.8, "#4f93c4"), (1.01, "#1b4f8a"))
NO_STAFF = "#8c8c8c"

STYLE = Style(background="#ffffff", plot_background="#ffffff", foreground="#1d2733",
              foreground_strong="#1d2733", foreground_subtle="#5a6675", opacity=".9", opacity_hover="1",
              font_family="'Open Sans', 'Segoe UI', Roboto, sans-serif", label_font_size=13,
              major_label_font_size=13, legend_font_size=13, title_font_size=16, value_font_size=12,
              colors=("#1b4f8a", "#b2182b", "#a68d00", "#4f93c4"))


def _chart(kind, style=STYLE, **options):
    return kind(style=style, js=[], disable_xml_declaration=False, **options)


def percent(value):
    return None if value is None else round(value * 100, 1)


def month_label(key):
    year, month = key.split("-")
    return "{}/{}".format(month, year)


def progress(months, target, t):
    """Coverage of the programme month by month (cumulative), against its target."""
    chart = _chart(pygal.Line, title=t["chart_progress"], y_title="%", range=(0, 100), width=900, height=420,
                   show_dots=True, dots_size=3, x_label_rotation=-45, truncate_label=-1,
                   value_formatter=lambda v: "{:.1f}%".format(v))
    chart.x_labels = [month_label(m["key"]) for m in months]
    chart.add(t["coverage"], [percent(m["coverage"]) for m in months], stroke_style={"width": 3})
    if target is not None:
        chart.add(t["target"], [percent(target)] * len(months), show_dots=False,
                  stroke_style={"width": 2, "dasharray": "8,5"})
    return chart.render()


def by_group(rows, t, group_names):
    """Coverage and target per audience group, side by side."""
    chart = _chart(pygal.Bar, title=t["chart_groups"], y_title="%", range=(0, 100), width=900, height=380, truncate_label=-1,
                   print_values=True, value_formatter=lambda v: "{:.1f}%".format(v))
    chart.x_labels = [group_names.get(r["key"], r["key"]) for r in rows]
    chart.add(t["coverage"], [percent(r["coverage"]) or 0 for r in rows])
    chart.add(t["target"], [percent(r["target"]) for r in rows])
    return chart.render()


def by_unit(rows, t):
    """Coverage per unit with staff, lowest first (where to act), as horizontal bars."""
    shown = sorted((r for r in rows if r["staff"]), key=lambda r: (r["coverage"] or 0, r["name"]))
    chart = _chart(pygal.HorizontalBar, title=t["chart_units"], range=(0, 100), width=900,
                   height=max(240, 120 + 22 * len(shown)), print_values=True, show_legend=False,
                   truncate_label=-1, value_formatter=lambda v: "{:.1f}%".format(v))
    chart.x_labels = [r["name"] for r in shown]
    chart.add(t["coverage"], [{"value": percent(r["coverage"]) or 0, "color": band(r["coverage"])} for r in shown])
    return chart.render()


def band(coverage):
    if coverage is None:
        return NO_STAFF
    return next(colour for upper, colour in BANDS if coverage < upper)


def city_map(rows, units, t):
    """Each unit of today as a dot where it lies, coloured by its coverage band. The packages carry a
    point per unit, not its boundary: dots are what the data allows. `units`: those with a position
    (the page names the ones drawn apart: Côn Đảo lies 180 km out to sea)."""
    coverage = {r["key"]: r for r in rows}
    style = Style(**dict(STYLE.to_dict(), colors=tuple(colour for _, colour in BANDS) + (NO_STAFF,)))
    # Degrees of latitude and longitude are near enough the same length at 10-11°N: keep the shape.
    latitudes = [u["position"]["latitude"] for u in units] or [0, 1]
    longitudes = [u["position"]["longitude"] for u in units] or [0, 1]
    tall = (max(latitudes) - min(latitudes)) / max(max(longitudes) - min(longitudes), 0.01)
    chart = _chart(pygal.XY, style=style, title=t["chart_map"], stroke=False, width=800,
                   height=int(min(1400, max(400, 760 * tall + 200))), dots_size=6,
                   show_x_guides=False, show_y_guides=False, show_x_labels=False, show_y_labels=False,
                   legend_at_bottom=True, legend_at_bottom_columns=3, truncate_legend=-1)
    lower = 0
    for upper, _ in BANDS:
        label = "{:.0f}–{:.0f}%".format(lower * 100, min(upper, 1) * 100)
        points = []
        for unit in units:
            row = coverage.get(unit["code"])
            share = row["coverage"] if row and row["staff"] else None
            if share is not None and lower <= share < upper:
                points.append(_dot(unit, row))
        chart.add(label, points)
        lower = upper
    chart.add(t["no_staff"], [_dot(u, coverage.get(u["code"])) for u in units
                              if not (coverage.get(u["code"]) or {}).get("staff")])
    return chart.render()


def _dot(unit, row):
    where = unit["position"]
    share = "—" if not row or row["coverage"] is None else "{:.1f}%".format(row["coverage"] * 100)
    return {"value": (where["longitude"], where["latitude"]), "label": "{}: {}".format(unit["name"], share)}


def quarter_ends(first, last):
    """The last day of each quarter from `first` to `last` (dates), the latest first: the dates a
    quarterly report is asked for."""
    ends, year, quarter = [], first.year, (first.month - 1) // 3
    while True:
        month = quarter * 3 + 3
        end = date(year + month // 12, month % 12 + 1, 1).toordinal() - 1
        end = date.fromordinal(end)
        if end > last:
            break
        ends.append(end)
        year, quarter = (year + 1, 0) if quarter == 3 else (year, quarter + 1)
    return list(reversed(ends))
