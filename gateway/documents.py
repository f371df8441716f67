"""Printable documents: the quarterly coverage report as an A4 PDF (fpdf2, with Open Sans from the
ttf-opensans package: it writes Vietnamese, and no font is looked for on the machine)."""
from datetime import datetime, timezone

import ttf_opensans
from fpdf import FPDF
from werkzeug.wrappers import Response

from backbone.clock import shown
from gateway.responses import attachment

HEADINGS = {"key": "Mã", "name": "Tên", "staff": "Biên chế", "trained": "Đã hoàn thành",
            "coverage": "Tỷ lệ", "registered": "Đã đăng ký", "attended": "Đã dự", "target": "Chỉ tiêu",
            "gap": "Còn thiếu"}
TITLE = "Báo cáo tiến độ bồi dưỡng kỹ năng ứng dụng AI"
WIDTHS = {"key": 22, "name": 58, "staff": 16, "trained": 18, "coverage": 14, "registered": 16, "attended": 14,
          "target": 14, "gap": 14}


def new_document():
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.add_font("OpenSans", "", str(ttf_opensans.opensans().path))
    pdf.add_font("OpenSans", "B", str(ttf_opensans.opensans(font_weight=700).path))
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    return pdf


def cell_text(column, value):
    if value is None:
        return "—"
    if column in ("coverage", "target"):
        return "{:.1f}%".format(value * 100)
    return str(value)


def _heading(pdf, found, title):
    programme = found.get("programme") or {}
    pdf.set_font("OpenSans", "B", 14)
    pdf.multi_cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("OpenSans", "", 9)
    lines = [programme.get("name"), programme.get("legal_basis"),
             "Số liệu đến hết ngày {}".format(datetime.fromisoformat(found["as_of"]).strftime("%d/%m/%Y")),
             "Lập lúc {}".format(shown(datetime.now(timezone.utc)))]
    for line in filter(None, lines):
        pdf.multi_cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def _table(pdf, found, names=None):
    columns = found["columns"]
    pdf.set_font("OpenSans", "B", 8)
    for column in columns:
        pdf.cell(WIDTHS[column], 6, HEADINGS[column], border=1)
    pdf.ln()
    pdf.set_font("OpenSans", "", 8)
    for item in found["items"] + [found["totals"]]:
        for column in columns:
            value = item.get(column)
            if column == "name" and names:
                value = names.get(item["key"], value)
            pdf.cell(WIDTHS[column], 5, cell_text(column, value)[:40], border=1)
        pdf.ln()
    pdf.ln(4)


def _download(pdf, name):
    return Response(bytes(pdf.output()), mimetype="application/pdf",
                    headers={"Content-Disposition": attachment(name, "pdf")})


def coverage_pdf(found):
    """The coverage report `found` (the registration service's answer) as a PDF download."""
    pdf = new_document()
    _heading(pdf, found, TITLE)
    _table(pdf, found)
    return _download(pdf, "coverage-" + found["as_of"])


def quarterly_pdf(views, titles, names=None):
    """The quarterly report: each view of coverage (`views`: {by: answer}, in the order of `titles`:
    {by: section title}) as a section of one PDF; `names` renames keys (audience groups)."""
    first = views[next(iter(titles))]
    pdf = new_document()
    _heading(pdf, first, TITLE)
    for by, title in titles.items():
        pdf.set_font("OpenSans", "B", 11)
        pdf.multi_cell(0, 6, title, new_x="LMARGIN", new_y="NEXT")
        _table(pdf, views[by], names)
    return _download(pdf, "bao-cao-quy-" + first["as_of"])
