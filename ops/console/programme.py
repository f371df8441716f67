"""The console's programme administration: venues, sessions (create, reschedule, change capacity,
cancel), a session's registrations (cancel one, move one to another session) and officials (search,
open, correct, import a staff list as CSV or XLSX). Every form carries the session's CSRF token, acts
as the signed-in account (`console_actor`), is audited (`console_audit`), and shows a service's
refusal in words next to its field; the services check who asks again. Viewers see the lists only."""
import csv
import io
import re
from urllib.parse import urlencode

from openpyxl import load_workbook

from backbone.auth import OPERATOR
from backbone.clock import local_date, shown, utcnow
from backbone.errors import DomainError
from gateway.entrypoints import api
from ops import console, fleet
from ops.administration import local_day
from ops.console.labels import PROGRAMME_LABELS

SHOWN = 100  # sessions, officials or registrations on one page
# The largest staff list the console imports in one request, a wait a person sits through (5,000 rows
# took 8 s on the 2-core test machine); a larger list is refused before it is sent, pointing to
# import_cli (README), which sends it in chunks with its progress.
IMPORT_ROWS = 5_000
AUDIENCE_GROUPS = ("ward_commune", "department", "leader")
# Where a body's field is typed on the session forms (times are typed as a day and two clock times).
FORM_FIELD = {"starts_at": "start", "ends_at": "end", "parts": "end", "registration_closes_at": "start"}


# -- what a form says, for the services ----------------------------------------------------------------

def local_time(day, clock):
    """`22/03/2026` and `08:00` → `2026-03-22T08:00:00+07:00` (Ho Chi Minh City has no DST); what does
    not look like a day and a time goes as typed, for the service to refuse by name."""
    day, clock = local_day(day), clock.strip()
    if re.fullmatch(r"\d{4}-\d\d-\d\d", day) and re.fullmatch(r"\d{1,2}:\d\d", clock):
        return "{}T{:0>5}:00+07:00".format(day, clock)
    return "{} {}".format(day, clock).strip()


def codes(text):
    """`26740, 26743` → ["26740", "26743"]."""
    return [c.strip() for c in text.replace(";", ",").split(",") if c.strip()]


def rooms_of(text):
    """One room a line: `Phòng máy 1; 40; 40 máy tính, máy chiếu` (name; seats; equipment). Seats that
    are not a number go as typed, for the service to refuse."""
    rooms = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(";")]
        if not any(cells):
            continue
        seats = cells[1] if len(cells) > 1 else ""
        room = {"name": cells[0], "capacity": int(seats) if seats.isdigit() else seats}
        if len(cells) > 2 and cells[2]:
            room["equipment"] = [e.strip() for e in cells[2].split(",") if e.strip()]
        rooms.append(room)
    return rooms


def spreadsheet_text(upload):
    """The uploaded staff list as CSV text: a .xlsx's first sheet, cell by cell, or a CSV as it is (UTF-8,
    Excel's BOM allowed). A formula cell refuses the file, naming the cell: the list holds values."""
    data = upload.read()
    if data[:2] == b"PK":  # a zip: an Office Open XML workbook
        try:
            sheet = load_workbook(io.BytesIO(data), read_only=True, data_only=False).worksheets[0]
        except Exception:  # any damage to the workbook: say so, whatever openpyxl raised
            raise DomainError("malformed_xlsx", "The workbook could not be read.", {"file": ["Not a readable .xlsx."]}, 400)
        out = io.StringIO()
        writer = csv.writer(out)
        for row in sheet.iter_rows():
            values = []
            for cell in row:
                if cell.data_type == "f":
                    raise DomainError("formula_cell", "A formula in cell {}.".format(cell.coordinate),
                                      {"file": ["formula:" + cell.coordinate]}, 400)
                value = cell.value
                # A phone typed as a number loses its leading 0 in Excel: its digits, without ".0".
                values.append("" if value is None else str(int(value)) if isinstance(value, float) and value.is_integer()
                              else str(value))
            writer.writerow(values)
        return out.getvalue()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DomainError("malformed_csv", "Not UTF-8.", {"file": ["Not UTF-8 text."]}, 400)


# -- a refusal, in words -------------------------------------------------------------------------------

