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
import logging
import unicodedata
from datetime import date, timedelta

from nameko import config
from pymongo.errors import DuplicateKeyError

from backbone import auth
from backbone.clock import local_date, local_midnight, utcnow
from backbone.database import Database, new_id
from backbone.errors import conflict, forbidden, not_found, rule_broken, validated
from backbone.logs import Tracing
from backbone.openapi import describe
from backbone.operated import Operated
from backbone.paging import listed
from backbone.rpc import rpc
from backbone.subscriber import subscribe
from backbone.timer import leased_timer
from backbone import personal
from backbone.config import privacy_setting
import contracts  # noqa: F401  (registers the contracts of the events it publishes and handles)
from services.registration import certificates, coverage, imports, privacy, reorganisation, reports, rules, schemas
from services.registration import store
from services.registration import map as citymap
from services.registration.seating import Seating, session_lock

log = logging.getLogger(__name__)
# Built once: a marshmallow schema is reusable, and building one costs more than a registration's load.
REGISTRATION_IN = schemas.RegistrationIn()
# The read models' fold in the background works a fifth of the time at most (it sleeps four times as
# long as each batch took), and not while registrations are being made: it shares the database with them.
FOLD_REST = 4


def end_of_day(day):
    """The last instant of a local calendar day (what "as of that day" counts up to)."""
    return local_midnight(day + timedelta(days=1)) - timedelta(milliseconds=1)


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
        """The copy moves; every live registration stays and its official is told. An older time than
        the copy's (a retried or redelivered event overtaken by a newer reschedule) is ignored."""
        payload = event["payload"]
        with session_lock(payload["session_id"]):
            self.db.transaction(lambda tx: store.move_session(tx, payload))

    @subscribe("session_capacity_changed")
    def on_session_capacity_changed(self, event):
        """More seats promote from the waitlist. Fewer seats than confirmed drop nobody: the session
        is flagged `over_capacity` (how many too many) for an operator to decide. A capacity older
        than the copy's is ignored."""
        payload = event["payload"]
        with session_lock(payload["session_id"]):
            self.db.transaction(lambda tx: store.resize_session(
                tx, payload["session_id"], payload["capacity"], payload.get("revision")))

    @subscribe("session_cancelled")
    def on_session_cancelled(self, event):
        """Every live registration of the session is cancelled, each with its event."""
        payload = event["payload"]
        now = utcnow()
        with session_lock(payload["session_id"]):
            self.db.transaction(lambda tx: store.cancel_session(tx, payload["session_id"], payload["reason"], now))

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
        auth.require_operator_or_partner(actor, auth.partner_id_of(actor), reading=True)
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

    # -- coordinators ---------------------------------------------------------------------------------

    @rpc
    def create_coordinator(self, actor, code, data):
        """A coordinator of unit `code` (and of `unit_codes`, when given instead): {id, unit_codes,
        api_token, ...}; the token (`co_...`) is in this answer only, its SHA-256 digest is stored.
        404 unknown unit; 422 `unknown_unit` per field for a code that is no active unit."""
        auth.require_operator(actor)
        if not isinstance(code, str) or store.find_unit(self.db, code) is None:
            raise not_found("unit", code)
        fields = validated(schemas.CoordinatorIn(), data)
        codes = list(dict.fromkeys(fields.get("unit_codes") or [code]))
        problems = rules.coordinator_unit_problems(codes, store.units_by_code(self.db, codes))
        if problems:
            raise rule_broken("unknown_unit", "A coordinator acts for active units only.", {"unit_codes": problems})
        token, digest = rules.coordinator_token()
        coordinator = rules.new_coordinator(fields, codes, new_id("coordinator"), digest, auth.actor_label(actor),
                                            utcnow())
        store.insert_coordinator(self.db, coordinator)
        # The name and the address are personal data: the log says who and for which units only.
        log.info("coordinator %s created for %s by %s", coordinator["id"], ",".join(codes), auth.actor_label(actor))
        return dict(schemas.public_coordinator(coordinator), api_token=token)

    @rpc
    def list_coordinators(self, actor, code, query):
        """The coordinators acting for unit `code` (operators, viewers too): {"items", "next_cursor"}.
        404 unknown unit."""
        auth.require_operator(actor, reading=True)
        if not isinstance(code, str) or store.find_unit(self.db, code) is None:
            raise not_found("unit", code)
        asked = validated(schemas.CoordinatorQuery(), query or {})
        return listed(store.coordinators_page(self.db, code, asked["limit"], asked.get("cursor")),
                      schemas.public_coordinator)

    @rpc
    def revoke_coordinator(self, actor, coordinator_id):
        """Revoke a coordinator's token: from the next request on it is refused (401). Revoking
        again changes nothing. 404 unknown coordinator."""
        auth.require_operator(actor)
        store.find_coordinator(self.db, coordinator_id)
        revoked = store.revoke_coordinator(self.db, coordinator_id, auth.actor_label(actor), utcnow())
        log.info("coordinator %s revoked by %s", coordinator_id, auth.actor_label(actor))
        return schemas.public_coordinator(revoked)

    @rpc
    def authenticate_coordinator(self, token):
        """The actor of a coordinator's token, `{"role": "coordinator", "coordinator_id", "unit_codes"}`,
        or None for an unknown or revoked one. `unit_codes` are its units and, transitively, what they
        became through merges and splits, as of now (asked on every request: a reorganisation or a
        revocation counts from the next one)."""
        if not isinstance(token, str) or not token.startswith(rules.COORDINATOR_TOKEN_PREFIX):
            return None
        coordinator = store.coordinator_by_token(self.db, rules.token_digest(token))
        if coordinator is None:
            return None
        return {"role": "coordinator", "coordinator_id": coordinator["id"], "unit_codes": rules.units_with_successors(
            coordinator["unit_codes"], store.successors_map(self.db))}

    # -- officials ----------------------------------------------------------------------------------

    @rpc
    def create_official(self, actor, data):
        """An official, phone in +84 form (an operator, or the coordinator of its unit: 403
        `unit_not_yours` for another unit). 409 `official_exists` for a known email or phone; 422
        `unknown_unit` / `unit_merged`."""
        units = rules.units_in_scope(actor)
        if units is None:
            auth.require_operator(actor)
        fields = validated(schemas.OfficialIn(), data)
        if units is not None:
            rules.require_acts_for(actor, fields["unit_code"])
        rules.require_active_unit(store.find_unit(self.db, fields["unit_code"]), fields["unit_code"])
        official = rules.new_official(fields, new_id("official"), utcnow())
        store.insert_official(self.db, official)
        return schemas.public_official(official)

    @rpc
    def update_official(self, actor, official_id, data):
        """Correct an official's record: any of full_name, email, phone, unit_code, audience_group,
        language, checked as on creation (an operator, or the coordinator of the official's unit, and
        of the new unit when it moves: 403 `unit_not_yours` otherwise). Their live registrations'
        copy follows (notices still to come go to the new address). Returns the official. 404 unknown
        id; 409 `official_exists` for another official's email or phone; 422 `unknown_unit` /
        `unit_dissolved`, `invalid_fields`."""
        if rules.units_in_scope(actor) is None:
            auth.require_operator(actor)  # who asks, before whether the id exists
        fields = validated(schemas.OfficialChangeIn(), data)
        official = store.find_official(self.db, official_id)
        rules.require_acts_for(actor, official["unit_code"], field="official_id")
        if "unit_code" in fields:
            rules.require_acts_for(actor, fields["unit_code"])
            if fields["unit_code"] != official["unit_code"]:
                rules.require_active_unit(store.find_unit(self.db, fields["unit_code"]), fields["unit_code"])
        if "email" in fields:
            fields["email"] = fields["email"].lower()
        change = {k: v for k, v in fields.items() if official.get(k) != v}
        if not change:
            return schemas.public_official(official)
        return schemas.public_official(store.change_official(self.db, official, change, utcnow()))

    @rpc
    def get_official(self, actor, official_id):
        """The official (operators; a coordinator: of its units, else 403 `unit_not_yours`); 404 for
        an unknown id."""
        rules.units_in_scope(actor)  # who asks, before whether the id exists
        official = store.find_official(self.db, official_id)
        rules.require_acts_for(actor, official["unit_code"], reading=True)
        return schemas.public_official(official)

    @rpc
    def list_officials(self, actor, query):
        """Officials by id, a page at a time ({"items", "next_cursor"}); `q` matches accent- and
        case-insensitively, words in any order: several words are a name, every word but the last a
        whole word of it and the last the start of another ("nguyen thi anh" finds "Nguyễn Thị Ánh"
        and "Nguyễn Thị Anh Thư", "ngu thi anh" neither); one word, or an email or phone number whole
        or in part (a digit or one of @ . _ + -), matches the start of a word of the name, email or
        phone; `unit_code`. A coordinator sees its units' officials only (403
        `unit_not_yours` for `unit_code` of another unit). 422 `invalid_fields` for a bad limit or cursor."""
        units = rules.units_in_scope(actor)
        filters = validated(schemas.OfficialQuery(), query)
        if units is not None and filters.get("unit_code"):
            rules.require_acts_for(actor, filters["unit_code"], reading=True)
        return listed(store.officials_page(self.db, filters, units), schemas.public_official)

    @rpc
    def import_officials(self, actor, text):
        """A unit's staff list as CSV text (header: full_name, email, phone, unit_code,
        audience_group[, language]). Every row is checked like `POST /officials`; rows are matched by
        email: new ones are created, changed ones updated, identical ones left alone. Returns
        {created, updated, unchanged, errors: [{row, fields}]} (row = the spreadsheet's line number,
        the header being row 1). A header with unknown or missing columns refuses the whole file. A
        coordinator imports for its units only: a row of another unit, or of an official who is in
        another unit now, is a row error with `code: unit_not_yours`; the other rows are imported."""
        units = rules.units_in_scope(actor)
        if units is None:
            auth.require_operator(actor)
        return imports.import_csv(self.db, text, int(config.get("IMPORT_MAX_ROWS") or 100_000), units)

    # -- registrations --------------------------------------------------------------------------------

    @rpc
    def register(self, actor, session_id, data):
        """Register an official: `confirmed` while seats (and the unit's quota) remain, else
        `waitlisted` with a position (arrival order). 404 unknown session; 409 `already_registered`;
        422 `not_eligible` / `registration_closed` / `unknown_official`. The operator may record a
        registration after the cut-off with `after_cutoff: true`. A coordinator registers its units'
        officials (403 `unit_not_yours` otherwise), an official only themself, under the same rules,
        never after the cut-off."""
        units = auth.coordinator_units(actor)
        if units is None and auth.official_id_of(actor) is None:
            auth.require_operator(actor)  # who asks, before what is asked
        fields = validated(REGISTRATION_IN, data)
        if units is None:
            # An official registers themself (self-service), with every rule as for the operator.
            rules.require_registrant(actor, fields["official_id"])
        else:
            if fields["after_cutoff"]:
                raise forbidden("Only the operator records a registration after the cut-off.")
            official = self.db.officials.find_one({"_id": fields["official_id"]}, {"unit_code": 1})
            if official is not None:  # an unknown one is refused by the seating, as for operators
                rules.require_acts_for(actor, official["unit_code"], field="official_id")
        late = fields["after_cutoff"] and auth.is_operator(actor)
        return schemas.registration_for(actor)(self.seating.register(
            self.db, session_id, fields["official_id"], late))

    @rpc
    def cancel_registration(self, actor, registration_id, data):
        """Cancel a registration: a confirmed seat is freed and the first waitlisted official who
        fits (unit quota) is promoted in the same transaction. Cancelling a cancelled registration
        changes nothing. 404 unknown registration; 422 `registration_completed` once the course is
        completed. A coordinator cancels its units' registrations (403 `unit_not_yours` otherwise), an
        official their own (another's is unknown to them)."""
        units = auth.coordinator_units(actor)
        if units is None and auth.official_id_of(actor) is None:
            auth.require_operator(actor)
        fields = validated(schemas.CancellationIn(), data)
        registration = store.find_registration(self.db, registration_id)
        if units is not None:
            rules.require_acts_for(actor, registration["unit_code"], field="registration_id")
        else:
            rules.require_own_registration(actor, registration)
        now = utcnow()
        with session_lock(registration["session_id"]):
            return schemas.registration_for(actor)(self.db.transaction(lambda tx: store.cancel_registration(
                tx, registration_id, fields.get("reason"), fields["cause"], now)))

    @rpc
    def get_registration(self, actor, registration_id):
        """A registration with its status, waitlist position and attendance: for the operator with the
        official's contacts and QR token, for the partner delivering its session with name, unit and
        audience group only, for the coordinator of its official's unit without the QR token (403
        `unit_not_yours` for another unit's). 404 unknown registration."""
        registration = store.find_registration(self.db, registration_id)
        if auth.coordinator_units(actor) is not None:
            rules.require_acts_for(actor, registration["unit_code"], field="registration_id", reading=True)
        else:
            rules.require_session_reader(actor, store.find_session(self.db, registration["session_id"]),
                                          reading=True)
        return schemas.registration_for(actor)(registration)

    @rpc
    def registration_qr(self, actor, registration_id):
        """The registration's QR code (its token) as SVG text (operator only: the token checks the
        official in)."""
        registration = store.find_registration(self.db, registration_id)
        rules.require_own_registration(actor, registration, reading=True)
        if not registration.get("qr_token"):
            # Forgotten once its session ended (retention: privacy.forget_qr_tokens).
            raise not_found("qr_token", registration_id)
        return certificates.qr_svg(registration["qr_token"])

    @rpc
    def list_registrations(self, actor, session_id, query):
        """A session's registrations, a page at a time ({"items", "next_cursor"}): by id, or with
        ?status=waitlisted the waitlist in order (the operator, or the partner delivering the
        session, which sees them as `get_registration` says). 404 unknown session; 422
        `invalid_fields` for a bad status, limit or cursor."""
        rules.require_session_reader(actor, store.find_session(self.db, session_id), reading=True)
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
            self.db.transaction(lambda tx: store.set_quotas(tx, session_id, fields["quotas"]))
        return self.seats(session_id)

    @rpc
    def seats(self, session_id):
        """Seats taken, waitlist length, quotas and over-capacity, for the gateway's view of a session."""
        return schemas.public_seats(store.session_counters(self.db, session_id))

    @rpc
    def over_capacity_sessions(self, actor):
        """Sessions whose capacity fell below the seats already confirmed: nobody was dropped; an
        operator decides (raise the capacity, or cancel registrations)."""
        auth.require_operator(actor, reading=True)
        return {"items": [schemas.public_over_capacity(s) for s in store.over_capacity_sessions(self.db)],
                "next_cursor": None}

    @leased_timer("COVERAGE_REFRESH_SECONDS", 2, lease="coverage-refresh")
    def fold_into_read_models(self):
        """Fold into coverage's and the reports' read models the officials that registration's
        events since the last fold name and those marked changed, a batch per transaction (a
        report folds what is left before it answers). Off the registration path: a registration's
        transaction writes nothing for them. It rests FOLD_REST times as long as each batch took,
        and waits while registrations are being made: it shares the database with them."""
        try:
            store.fold_read_models(self.db, rest=FOLD_REST)
        except store.FoldDeferred:
            pass  # the next tick goes on from the checkpoint (a report folds what is left before it answers)

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
        checkin = store.find_attendance(self.db, registration["_id"], part)
        return schemas.public_checkin(current, part, checkin, repeated, rules.sees_personal_data(actor))

    @rpc
    def certificate(self, code):
        """The printable Vietnamese certificate (HTML) for a verification code: anyone holding the
        code can verify it; a revoked one says so. 404 for an unknown code."""
        certificate = store.find_certificate(self.db, code)
        return certificates.render(certificate, store.unit_name(self.db, certificate.get("unit_code")))

    @rpc
    def certificate_record(self, code):
        """What a certificate says, for its PDF (anyone holding the code): public_certificate, with
        the offering it was for. 404 for an unknown code."""
        certificate = store.find_certificate(self.db, code)
        session = store.session_counters(self.db, certificate["session_id"]) or {}
        certificate.setdefault("offering_id", session.get("offering_id"))
        return schemas.public_certificate(certificate, store.unit_name(self.db, certificate.get("unit_code")))

    @rpc
    def revoke_certificate(self, actor, code, data):
        """Revoke a certificate (operator) with a reason: its verification page and PDF say so from
        now on. 404 unknown code; 409 `certificate_revoked` the second time."""
        auth.require_operator(actor)
        fields = validated(schemas.CertificateRevocationIn(), data)
        rules.require_revocable(store.find_certificate(self.db, code))
        revoked = store.revoke_certificate(self.db, code, fields["reason"], auth.actor_label(actor), utcnow())
        if revoked is None:  # revoked meanwhile by someone else
            rules.require_revocable(store.find_certificate(self.db, code))
        return schemas.public_certificate(revoked, store.unit_name(self.db, revoked.get("unit_code")))

    # -- officials acting for themselves (/me) ---------------------------------------------------------

    @rpc
    def official_for_sign_in(self, email):
        """{id, full_name, language} of the official with this email address (case and surrounding
        spaces ignored), or None: what the gateway needs to send a sign-in link, and no more."""
        if not isinstance(email, str) or len(email) > 254:
            return None
        found = store.official_by_email(self.db, unicodedata.normalize("NFC", email).strip().lower())
        if found is None:
            return None
        return {"id": found["_id"], "full_name": found["full_name"], "language": found.get("language", "vi")}

    @rpc
    def my_page(self, actor):
        """What /me shows an official (the official themself only): {official: {id, full_name,
        unit_code, unit_name, language}, registrations, open_sessions, certificates}."""
        official_id = auth.official_id_of(actor)
        if official_id is None:
            raise forbidden("Only an official signed in at /me sees this.")
        official = store.find_official(self.db, official_id)
        now = utcnow()
        registrations, sessions = store.registrations_of(self.db, official_id)
        joined = {r["session_id"] for r in registrations if r["status"] in rules.LIVE + ("completed",)}
        open_ = [s for s in store.sessions_open_from(self.db, now)
                 if s["_id"] not in joined and rules.open_to(s, official, now)]
        return {"official": {"id": official_id, "full_name": official["full_name"],
                             "unit_code": official["unit_code"],
                             "unit_name": store.unit_name(self.db, official["unit_code"]),
                             "language": official.get("language", "vi")},
                "registrations": [schemas.own_registration(r, sessions.get(r["session_id"])) for r in registrations],
                "open_sessions": [schemas.open_session(s) for s in open_],
                "certificates": [schemas.public_certificate(c) for c in store.certificates_of(self.db, official_id)]}

    @rpc
    def set_my_language(self, actor, data):
        """The official's own choice of language for notices and pages (the official only). Returns
        {language}."""
        official_id = auth.official_id_of(actor)
        if official_id is None:
            raise forbidden("Only the official chooses their language.")
        fields = validated(schemas.LanguageIn(), data)
        store.find_official(self.db, official_id)
        store.set_official_language(self.db, official_id, fields["language"])
        return {"language": fields["language"]}

    # -- reports ------------------------------------------------------------------------------------

    @rpc
    def report(self, actor, by, query):
        """Registered, attended and completed per session, unit, district or partner (operator):
        {"columns", "rows"}; the gateway renders CSV or XLSX. A coordinator's report counts its units'
        registrations only. 404 for an unknown grouping."""
        units = rules.units_in_scope(actor)  # None: operators and viewers, every unit
        asked = validated(schemas.ReportQuery(), query)
        if by not in reports.GROUPINGS:
            raise not_found("report", by)
        store.fold_read_models(self.db, pending=True)
        return reports.build_from_counters(by, store.report_counters(self.db, by, units), store.report_units(self.db),
                                           store.report_sessions(self.db) if by == "session" else {}, asked["units"])

    @rpc
    def get_programme(self, actor):
        """The programme record: name, legal basis, period and target share per audience group
        (anyone with a token may read it). None before the operator sets it."""
        auth.require_operator_or_partner(actor, auth.partner_id_of(actor), reading=True)
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
        partner or month, as things stood at the end of `as_of` (today by default). A coordinator's
        counts its units' officials only."""
        scope = rules.units_in_scope(actor)  # None: operators and viewers, every unit
        asked = validated(schemas.CoverageQuery(), query or {})
        as_of = asked.get("as_of") or local_date()
        record = store.programme(self.db)
        targets = {g: t["share"] for g, t in ((record or {}).get("targets") or {}).items()}
        if asked["by"] != "partner":
            return dict(self._coverage_from_counters(asked["by"], as_of, record, targets, scope),
                        columns=list(coverage.COLUMNS), as_of=as_of.isoformat(),
                        programme=schemas.public_programme(record))
        officials, units, registrations, sessions = store.coverage_inputs(self.db)
        if scope is not None:
            officials, units, registrations = coverage.within(scope, officials, units, registrations)
        first = min((r["created_at"] for r in registrations), default=None)
        starts = date.fromisoformat(record["starts_on"]) if record else (local_date(first) if first else as_of)
        # The month series covers the programme, or the last ten years of it at most.
        starts = max(starts, date(as_of.year - 10, as_of.month, 1))
        months = coverage.month_ends(starts, as_of, end_of_day) if asked["by"] == "month" else ()
        found = coverage.report(asked["by"], officials, registrations, units, targets, end_of_day(as_of),
                                sessions=sessions, months=months)
        return dict(found, columns=list(coverage.COLUMNS), as_of=as_of.isoformat(),
                    programme=schemas.public_programme(record))

    def _coverage_from_counters(self, by, as_of, record, targets, scope=None):
        """Coverage by unit, audience group or month from the read model (store.refresh_coverage);
        a coordinator's (`scope`) from its units' counters."""
        store.fold_read_models(self.db, pending=True)
        month = as_of.strftime("%Y-%m")
        counters = store.coverage_counters(self.db, month, series=by == "month", units=scope)
        units = store.coverage_units(self.db)
        months = ()
        if by == "month":
            known = sorted(c["month"] for c in counters
                           if c["month"] not in (coverage.STAFF, coverage.TOTAL) and any(c["totals"]))
            first = date.fromisoformat(known[0] + "-01") if known else as_of
            starts = date.fromisoformat(record["starts_on"]) if record else first
            starts = max(starts, date(as_of.year - 10, as_of.month, 1))
            months = coverage.month_ends(starts, as_of, lambda day: day)
        return coverage.report_from_counters(by, counters, units, targets, month, as_of.strftime("%d"), months,
                                             scope=scope)

    @rpc
    def official_record(self, actor, official_id):
        """One official's training record: every registration with its session, attendance and
        certificate (operator; a coordinator: of its units, else 403 `unit_not_yours`). 404 unknown
        official."""
        rules.units_in_scope(actor)
        official = store.find_official(self.db, official_id)
        rules.require_acts_for(actor, official["unit_code"], reading=True)
        return schemas.public_record(official, *store.official_record(self.db, official_id))

    # -- personal data (Decree 13/2023/ND-CP) ---------------------------------------------------------

    @rpc
    def erase_official(self, actor, official_id, data):
        """Erase an official's personal data on request (admin): their name, email, phone and search
        text go from the official, their registrations and certificates (which stay verifiable, the
        name shown as erased) and the events waiting in the outbox; `official_erased` tells every
        service to do the same. Erasing again changes nothing. Returns {official_id, erased_at,
        erased_by, reason}. 404 unknown official; 422 `invalid_fields` without a reason."""
        auth.require_admin(actor)
        fields = validated(schemas.ErasureIn(), data)
        official = store.find_official(self.db, official_id)
        if privacy.is_erased(official):
            return schemas.public_erasure(official)
        now = utcnow()
        event_id = self.db.transaction(
            lambda tx: privacy.erase(tx, official_id, fields["reason"], auth.actor_label(actor), now))
        # The relay may have been publishing an event of theirs while the erasure committed, and
        # archive it after: once our event is out, every earlier one is archived, and scrubbed now
        # (if the broker is away, the retention sweep does it later).
        personal.wait_published(self.db, event_id, timeout=5)
        personal.erase_official_records(self.db, official_id, utcnow())
        return schemas.public_erasure(store.find_official(self.db, official_id))

    @rpc
    def personal_data(self, actor, official_id):
        """What registration holds about one official (an admin, or the official themself): the
        official, registrations, attendance, certificates. 404 unknown official."""
        personal.require_subject_or_admin(actor, official_id)
        found = privacy.held_about(self.db, official_id)
        if found is None:
            raise not_found("official", official_id)
        return found

    @leased_timer("PRIVACY_SWEEP_SECONDS", 3600, lease="registration-retention")
    def retention_sweep(self):
        """QR tokens of sessions that ended, and the personal fields of archived events about sessions
        that ended longer ago than the retention period (README: Personal data); the records of
        officials erased in the last day once more (an erasure that met a relay mid-batch)."""
        self.sweep_retention(utcnow())

    def sweep_retention(self, now):
        qr_before = now - timedelta(hours=float(privacy_setting("qr_token_hours")))
        personal_before = now - timedelta(days=float(privacy_setting("personal_data_days")))
        while privacy.forget_qr_tokens(self.db, qr_before) == 200:
            pass
        for official in privacy.recently_erased(self.db, now - timedelta(days=1)):
            personal.erase_official_records(self.db, official["_id"], now)
        for what, before in (("qr_token", qr_before), ("personal", personal_before)):
            personal.strip_archived_events(self.db, before, now, what)

    @rpc
    def api_schemas(self):
        """The request bodies and list queries this service accepts, for the gateway's OpenAPI document."""
        return describe(schemas.BODIES, schemas.QUERIES)
