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


def certificate_pdf(record, modules=(), partner_name=None):
    """A certificate of completion as a printable A4 page: who, their unit, the course and its
    modules with hours, the partner, the date, the code, and a QR code of the (absolute) verification
    URL; a revoked certificate says so across the top. `record` is registration's certificate_record."""
    import io

    import segno

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.add_font("OpenSans", "", str(ttf_opensans.opensans().path))
    pdf.add_font("OpenSans", "B", str(ttf_opensans.opensans(font_weight=700).path))
    pdf.set_title("Giấy chứng nhận {}".format(record["code"]))
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    pdf.set_draw_color(138, 28, 28)
    pdf.set_line_width(1.2)
    pdf.rect(8, 8, 194, 281)

    def line(text, size=11, bold=False, height=7, color=(17, 17, 17)):
        pdf.set_text_color(*color)
        pdf.set_font("OpenSans", "B" if bold else "", size)
        pdf.multi_cell(0, height, text, align="C", new_x="LMARGIN", new_y="NEXT")

    if record.get("status") == "revoked":
        line("GIẤY CHỨNG NHẬN ĐÃ BỊ THU HỒI — REVOKED", 14, True, 9, (176, 0, 32))
        if record.get("revoke_reason"):
            line(record["revoke_reason"], 10, color=(176, 0, 32))
    line("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 12, True)
    line("Độc lập – Tự do – Hạnh phúc", 11, True)
    line("Trung tâm Chuyển đổi số Thành phố Hồ Chí Minh", 11)
    pdf.ln(6)
    line("GIẤY CHỨNG NHẬN", 26, True, 14, (138, 28, 28))
    line("Chứng nhận Ông/Bà")
    line(record["full_name"], 20, True, 11)
    if record.get("unit_name"):
        line(record["unit_name"], 12)
    line("đã hoàn thành khóa bồi dưỡng")
    line("“{}”".format(record["title"]), 14, True, 8)
    if partner_name:
        line("do {} giảng dạy".format(partner_name), 11)
    line("Tổ chức ngày {} tại {}, {}.".format(shown(record["session_starts_at"], "%d/%m/%Y"),
                                              record["venue_name"], record["address"]), 10, height=6)
    if modules:
        pdf.ln(3)
        pdf.set_text_color(17, 17, 17)
        pdf.set_font("OpenSans", "B", 10)
        pdf.set_x(30)
        pdf.cell(120, 7, "Chuyên đề", border=1)
        pdf.cell(30, 7, "Số giờ", border=1, align="C", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("OpenSans", "", 10)
        for module in modules:
            pdf.set_x(30)
            pdf.cell(120, 7, str(module.get("title", ""))[:70], border=1)
            pdf.cell(30, 7, str(module.get("hours", "")), border=1, align="C", new_x="LMARGIN", new_y="NEXT")
        pdf.set_x(30)
        pdf.set_font("OpenSans", "B", 10)
        pdf.cell(120, 7, "Tổng cộng", border=1)
        pdf.cell(30, 7, str(sum(m.get("hours") or 0 for m in modules)), border=1, align="C",
                 new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    line("TP. Hồ Chí Minh, ngày cấp {}".format(shown(record["issued_at"], "%d/%m/%Y")), 11)
    qr = io.BytesIO()
    segno.make(record["url"], error="m").save(qr, kind="png", scale=6, border=2)
    qr.seek(0)
    top = max(pdf.get_y() + 4, 220)
    pdf.image(qr, x=20, y=top, w=45, h=45)
    pdf.set_xy(70, top + 8)
    pdf.set_font("OpenSans", "", 10)
    pdf.set_text_color(17, 17, 17)
    pdf.multi_cell(120, 6, "Mã xác thực: {}\nXác thực tại: {}".format(record["code"], record["url"]),
                   new_x="LMARGIN", new_y="NEXT")
    return Response(bytes(pdf.output()), mimetype="application/pdf", headers={
        "Content-Disposition": attachment("giay-chung-nhan-" + record["code"], "pdf", "inline")})