FIELD_WORDS = {
    "vi": {"Missing data for required field.": "Bắt buộc.", "Not a valid email address.": "Email không hợp lệ.",
           "Not a valid integer.": "Phải là số nguyên.", "Not a valid datetime.": "Ngày giờ không đúng (dd/mm/yyyy, HH:MM).",
           "Must be after starts_at.": "Giờ kết thúc phải sau giờ bắt đầu.", "Unknown room.": "Địa điểm không có phòng này.",
           "Unknown unit.": "Không có đơn vị này.", "Already registered.": "Đã có người dùng.",
           "Already registered to another official.": "Đã có cán bộ khác dùng.",
           "Not a unit of this coordinator.": "Không thuộc đơn vị phụ trách.",
           "Shorter than minimum length 1.": "Bắt buộc.", "Field may not be null.": "Bắt buộc."},
    "en": {},
}


def field_words(fields, lang):
    """{form field: "message; message"} from an error's fields, nested ones under their top name
    (rooms.1.capacity → rooms), each message in the page's language where it is a common one."""
    out = {}

    def walk(key, value):
        if isinstance(value, dict):
            for inner in value.values():
                walk(key, inner)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(key, item)
        else:
            text = FIELD_WORDS[lang].get(str(value), str(value))
            if str(value).startswith("formula:"):
                text = PROGRAMME_LABELS[lang]["formula_cell"].format(cell=str(value)[8:])
            out[key] = "; ".join(filter(None, [out.get(key), text]))
    for name, value in (fields or {}).items():
        if name != "other_session_id":
            walk(FORM_FIELD.get(name, name), value)
    return out


def refusal(gateway, error, lang):
    """(sentence, {field: message}) for a service's refusal: the code in words, with what the service
    named (the other session of a conflict, the room's seats, the offering's dates)."""
    p = PROGRAMME_LABELS[lang]
    sentence = p["codes"].get(error.code) or p["codes"]["other"].format(code=error.code)
    if error.code == "payload_too_large":
        return p["too_many_rows"].format(n=IMPORT_ROWS), {}
    fields = field_words(error.fields, lang)
    if error.code in ("room_conflict", "trainer_conflict"):
        other_id = ((error.fields or {}).get("other_session_id") or [None])[0]
        other = fleet.ask_all(gateway, lambda s: s.get_session(OPERATOR, other_id), ("scheduling",),
                              timeout=5)["scheduling"] if other_id else None
        if other:
            booked = p["booked_by"].format(title=other["title"], day=shown(other["starts_at"], "%d/%m/%Y"),
                                           start=shown(other["starts_at"], "%H:%M"), end=shown(other["ends_at"], "%H:%M"))
            sentence = "{} {}".format(sentence, booked)
            fields[error.code.split("_")[0]] = booked
    numbers = re.findall(r"\d[\d-]*", error.message or "")
    if error.code == "capacity_exceeds_room" and numbers:
        sentence = "{} {}".format(sentence, p["room_seats"].format(n=numbers[-1]))
        fields["capacity"] = p["room_seats"].format(n=numbers[-1])
    if error.code == "outside_offering_dates" and len(numbers) >= 2:
        sentence = "{} {}".format(sentence, p["offering_runs"].format(
            start="/".join(reversed(numbers[0].split("-"))), end="/".join(reversed(numbers[1].split("-")))))
    return sentence, fields


# -- what the pages show -------------------------------------------------------------------------------

def ask(gateway, service, call, timeout=5):
    return fleet.ask_all(gateway, call, (service,), timeout=timeout)[service]


def sessions_of(client, query, pages=10):
    """Sessions by start time, page after page (at most `pages` of 200): the calendar keeps the past
    too, and what is still to come lies after it."""
    items, cursor = [], None
    for _ in range(pages):
        answer = client.list_sessions(OPERATOR, dict(query, limit=200, **({"cursor": cursor} if cursor else {})))
        items += answer["items"]
        cursor = answer.get("next_cursor")
        if not cursor:
            break
    return {"items": items}


def venues_page(gateway):
    venues = ask(gateway, "scheduling", lambda s: s.list_venues(OPERATOR, {"limit": 200}))
    partners = ask(gateway, "partners", lambda s: s.list_partners(OPERATOR, {"limit": 200}))
    names = {p["id"]: p["name"] for p in (partners or {}).get("items", [])}
    return {"venues": (venues or {}).get("items", []), "partners": (partners or {}).get("items", []),
            "partner_names": names, "unavailable": venues is None}


