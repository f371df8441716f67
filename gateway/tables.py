"""Reports as tables people open in a spreadsheet: JSON, CSV (UTF-8 with a BOM, so Excel reads the
accents) or XLSX. A text cell that a spreadsheet would take for a formula (it starts with = + - @,
a tab or a carriage return: OWASP's CSV-injection list) is written as text: in CSV with a leading
apostrophe, in XLSX as a string cell, shown with the same apostrophe prefix."""
import csv
import io

from openpyxl import Workbook
from werkzeug.wrappers import Response

from gateway.responses import attachment

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def is_formula_like(value):
    return isinstance(value, str) and value.startswith(FORMULA_STARTS)


def as_text(value):
    """A cell for CSV: a formula-like text gets an apostrophe in front; everything else as it is."""
    return "'" + value if is_formula_like(value) else value


def csv_file(columns, rows, name):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([as_text(c) for c in columns])
    writer.writerows([as_text(cell) for cell in row] for row in rows)
    return Response(("\ufeff" + out.getvalue()).encode("utf-8"), mimetype="text/csv",
                    headers={"Content-Disposition": attachment(name, "csv")})


def xlsx_file(columns, rows, name):
    return xlsx_book([(name, columns, rows)], name)


def xlsx_book(sheets, name):
    """A workbook of `sheets` [(title, columns, rows)], one sheet each, as a download `name`.xlsx."""
    book = Workbook()
    book.remove(book.active)
    for title, columns, rows in sheets:
        sheet = book.create_sheet("".join(c for c in title if c not in "[]:*?/\\")[:31] or "report")
        for row in [columns] + list(rows):
            sheet.append(list(row))
            for cell in sheet[sheet.max_row]:
                if is_formula_like(cell.value):
                    # openpyxl made it a formula ("f"): a string, shown as text.
                    cell.data_type = "s"
                    cell.quotePrefix = True
    out = io.BytesIO()
    book.save(out)
    return Response(out.getvalue(), mimetype=XLSX, headers={"Content-Disposition": attachment(name, "xlsx")})


def tabular(report, kind, name):
    """A report ({columns, rows}) as `kind`: json (the default), csv or xlsx."""
    if kind == "csv":
        return csv_file(report["columns"], report["rows"], name)
    if kind == "xlsx":
        return xlsx_file(report["columns"], report["rows"], name)
    return {"columns": report["columns"], "items": [dict(zip(report["columns"], row)) for row in report["rows"]]}
