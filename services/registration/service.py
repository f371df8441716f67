"""Registration: administrative units, officials, registrations that never over-book, waitlists
with automatic promotion, per-unit quotas, check-in per session part, completion and certificates,
and the operators' reports.

Reacts to scheduling's session_scheduled / _rescheduled / _capacity_changed / _cancelled and keeps
its own copy of each session with the seat counters. Publishes registration_confirmed,
registration_waitlisted, registration_promoted, registration_cancelled, registration_rescheduled,
attendance_recorded, course_completed and units_reorganized, always through the outbox.

Rules (`rules`): partners see who registered for their sessions (name, unit, audience group),
status and attendance, never contacts or QR tokens; an official registers once per session, if their
unit and audience group are invited and before the cut-off; check-in is at the door, on the
session's day; a seat is theirs while the session has one and their unit is under
its quota, else they wait in arrival order; a freed seat goes to the first waitlisted official who
fits; fewer seats than confirmed drop nobody; attending every part completes the course; merged
units are data, and everything of theirs follows the new unit.

Seats: registrations are written in batches, one transaction per batch (`seating`), and every seat
is taken by a conditional update that only matches what the transaction read: the database is the
arbiter. Within one process each session has a FIFO lock that batches, cancellations and capacity
or quota changes take, so they don't write-conflict (conflicts make MongoDB abort and retry whole
transactions). With several replicas the database still never over-books; "arrival order" then
holds per replica.
"""
from datetime import date, timedelta

from nameko import config
from pymongo.errors import DuplicateKeyError

from backbone import auth
from backbone.clock import local_date, local_midnight, utcnow
from backbone.database import Database, new_id
from backbone.errors import conflict, not_found, validated
from backbone.logs import Tracing
from backbone.openapi import describe
from backbone.operated import Operated
from backbone.paging import listed
from backbone.rpc import rpc
from backbone.subscriber import subscribe
from backbone.timer import leased_timer
import contracts  # noqa: F401  (registers the contracts of the events it publishes and handles)
from services.registration import certificates, coverage, imports, reorganisation, reports, rules, schemas, store
from services.registration import map as citymap
from services.registration.seating import Seating, session_lock

# Built once: a marshmallow schema is reusable, and building one costs more than a registration's load.
REGISTRATION_IN = schemas.RegistrationIn()


def end_of_day(day):
    """The last instant of a local calendar day (what "as of that day" counts up to)."""
    return local_midnight(day + timedelta(days=1)) - timedelta(milliseconds=1)


def with_touched(work):
    """`work` for a transaction, returning (its result, the officials it promoted)."""
    return lambda tx: (work(tx), list(store.touched(tx)))