def sessions_page(gateway, asked):
    """Sessions by start time, filtered by status, month (mm/yyyy) and day (dd/mm/yyyy); their seats
    and waitlist (registration); what the form to create one needs (offerings, venues)."""
    query = {}
    if asked.get("status") in ("scheduled", "cancelled"):
        query["status"] = asked["status"]
    day = local_day(asked.get("day", ""))
    month = asked.get("month", "").strip()
    found = re.fullmatch(r"(\d{1,2})/(\d{4})", month)
    if re.fullmatch(r"\d{4}-\d\d-\d\d", day):
        query["month"] = day[:7]
    elif found:
        query["month"] = "{}-{:0>2}".format(found.group(2), found.group(1))
    elif re.fullmatch(r"\d{4}-\d\d", month):
        query["month"] = month
    upcoming_only = not asked.get("status") and "month" not in query
    if upcoming_only:  # by default: the scheduled sessions still to come
        query["status"] = "scheduled"
    listed = ask(gateway, "scheduling", lambda s: sessions_of(s, query))
    items = (listed or {}).get("items", [])
    if re.fullmatch(r"\d{4}-\d\d-\d\d", day):
        items = [s for s in items if local_date(s["starts_at"]).isoformat() == day]
    if upcoming_only:
        now = utcnow()
        items = [s for s in items if s["ends_at"] >= now]
    items = items[:SHOWN]
    seats = ask(gateway, "registration", lambda r: [r.seats(s["id"]) for s in items], timeout=10) or [{}] * len(items)
    for session, numbers in zip(items, seats):
        session.update(seats_taken=numbers.get("seats_taken"), waitlist_length=numbers.get("waitlist_length"))
    offerings = ask(gateway, "partners", lambda s: s.list_offerings(OPERATOR, {"status": "published", "limit": 200}))
    venues = ask(gateway, "scheduling", lambda s: s.list_venues(OPERATOR, {"limit": 200}))
    return {"items": items, "unavailable": listed is None, "asked": asked,
            "offerings": (offerings or {}).get("items", []), "venues": (venues or {}).get("items", [])}


def session_page(gateway, session_id):
    """One session, its seats, its registrations (confirmed, then the waitlist in its order, then the
    rest) and the sessions still to come that a registration may move to."""
    session = ask(gateway, "scheduling", lambda s: s.get_session(OPERATOR, session_id))

    def registrations(r):
        seats = r.seats(session_id)
        rows = {status: r.list_registrations(OPERATOR, session_id, {"status": status, "limit": 200})["items"]
                for status in ("confirmed", "waitlisted", "completed", "cancelled")}
        return seats, rows
    found = ask(gateway, "registration", registrations, timeout=10) if session else None
    seats, rows = found if found else ({}, {})
    upcoming = []
    if session:
        listed = ask(gateway, "scheduling", lambda s: sessions_of(s, {"status": "scheduled"}))
        now = utcnow()
        upcoming = [s for s in (listed or {}).get("items", []) if s["id"] != session_id and s["starts_at"] > now]
    return {"session": session, "session_id": session_id, "seats": seats, "rows": rows, "upcoming": upcoming,
            "registration_unavailable": session is not None and found is None}


def officials_page(gateway, q, unit_code, cursor):
    query = {"limit": SHOWN}
    for key, value in (("q", q), ("unit_code", unit_code), ("cursor", cursor)):
        if value:
            query[key] = value[:200]
    found = ask(gateway, "registration", lambda r: r.list_officials(OPERATOR, query))
    next_page = None
    if found and found.get("next_cursor"):
        next_page = "/console/officials?" + urlencode(
            {k: v for k, v in (("q", q), ("unit_code", unit_code), ("cursor", found["next_cursor"])) if v})
    return {"officials": (found or {}).get("items", []), "unavailable": found is None, "q": q,
            "unit_code": unit_code, "next_page": next_page, "result": None, "import_rows": IMPORT_ROWS}


def official_page(gateway, official_id):
    record = ask(gateway, "registration", lambda r: r.official_record(OPERATOR, official_id))
    return {"record": record, "official": (record or {}).get("official"), "official_id": official_id}


