"""Import a unit's staff list (CSV, UTF-8 with or without Excel's BOM) through the public API, in
chunks, showing progress:

    TRAINOPS_TOKEN=... python -m services.registration.import_cli staff.csv --url http://127.0.0.1:8000

Each chunk is POSTed to /officials/import with the header row; row numbers in the errors are the
file's (the header is row 1). Re-running it with the same file changes nothing. Exit status 0 when
every row was imported, 1 when some rows were refused (listed on stderr), 2 when the API refused.
"""
import argparse
import csv
import io
import json
import os
import sys
import time

import requests


def chunks(path, size):
    """(first row number, CSV text with the header) per chunk of `size` data rows."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        batch, first, number = [], 2, 1
        for cells in reader:
            number += 1
            if not batch:
                first = number
            batch.append(cells)
            if len(batch) == size:
                yield first, render(header, batch), len(batch)
                batch = []
        if batch or first == 2 and number == 1:
            yield first, render(header, batch), len(batch)


def render(header, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def count_rows(path):
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return max(0, sum(1 for _ in csv.reader(handle)) - 1)


def run(path, url, token, chunk=2000, out=sys.stderr, session=None):
    """Import `path`; returns the summed answer {created, updated, unchanged, errors, seconds}."""
    http = session or requests.Session()
    headers = {"Authorization": "Bearer " + token, "Content-Type": "text/csv; charset=utf-8"}
    total = count_rows(path)
    summary = {"created": 0, "updated": 0, "unchanged": 0, "errors": []}
    done, started = 0, time.monotonic()
    for first, text, rows in chunks(path, chunk):
        response = http.post(url.rstrip("/") + "/officials/import", data=text.encode("utf-8"), headers=headers,
                             timeout=300)
        if response.status_code != 200:
            raise SystemExit("import: the API refused the file ({}): {}".format(response.status_code, response.text))
        answer = response.json()
        for key in ("created", "updated", "unchanged"):
            summary[key] += answer.get(key, 0)
        summary["errors"] += [dict(e, row=e["row"] + first - 2) for e in answer["errors"]]
        done += rows
        elapsed = time.monotonic() - started
        out.write("\rimport: {}/{} rows ({:.0f}%), {} created, {} updated, {} unchanged, {} errors, {:.0f} rows/s"
                  .format(done, total, 100.0 * done / max(total, 1), summary["created"], summary["updated"],
                          summary["unchanged"], len(summary["errors"]), done / elapsed if elapsed else 0))
        out.flush()
    out.write("\n")
    summary["seconds"] = time.monotonic() - started
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Import officials from a CSV staff list. The token comes from TRAINOPS_TOKEN: on the "
                    "command line it would show in `ps` and in the shell's history.")
    parser.add_argument("file")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--chunk", type=int, default=2000, help="rows per request")
    args = parser.parse_args(argv)
    token = os.environ.get("TRAINOPS_TOKEN", "")
    if not token:
        parser.error("set TRAINOPS_TOKEN to the operator's or a coordinator's token")
    summary = run(args.file, args.url, token, args.chunk)
    for error in summary["errors"]:
        sys.stderr.write("row {}: {}\n".format(error["row"], json.dumps(error["fields"], ensure_ascii=False)))
    print(json.dumps({k: (len(v) if k == "errors" else v) for k, v in summary.items()}))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