class RegistrationService(Operated):
    name = "registration"

    db = Database(indexes=store.INDEXES, migrations=store.MIGRATIONS)
    tracing = Tracing()
    seating = Seating()

    # -- what scheduling tells us -------------------------------------------------------------------

    @subscribe("session_scheduled")
    def on_session_scheduled(self, event):
        """A copy of the session, with no seat taken. Scheduling may still name units that were
        dissolved since: they are followed to the units of today."""
        payload = event["payload"]
        eligible = rules.current_codes(payload["eligible_units"], store.successors_map(self.db))
        self.db.transaction(lambda tx: store.remember_session(tx, payload, eligible))

    @subscribe("session_rescheduled")
    def on_session_rescheduled(self, event):
        """The copy moves; every live registration stays and its official is told."""
        payload = event["payload"]
        with session_lock(payload["session_id"]):
            self.db.transaction(lambda tx: store.move_session(tx, payload))

    @subscribe("session_capacity_changed")
    def on_session_capacity_changed(self, event):
        """More seats promote from the waitlist. Fewer seats than confirmed drop nobody: the session
        is flagged `over_capacity` (how many too many) for an operator to decide."""
        payload = event["payload"]
        with session_lock(payload["session_id"]):
            _, promoted = self.db.transaction(with_touched(
                lambda tx: store.resize_session(tx, payload["session_id"], payload["capacity"])))
        store.mark_stale(self.db, promoted)

    @subscribe("session_cancelled")
    def on_session_cancelled(self, event):
        """Every live registration of the session is cancelled, each with its event."""
        payload = event["payload"]
        now = utcnow()
        with session_lock(payload["session_id"]):
            self.db.transaction(lambda tx: store.cancel_session(tx, payload["session_id"], payload["reason"], now))
        store.mark_stale(self.db, store.officials_of_session(self.db, payload["session_id"]))

    # -- units --------------------------------------------------------------------------------------

    @rpc
    def create_unit(self, actor, data):
        """An administrative unit (a ward, a department, ...). 409 `unit_exists`; 422 `unknown_unit`
        for an unknown parent."""
        auth.require_operator(actor)
        fields = validated(schemas.UnitIn(), data)
        if fields.get("parent_code"):
            rules.require_known_parent(fields["parent_code"], store.find_unit(self.db, fields["parent_code"]))
        unit = store.unit_record(fields, utcnow())
        store.insert_unit(self.db, unit)
        return schemas.public_unit(unit)

    @rpc
    def list_units(self, actor, query=None):
        """Units by code, dissolved ones included with what they became: {"items", "next_cursor"}.
        `query`: status (active|dissolved), kind, q (words of the name or code, accents ignored),
        limit, cursor."""
        auth.require_operator_or_partner(actor, auth.partner_id_of(actor))
        asked = validated(schemas.UnitQuery(), query or {})
        return listed(store.units_page(self.db, asked.get("status"), asked.get("kind"), asked.get("q"),
                                       asked["limit"], asked.get("cursor")), schemas.public_unit)

    @rpc
    def load_map(self, actor):
        """Load the city's map (operator only): its 168 units of today with their official codes
        (vietnam-provinces), its departments and leadership, and the units of early 2025 the first
        class was for, dissolved on 2025-07-01 with their successors. Loading it again changes nothing.
        Returns {created, known}."""
        auth.require_operator(actor)
        return store.load_map(self.db, citymap.every_unit(), utcnow())

    @rpc
    def reorganize_units(self, actor, data):
        """Merges, renames and splits of units as data, checked as a whole (422 `invalid_reorganization`
        naming the change) and applied in one transaction: dissolved units stay for history with their
        successors; officials follow (a split's as its `officials` and `default` say; the others are
        listed in `to_reassign`); registrations keep the unit they were made under and move their
        current one; sessions' eligible units, seats and quotas follow. `units_reorganized` is
        published. Returns {changes, officials_moved, to_reassign, quotas_dropped}."""
        auth.require_operator(actor)
        fields = validated(schemas.ReorganizeIn(), data)
        named = {code for change in fields["changes"] for code in change["from_"]} | {
            unit["code"] for change in fields["changes"] for unit in change["into"]}
        found = store.units_by_code(self.db, named)
        steps = reorganisation.plan(fields["changes"], {code: found.get(code) for code in named})
        now = utcnow()
        try:
            return self.db.transaction(lambda tx: store.reorganize(tx, steps, fields["effective_on"], now))
        except DuplicateKeyError:
            raise conflict("unit_exists", "A unit this reorganisation makes exists.", {"changes": ["A code is taken."]})

    @rpc
    def merge_units(self, actor, data):
        """Merge units into one, as data (a reorganisation of one change, effective today): the old
        units stay, dissolved, for history; officials, sessions' eligible units, seats and quotas
        follow. Returns the unit they became. 409 `unit_exists` if the new code is taken; 422
        `invalid_reorganization` for codes that cannot be merged."""
        auth.require_operator(actor)
        fields = validated(schemas.UnitMergeIn(), data)
        into = fields["into"]
        if store.find_unit(self.db, into["code"]) is not None:  # a merge makes a unit; absorbing is reorganize's
            raise conflict("unit_exists", "Unit {} exists.".format(into["code"]), {"into": {"code": ["Already taken."]}})
        self.reorganize_units(actor, {"effective_on": local_date().isoformat(), "changes": [
            {"from": fields["from_"], "into": [{k: v for k, v in into.items() if v is not None}]}]})
        return schemas.public_unit(store.find_unit(self.db, into["code"]))

    @rpc
    def set_headcount(self, actor, code, data):
        """Declare how many officials of an audience group a unit has, for coverage when not all of
        them are imported (operator only). Returns the unit. 404 unknown unit."""
        auth.require_operator(actor)
        fields = validated(schemas.HeadcountIn(), data)
        unit = store.find_unit(self.db, code) if isinstance(code, str) else None
        if unit is None:
            raise not_found("unit", code)
        store.set_headcount(self.db, code, fields["audience_group"], fields["staff"])
        return schemas.public_unit(store.find_unit(self.db, code))

    # -- officials ----------------------------------------------------------------------------------

    @rpc
    def create_official(self, actor, data):
        """An official, phone in +84 form. 409 `official_exists` for a known email or phone; 422
        `unknown_unit` / `unit_merged`."""
        auth.require_operator(actor)
        fields = validated(schemas.OfficialIn(), data)
        rules.require_active_unit(store.find_unit(self.db, fields["unit_code"]), fields["unit_code"])
        official = rules.new_official(fields, new_id("official"), utcnow())
        store.insert_official(self.db, official)
        return schemas.public_official(official)

    @rpc
    def get_official(self, actor, official_id):
        """The official; 404 for an unknown id."""
        auth.require_operator(actor)
        return schemas.public_official(store.find_official(self.db, official_id))

    @rpc
    def list_officials(self, actor, query):
        """Officials by id, a page at a time ({"items", "next_cursor"}); `q` matches accent- and
        case-insensitively, each word the start of a word of the name, email or phone ("nguyen thi
        anh" finds "Nguyễn Thị Ánh"); `unit_code`. 422 `invalid_fields` for a bad limit or cursor."""
        auth.require_operator(actor)
        filters = validated(schemas.OfficialQuery(), query)
        return listed(store.officials_page(self.db, filters), schemas.public_official)

    @rpc
    def import_officials(self, actor, text):
        """A unit's staff list as CSV text (header: full_name, email, phone, unit_code,
        audience_group[, language]). Every row is checked like `POST /officials`; rows are matched by
        email: new ones are created, changed ones updated, identical ones left alone. Returns
        {created, updated, unchanged, errors: [{row, fields}]} (row = the spreadsheet's line number,
        the header being row 1). A header with unknown or missing columns refuses the whole file."""
        auth.require_operator(actor)
        return imports.import_csv(self.db, text, int(config.get("IMPORT_MAX_ROWS") or 100_000))

    # -- registrations --------------------------------------------------------------------------------

    @rpc
    def register(self, actor, session_id, data):
        """Register an official: `confirmed` while seats (and the unit's quota) remain, else
        `waitlisted` with a position (arrival order). 404 unknown session; 409 `already_registered`;
        422 `not_eligible` / `registration_closed` / `unknown_official`. The operator may record a
        registration after the cut-off with `after_cutoff: true`."""
        auth.require_operator(actor)
        fields = validated(REGISTRATION_IN, data)
        registration = self.seating.register(self.db, session_id, fields["official_id"], fields["after_cutoff"])
        return schemas.public_registration(registration)

    @rpc
    def cancel_registration(self, actor, registration_id, data):
        """Cancel a registration: a confirmed seat is freed and the first waitlisted official who
        fits (unit quota) is promoted in the same transaction. Cancelling a cancelled registration
        changes nothing. 404 unknown registration; 422 `registration_completed` once the course is
        completed."""
        auth.require_operator(actor)
        fields = validated(schemas.CancellationIn(), data)
        registration = store.find_registration(self.db, registration_id)
        now = utcnow()
        with session_lock(registration["session_id"]):
            cancelled, promoted = self.db.transaction(with_touched(lambda tx: store.cancel_registration(
                tx, registration_id, fields.get("reason"), fields["cause"], now)))
        store.mark_stale(self.db, [registration["official_id"]] + promoted)
        return schemas.public_registration(cancelled)

    @rpc
    def get_registration(self, actor, registration_id):
        """A registration with its status, waitlist position and attendance: for the operator with the
        official's contacts and QR token, for the partner delivering its session with name, unit and
        audience group only. 404 unknown registration."""
        registration = store.find_registration(self.db, registration_id)
        rules.require_session_reader(actor, store.find_session(self.db, registration["session_id"]))
        return schemas.registration_for(actor)(registration)

    @rpc
    def registration_qr(self, actor, registration_id):
        """The registration's QR code (its token) as SVG text (operator only: the token checks the
        official in)."""
        auth.require_operator(actor)
        registration = store.find_registration(self.db, registration_id)
        return certificates.qr_svg(registration["qr_token"])

    @rpc
    def list_registrations(self, actor, session_id, query):
        """A session's registrations, a page at a time ({"items", "next_cursor"}): by id, or with
        ?status=waitlisted the waitlist in order (the operator, or the partner delivering the
        session, which sees them as `get_registration` says). 404 unknown session; 422
        `invalid_fields` for a bad status, limit or cursor."""
        rules.require_session_reader(actor, store.find_session(self.db, session_id))
        filters = validated(schemas.RegistrationQuery(), query)
        return listed(store.registrations_page(self.db, session_id, filters), schemas.registration_for(actor))

    @rpc
    def set_quotas(self, actor, session_id, data):
        """Seats per unit on a session (`{"quotas": {"Q1": 30}}`, 0 removes a quota). Enforced by the
        same conditional update as the seats; a raised quota promotes from the waitlist. Returns the
        session's seats. 404 unknown session; 422 `unknown_unit` / `unit_merged`, `invalid_fields`
        for a unit the session does not invite."""
        auth.require_operator(actor)
        fields = validated(schemas.QuotasIn(), data)
        session = store.find_session(self.db, session_id)
        for code in fields["quotas"]:
            rules.require_quota_unit(session, code, store.find_unit(self.db, code))
        with session_lock(session_id):
            _, promoted = self.db.transaction(with_touched(lambda tx: store.set_quotas(tx, session_id, fields["quotas"])))
        store.mark_stale(self.db, promoted)
        return self.seats(session_id)

    @rpc
    def seats(self, session_id):
        """Seats taken, waitlist length, quotas and over-capacity, for the gateway's view of a session."""
        return schemas.public_seats(store.session_counters(self.db, session_id))

    @rpc
    def over_capacity_sessions(self, actor):
        """Sessions whose capacity fell below the seats already confirmed: nobody was dropped; an
        operator decides (raise the capacity, or cancel registrations)."""
        auth.require_operator(actor)
        return {"items": [schemas.public_over_capacity(s) for s in store.over_capacity_sessions(self.db)],
                "next_cursor": None}

    @leased_timer("COVERAGE_REFRESH_SECONDS", 2, lease="coverage-refresh")
    def fold_into_read_models(self):
        """Fold the officials changed since the last fold into coverage's and the reports' read
        models, a batch per transaction (a report folds what is left before it answers)."""
        store.refresh_stale_coverage(self.db)

    def domain_gauges(self):
        """Seats taken and waitlist length per upcoming session: what operators watch when a popular
        class opens."""
        return schemas.session_gauges(store.upcoming_sessions(self.db, utcnow()))

    # -- check-in and completion ----------------------------------------------------------------------

    @rpc
    def check_in(self, actor, session_id, data):
        """Record attendance of one part of a session by the token scanned from the official's QR
        code at the door (the operator, or the partner delivering it), from an hour before the session
        starts to its end; afterwards only the operator, with `after_session: true`. `part` (1-based)
        defaults to the part running now, else the first. The same check-in twice is one check-in
        (`already_checked_in: true`). Attending every part completes the course: `course_completed`
        with a certificate code. 404 unknown token for this session; 422 `checkin_not_open` /
        `checkin_closed` / `not_confirmed` / `unknown_part`; 403 `after_session` from a partner."""
        session = store.find_session(self.db, session_id)
        rules.require_session_reader(actor, session)  # who asks, before what is asked
        fields = validated(schemas.CheckinIn(), data)
        now = utcnow()
        rules.require_checkin_open(session, now, actor, fields["after_session"])
        registration = store.registration_by_token(self.db, session_id, fields["qr_token"])
        rules.require_token(registration, session_id, fields["qr_token"])
        rules.require_confirmed(registration)
        part = rules.part_to_check_in(rules.parts_of(session), fields.get("part"), now)
        # A sign-in sheet recorded after the class is dated when the part was held, not when it is typed.
        at = rules.attended_at(rules.parts_of(session), part, now)
        try:
            current = self.db.transaction(lambda tx: store.record_attendance(tx, registration, session, part, at))
            repeated = False
        except DuplicateKeyError:
            current, repeated = store.find_registration(self.db, registration["_id"]), True
        store.mark_stale(self.db, [registration["official_id"]])
        checkin = store.find_attendance(self.db, registration["_id"], part)
        return schemas.public_checkin(current, part, checkin, repeated, rules.sees_personal_data(actor))

    @rpc
    def certificate(self, code):
        """The printable Vietnamese certificate (HTML) for a verification code: anyone holding the
        code can verify it. 404 for an unknown code."""
        return certificates.render(store.find_certificate(self.db, code))

    # -- reports ------------------------------------------------------------------------------------

    @rpc
    def report(self, actor, by, query):
        """Registered, attended and completed per session, unit, district or partner (operator):
        {"columns", "rows"}; the gateway renders CSV or XLSX. 404 for an unknown grouping."""
        auth.require_operator(actor)
        asked = validated(schemas.ReportQuery(), query)
        if by not in reports.GROUPINGS:
            raise not_found("report", by)
        store.refresh_stale_coverage(self.db)
        return reports.build_from_counters(by, store.report_counters(self.db), store.report_units(self.db),
                                           store.report_sessions(self.db) if by == "session" else {}, asked["units"])

    @rpc
    def get_programme(self, actor):
        """The programme record: name, legal basis, period and target share per audience group
        (anyone with a token may read it). None before the operator sets it."""
        auth.require_operator_or_partner(actor, auth.partner_id_of(actor))
        return schemas.public_programme(store.programme(self.db))

    @rpc
    def set_programme(self, actor, data):
        """Set the programme record (operator only). Returns it."""
        auth.require_operator(actor)
        fields = validated(schemas.ProgrammeIn(), data)
        record = dict(fields, starts_on=fields["starts_on"].isoformat(), ends_on=fields["ends_on"].isoformat(),
                      targets={g: {"share": t["share"], "deadline": t["deadline"].isoformat()}
                               for g, t in fields["targets"].items()})
        store.save_programme(self.db, record, utcnow())
        return schemas.public_programme(store.programme(self.db))

    @rpc
    def coverage(self, actor, query):
        """Coverage for leaders (operator): {columns, items: [{key, name, staff, trained, coverage,
        registered, attended, target, gap}], totals, as_of, programme}, by unit, audience_group,
        partner or month, as things stood at the end of `as_of` (today by default)."""
        auth.require_operator(actor)
        asked = validated(schemas.CoverageQuery(), query or {})
        as_of = asked.get("as_of") or local_date()
        record = store.programme(self.db)
        targets = {g: t["share"] for g, t in ((record or {}).get("targets") or {}).items()}
        if asked["by"] != "partner":
            return dict(self._coverage_from_counters(asked["by"], as_of, record, targets),
                        columns=list(coverage.COLUMNS), as_of=as_of.isoformat(),
                        programme=schemas.public_programme(record))
        officials, units, registrations, sessions = store.coverage_inputs(self.db)
        first = min((r["created_at"] for r in registrations), default=None)
        starts = date.fromisoformat(record["starts_on"]) if record else (local_date(first) if first else as_of)
        # The month series covers the programme, or the last ten years of it at most.
        starts = max(starts, date(as_of.year - 10, as_of.month, 1))
        months = coverage.month_ends(starts, as_of, end_of_day) if asked["by"] == "month" else ()
        found = coverage.report(asked["by"], officials, registrations, units, targets, end_of_day(as_of),
                                sessions=sessions, months=months)
        return dict(found, columns=list(coverage.COLUMNS), as_of=as_of.isoformat(),
                    programme=schemas.public_programme(record))

    def _coverage_from_counters(self, by, as_of, record, targets):
        """Coverage by unit, audience group or month from the read model (store.refresh_coverage)."""
        store.refresh_stale_coverage(self.db)
        month = as_of.strftime("%Y-%m")
        counters = store.coverage_counters(self.db, month, series=by == "month")
        units = store.coverage_units(self.db)
        months = ()
        if by == "month":
            known = sorted(c["month"] for c in counters
                           if c["month"] not in (coverage.STAFF, coverage.TOTAL) and any(c["totals"]))
            first = date.fromisoformat(known[0] + "-01") if known else as_of
            starts = date.fromisoformat(record["starts_on"]) if record else first
            starts = max(starts, date(as_of.year - 10, as_of.month, 1))
            months = coverage.month_ends(starts, as_of, lambda day: day)
        return coverage.report_from_counters(by, counters, units, targets, month, as_of.strftime("%d"), months)

    @rpc
    def official_record(self, actor, official_id):
        """One official's training record: every registration with its session, attendance and
        certificate (operator). 404 unknown official."""
        auth.require_operator(actor)
        official = store.find_official(self.db, official_id)
        return schemas.public_record(official, *store.official_record(self.db, official_id))

    @rpc
    def api_schemas(self):
        """The request bodies and list queries this service accepts, for the gateway's OpenAPI document."""
        return describe(schemas.BODIES, schemas.QUERIES)