class ProgrammeConsoleRoutes:
    """Mounted by the gateway with the other console routes (`OperationsRoutes`)."""

    def programme_page(self, request, template, gather, status=200, **extra):
        """A page of this module, with its words (`p`) and whatever a form's answer adds (`extra`)."""
        lang = console.language(request)
        response = self.console_page(request, template, lambda gw: dict(
            gather(gw), p=PROGRAMME_LABELS[lang], **extra))
        if response.status_code == 200:
            response.status_code = status
        return response

    def programme_action(self, request, action, target, call, made=None):
        """Run a console action as the signed-in account: (answer, None, None), or (None, (sentence,
        {field: message}, status), error) when the service refused; audited either way, with the
        `target` ids and, once done, those `made(answer)` names."""
        lang = console.language(request)
        try:
            answer = call(self.console_actor(request))
        except DomainError as error:
            self.console_audit(request, action, target, error.status)
            sentence, fields = refusal(self, error, lang)
            return None, (sentence, fields, error.status), error
        self.console_audit(request, action, dict(target, **(made(answer) if made else {})), 200)
        return answer, None, None

    # -- venues -----------------------------------------------------------------------------------

    @api("GET", "/console/venues", auth=None, public=False)
    def console_venues(self, request):
        return self.programme_page(request, "venues.html", venues_page, form={}, errors={})

    @api("POST", "/console/venues", auth=None, public=False)
    def console_create_venue(self, request):
        denied = self.console_form_refusal(request, "create venue")
        if denied is not None:
            return denied
        form = {k: request.form.get(k, "").strip()[:5000] for k in ("name", "address", "host_partner_id", "rooms")}
        body = {"name": form["name"], "address": form["address"], "host_partner_id": form["host_partner_id"],
                "rooms": rooms_of(form["rooms"])}
        made, refused, _ = self.programme_action(request, "create venue", {},
                                                 lambda actor: self.scheduling.create_venue(actor, body),
                                                 lambda v: {"venue_id": v["id"]})
        if refused:
            return self.programme_page(request, "venues.html", venues_page, status=refused[2], form=form,
                                       refused=refused[0], errors=refused[1])
        return self.programme_page(request, "venues.html", venues_page, status=201, form={}, errors={},
                                   done=PROGRAMME_LABELS[console.language(request)]["venue_created"].format(name=made["name"]))

    # -- sessions ---------------------------------------------------------------------------------

    def sessions_asked(self, request):
        return {k: request.args.get(k, "").strip()[:20] for k in ("status", "month", "day")}

    @api("GET", "/console/schedule", auth=None, public=False)
    def console_schedule(self, request):
        asked = self.sessions_asked(request)
        return self.programme_page(request, "schedule.html", lambda gw: sessions_page(gw, asked), form={}, errors={})

    @api("POST", "/console/schedule", auth=None, public=False)
    def console_create_session(self, request):
        denied = self.console_form_refusal(request, "create session")
        if denied is not None:
            return denied
        form = {k: request.form.get(k, "").strip()[:2000] for k in (
            "offering_id", "venue_id", "room", "trainer", "day", "start", "end", "capacity", "eligible_units")}
        form["audience_groups"] = [g for g in request.form.getlist("audience_groups") if g in AUDIENCE_GROUPS]
        body = {"offering_id": form["offering_id"], "venue_id": form["venue_id"], "room": form["room"],
                "trainer": form["trainer"], "starts_at": local_time(form["day"], form["start"]),
                "ends_at": local_time(form["day"], form["end"]),
                "capacity": int(form["capacity"]) if form["capacity"].isdigit() else form["capacity"],
                "eligible_units": codes(form["eligible_units"]), "audience_groups": form["audience_groups"]}
        made, refused, _ = self.programme_action(request, "create session", {},
                                                 lambda actor: self.scheduling.create_session(actor, body),
                                                 lambda s: {"session_id": s["id"]})
        asked = self.sessions_asked(request)
        if refused:
            return self.programme_page(request, "schedule.html", lambda gw: sessions_page(gw, asked),
                                       status=refused[2], form=form, refused=refused[0], errors=refused[1])
        return console.redirect("/console/schedule/{}?done=created".format(made["id"]))

    @api("GET", "/console/schedule/<session_id>", auth=None, public=False)
    def console_schedule_session(self, request, session_id):
        return self.programme_page(request, "schedule_session.html", lambda gw: session_page(gw, session_id[:64]),
                                   done=request.args.get("done", "")[:20], which=None, form={}, errors={})

    def session_form(self, request, session_id, action, which, call, fields):
        """A form on a session's page: the page again with the outcome, or the refusal next to the form."""
        denied = self.console_form_refusal(request, action)
        if denied is not None:
            return denied
        session_id = session_id[:64]
        form = {k: request.form.get(k, "").strip()[:500] for k in fields}
        done, refused, _ = self.programme_action(request, action, {"session_id": session_id},
                                                 lambda actor: call(actor, form))
        if refused:
            return self.programme_page(request, "schedule_session.html", lambda gw: session_page(gw, session_id),
                                       status=refused[2], which=which, form=form, refused=refused[0],
                                       errors=refused[1], done="")
        return console.redirect("/console/schedule/{}?done={}".format(session_id, which))

    @api("POST", "/console/schedule/<session_id>/reschedule", auth=None, public=False)
    def console_reschedule_session(self, request, session_id):
        def call(actor, form):
            body = {"starts_at": local_time(form["day"], form["start"]), "ends_at": local_time(form["day"], form["end"])}
            if form["room"]:
                body["room"] = form["room"]
            return self.scheduling.reschedule_session(actor, session_id, body)
        return self.session_form(request, session_id, "reschedule session", "reschedule", call,
                                 ("day", "start", "end", "room"))

    @api("POST", "/console/schedule/<session_id>/capacity", auth=None, public=False)
    def console_session_capacity(self, request, session_id):
        def call(actor, form):
            seats = form["capacity"]
            return self.scheduling.change_capacity(actor, session_id, {"capacity": int(seats) if seats.isdigit() else seats})
        return self.session_form(request, session_id, "change session capacity", "capacity", call, ("capacity",))

    @api("POST", "/console/schedule/<session_id>/cancel", auth=None, public=False)
    def console_cancel_session(self, request, session_id):
        return self.session_form(request, session_id, "cancel session", "cancel", lambda actor, form: (
            self.scheduling.cancel_session(actor, session_id, {"reason": form["reason"]})), ("reason",))

    # -- a session's registrations ------------------------------------------------------------------

    @api("POST", "/console/registrations/cancel", auth=None, public=False)
    def console_cancel_registration(self, request):
        denied = self.console_form_refusal(request, "cancel registration")
        if denied is not None:
            return denied
        registration_id = request.form.get("registration_id", "")[:100]
        session_id = request.form.get("session_id", "")[:64]
        form = {"registration_id": registration_id, "reason": request.form.get("reason", "").strip()[:500],
                "cause": "official" if request.form.get("cause") == "official" else "operator"}
        body = {"cause": form["cause"]}
        if form["reason"]:
            body["reason"] = form["reason"]
        _, refused, _ = self.programme_action(
            request, "cancel registration", {"registration_id": registration_id, "session_id": session_id},
            lambda actor: self.registration.cancel_registration(actor, registration_id, body))
        if refused:
            return self.programme_page(request, "schedule_session.html", lambda gw: session_page(gw, session_id),
                                       status=refused[2], which="cancel_registration", form=form,
                                       refused=refused[0], errors=refused[1], done="")
        return console.redirect("/console/schedule/{}?done=registration_cancelled".format(session_id))

    @api("POST", "/console/registrations/move", auth=None, public=False)
    def console_move_registration(self, request):
        """Two steps, each reported: register on the target first, then cancel here only when the target
        confirmed a seat; a refusal at the first step changes nothing, and a waitlist place there keeps
        the seat here, so nobody is left without a seat silently."""
        denied = self.console_form_refusal(request, "move registration")
        if denied is not None:
            return denied
        lang = console.language(request)
        p = PROGRAMME_LABELS[lang]
        registration_id = request.form.get("registration_id", "")[:100]
        session_id = request.form.get("session_id", "")[:64]
        target_id = request.form.get("target_session_id", "")[:64]
        form = {"registration_id": registration_id, "target_session_id": target_id}
        current = ask(self, "registration", lambda r: r.get_registration(OPERATOR, registration_id))
        if current is None or current.get("session_id") != session_id:
            self.console_audit(request, "move registration", {"registration_id": registration_id}, 404)
            return self.programme_page(request, "schedule_session.html", lambda gw: session_page(gw, session_id),
                                       status=404, which="move", form=form, refused=p["codes"]["not_found"],
                                       errors={}, done="")
        steps = []
        placed, refused, _ = self.programme_action(
            request, "move registration: register on target",
            {"session_id": target_id, "from_registration_id": registration_id},
            lambda actor: self.registration.register(actor, target_id, {"official_id": current["official_id"]}),
            lambda r: {"registration_id": r["id"]})
        if refused:
            steps.append(("bad", p["move_step1_refused"].format(why=refused[0])))
            steps.append(("good", p["move_nothing_changed"]))
        elif placed["status"] != "confirmed":
            steps.append(("bad", p["move_step1_waitlisted"].format(n=placed.get("waitlist_position") or "?")))
            steps.append(("good", p["move_kept_here"]))
        else:
            steps.append(("good", p["move_step1_done"]))
            _, refused, _ = self.programme_action(
                request, "move registration: cancel here", {"registration_id": registration_id, "session_id": session_id},
                lambda actor: self.registration.cancel_registration(actor, registration_id, {
                    "reason": p["moved_reason"], "cause": "operator"}))
            if refused:
                steps.append(("bad", p["move_step2_refused"].format(why=refused[0])))
            else:
                steps.append(("good", p["move_step2_done"]))
        status = 200 if all(kind == "good" for kind, _ in steps) else 409
        return self.programme_page(request, "schedule_session.html", lambda gw: session_page(gw, session_id),
                                   status=status, which="move", form=form, steps=steps, errors={}, done="",
                                   target_id=target_id)

    # -- officials --------------------------------------------------------------------------------

    @api("GET", "/console/officials", auth=None, public=False)
    def console_officials(self, request):
        q, unit_code = request.args.get("q", "").strip()[:200], request.args.get("unit_code", "").strip()[:32]
        cursor = request.args.get("cursor", "")[:400]
        return self.programme_page(request, "officials.html", lambda gw: officials_page(gw, q, unit_code, cursor))

    @api("POST", "/console/officials/import", auth=None, public=False, max_body="max_import_bytes", timeout="import")
    def console_import_officials(self, request):
        """The import's answer on the page: counts and each refused row with its problems in words."""
        denied = self.console_form_refusal(request, "import officials")
        if denied is not None:
            return denied
        lang = console.language(request)
        upload = request.files.get("file")
        try:
            if upload is None or not upload.filename:
                raise DomainError("invalid_fields", "No file.", {"file": ["Missing data for required field."]}, 422)
            text = spreadsheet_text(upload)
            if sum(1 for cells in csv.reader(io.StringIO(text)) if any(c.strip() for c in cells)) - 1 > IMPORT_ROWS:
                raise DomainError("payload_too_large", "More than {} rows.".format(IMPORT_ROWS), {}, 413)
        except DomainError as error:
            self.console_audit(request, "import officials", {}, error.status)
            sentence, fields = refusal(self, error, lang)
            return self.programme_page(request, "officials.html", lambda gw: officials_page(gw, "", "", ""),
                                       status=error.status, refused=sentence, errors=fields)
        result, refused, _ = self.programme_action(request, "import officials", {},
                                                   lambda actor: self.registration.import_officials(actor, text))
        if refused:
            return self.programme_page(request, "officials.html", lambda gw: officials_page(gw, "", "", ""),
                                       status=refused[2], refused=refused[0], errors=refused[1])
        for row in result["errors"]:
            row["words"] = field_words(row.get("fields"), lang)
        return self.programme_page(request, "officials.html", lambda gw: dict(
            officials_page(gw, "", "", ""), result=result, filename=upload.filename[:200]))

    @api("GET", "/console/officials/<official_id>", auth=None, public=False)
    def console_official(self, request, official_id):
        return self.programme_page(request, "official.html", lambda gw: official_page(gw, official_id[:64]),
                                   form={}, errors={}, done=request.args.get("done") == "1")

    @api("POST", "/console/officials/<official_id>", auth=None, public=False)
    def console_update_official(self, request, official_id):
        denied = self.console_form_refusal(request, "update official")
        if denied is not None:
            return denied
        official_id = official_id[:64]
        form = {k: request.form.get(k, "").strip()[:300] for k in (
            "full_name", "email", "phone", "unit_code", "audience_group", "language")}
        # Only what was changed goes: an unchanged unit is not checked again (it may be dissolved since).
        before = ask(self, "registration", lambda r: r.get_official(OPERATOR, official_id)) or {}
        body = {k: v for k, v in form.items() if v != (before.get(k) or "")}
        if not body:
            return console.redirect("/console/officials/{}?done=1".format(official_id))
        _, refused, _ = self.programme_action(request, "update official", {"official_id": official_id},
                                              lambda actor: self.registration.update_official(actor, official_id, body))
        if refused:
            return self.programme_page(request, "official.html", lambda gw: official_page(gw, official_id),
                                       status=refused[2], form=form, refused=refused[0], errors=refused[1], done=False)
        return console.redirect("/console/officials/{}?done=1".format(official_id))

