"""Bulk nomination: a unit's staff list as CSV, every row checked like `POST /officials`, upserted by
email in batches. Re-importing the same file changes nothing (rows equal to what is stored are left
alone and counted as unchanged). A file is read row by row and refused past `max_rows` data rows
(413); the answer lists the first MAX_ERRORS row errors and counts them all."""
import csv
import io

from marshmallow import ValidationError
from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError

from backbone.errors import DomainError, invalid
from backbone.clock import utcnow
from backbone.database import new_id
from services.registration import rules, schemas

COLUMNS = ("full_name", "email", "phone", "unit_code", "audience_group")
OPTIONAL = ("language",)
COMPARED = ("full_name", "phone", "unit_code", "audience_group", "language")
BATCH = 1000
MAX_ERRORS = 200


def read_rows(text, max_rows=None):
    """(row number, dict) per data row; the header is row 1. A BOM (Excel's UTF-8) is ignored. More
    than `max_rows` data rows: 413 `payload_too_large`."""
    text = text.lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise invalid({"file": ["Empty: expected a header row {}.".format(",".join(COLUMNS))]})
    header = [h.strip().lstrip("\ufeff").lower() for h in header]
    unknown = [h for h in header if h not in COLUMNS + OPTIONAL]
    missing = [c for c in COLUMNS if c not in header]
    if unknown or missing or len(set(header)) != len(header):
        problems = (["Unknown columns: {}.".format(", ".join(unknown))] if unknown else []) + (
            ["Missing columns: {}.".format(", ".join(missing))] if missing else []) + (
            ["Repeated columns."] if len(set(header)) != len(header) else [])
        raise invalid({"header": problems})
    rows = []
    for number, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank lines (Excel leaves some at the end)
        if max_rows is not None and len(rows) >= max_rows:
            raise DomainError("payload_too_large", "The file has more than {} rows; split it.".format(max_rows),
                              {"file": ["At most {} rows.".format(max_rows)]}, 413)
        if len(cells) != len(header):
            rows.append((number, None, {"_row": ["Expected {} cells, found {}.".format(len(header), len(cells))]}))
            continue
        data = {h: c.strip() for h, c in zip(header, cells) if not (h in OPTIONAL and not c.strip())}
        rows.append((number, data, None))
    return rows


def not_yours(number):
    """A row a coordinator may not import: its unit, or its official's unit now, is another's."""
    return {"row": number, "code": "unit_not_yours", "fields": {"unit_code": ["Not a unit of this coordinator."]}}


# Values per `$in` of a look-up. SecantusDB checks each document it finds against every value of the
# list, so one list of a chunk's 1,000 emails cost a million comparisons: a re-import of 2,500 known
# officials took 4-5 s (against 2 s to create them), and in a loaded full test run a chunk passed the
# gateway's 15 s.
LOOKUP = 100


def _having(collection, field, values, projection=None):
    """The documents whose `field` is one of `values`, LOOKUP values per query."""
    found = []
    for start in range(0, len(values), LOOKUP):
        found += collection.find({field: {"$in": values[start:start + LOOKUP]}}, projection)
    return found


def import_csv(db, text, max_rows=None, units=None):
    """{created, updated, unchanged, errors: [{row, fields}] (the first MAX_ERRORS), errors_total}
    for a staff list's CSV text. `units`: a coordinator's units (None: an operator's import, any unit);
    a row for another unit, or updating an official of another unit, is an error (`unit_not_yours`)."""
    schema = schemas.OfficialIn()
    scope = units
    known_units = {u["_id"]: u for u in db.units.find({}, {"status": 1, "successors": 1, "merged_into": 1})}
    errors, valid, seen_email, seen_phone = [], [], {}, {}
    for number, data, problem in read_rows(text, max_rows):
        if problem:
            errors.append({"row": number, "fields": problem})
            continue
        try:
            fields = schema.load(data)
        except ValidationError as err:
            errors.append({"row": number, "fields": err.messages})
            continue
        fields["email"] = fields["email"].lower()
        if scope is not None and fields["unit_code"] not in scope:
            errors.append(not_yours(number))
            continue
        problem = rules.unit_problem(known_units.get(fields["unit_code"]))
        if problem:
            errors.append({"row": number, "fields": {"unit_code": [problem]}})
            continue
        if fields["email"] in seen_email:
            errors.append({"row": number, "fields": {"email": ["Repeats row {}.".format(seen_email[fields["email"]])]}})
            continue
        if fields["phone"] in seen_phone:
            errors.append({"row": number, "fields": {"phone": ["Repeats row {}.".format(seen_phone[fields["phone"]])]}})
            continue
        seen_email[fields["email"]], seen_phone[fields["phone"]] = number, number
        valid.append((number, fields))

    created = updated = unchanged = 0
    now = utcnow()
    for start in range(0, len(valid), BATCH):
        batch = valid[start:start + BATCH]
        emails = [f["email"] for _, f in batch]
        phones = [f["phone"] for _, f in batch]
        known = {o["email"]: o for o in _having(db.officials, "email", emails)}
        phone_owner = {o["phone"]: o["email"] for o in _having(db.officials, "phone", phones, {"phone": 1, "email": 1})}
        writes, rows_of_writes = [], []
        for number, fields in batch:
            owner = phone_owner.get(fields["phone"])
            if owner is not None and owner != fields["email"]:
                errors.append({"row": number, "fields": {"phone": ["Registered to another official."]}})
                continue
            existing = known.get(fields["email"])
            if existing is not None and scope is not None and existing["unit_code"] not in scope:
                # Another unit's official: a coordinator cannot take them over by naming them.
                errors.append(not_yours(number))
                continue
            if existing is None:
                writes.append(InsertOne(rules.new_official(fields, new_id("official"), now)))
                rows_of_writes.append((number, "created"))
            elif any(existing.get(k) != fields.get(k) for k in COMPARED):
                change = dict(fields, updated_at=now)
                change.update(rules.search_fields(dict(existing, **fields)))
                writes.append(UpdateOne({"_id": existing["_id"]}, {"$set": change, "$inc": {"coverage_stale": 1}}))
                rows_of_writes.append((number, "updated"))
            else:
                unchanged += 1
        if not writes:
            continue
        failed = set()
        try:
            db.officials.bulk_write(writes, ordered=False)
        except BulkWriteError as exc:
            # A race with another import or POST /officials: those rows are reported, the rest stand.
            for error in exc.details.get("writeErrors", []):
                failed.add(error["index"])
                errors.append({"row": rows_of_writes[error["index"]][0],
                               "fields": {"email": ["Email or phone already registered."]}})
        for index, (_, outcome) in enumerate(rows_of_writes):
            if index in failed:
                continue
            if outcome == "created":
                created += 1
            else:
                updated += 1
    errors.sort(key=lambda e: e["row"])
    return {"created": created, "updated": updated, "unchanged": unchanged, "errors": errors[:MAX_ERRORS],
            "errors_total": len(errors)}
