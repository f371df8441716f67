"""Registration: administrative units, officials, registrations that never over-book, waitlists
with automatic promotion, per-unit quotas, check-in per session part, completion and certificates,
and the operators' reports.

Learns sessions from scheduling's events (session_scheduled / _rescheduled / _capacity_changed /
_cancelled) and keeps its own copy with the seat counters. Publishes registration_confirmed,
registration_waitlisted, registration_promoted, registration_cancelled, registration_rescheduled,
attendance_recorded, course_completed and units_merged, always through the outbox.

Seats: registrations queue in arrival order and are written in batches, one transaction per batch
(`seating`): each session's counters (`seats_taken < capacity`, and the unit's counter under its
quota) change with one conditional update that only matches what the transaction read, in the
transaction that inserts the registrations and their events: the database is the arbiter. Within
one process the batch holds each session's FIFO lock, which cancellations and capacity or quota
changes take too, so they don't write-conflict (conflicts make MongoDB abort and retry whole
transactions). With several replicas the database still never over-books; "arrival order" then
holds per replica.
"""
import secrets

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from backbone import auth
from backbone.errors import DomainError, conflict, invalid, not_found, rule_broken, validated
from backbone.logs import Tracing
from backbone.operated import Operated
from backbone.openapi import describe
from backbone.rpc import rpc
from backbone.clock import utcnow
from backbone.database import Database, new_id
from backbone.subscriber import subscribe
import contracts  # noqa: F401  (registers the contracts of the events it publishes and handles)
from services.registration import certificates, imports, reports, schemas, storage
from services.registration.seating import Seating, session_lock
from services.registration.storage import (
    LIVE, parts_of, public_official, public_registration, public_unit, session_ref)

# Built once: a marshmallow schema is reusable, and building one costs more than a registration's load.
REGISTRATION_IN = schemas.RegistrationIn()


def require_session_reader(actor, session):
    """The operator, or the partner that delivers the session."""
    auth.require_operator_or_partner(actor, session.get("partner_id"))


def emit_promoted(tx, session, registration):
    tx.emit("registration_promoted", {
        "registration_id": registration["_id"], "session": session_ref(session),
        "official": registration["official"], "qr_token": registration["qr_token"]})


class RegistrationService(Operated):
    name = "registration"

    db = Database(indexes=storage.INDEXES)
    tracing = Tracing()
    seating = Seating()

    # -- what scheduling tells us -------------------------------------------------------------------

    @subscribe("session_scheduled")
    def on_session_scheduled(self, event):
        payload = event["payload"]
        session = {k: payload[k] for k in (
            "offering_id", "partner_id", "title", "venue_name", "address", "room", "starts_at", "ends_at",
            "parts", "capacity", "audience_groups", "registration_closes_at")}
        # Scheduling may still name units that were merged since: follow them to the unit of today.
        session["eligible_units"] = self._current_codes(payload["eligible_units"])
        session.update(status="scheduled", seats_taken=0, waitlist_length=0, waitlist_next=0,
                       quotas={}, unit_seats={})

        def remember(tx):
            tx.sessions.update_one({"_id": payload["session_id"]}, {"$setOnInsert": session}, upsert=True)

        self.db.transaction(remember)

    @subscribe("session_rescheduled")
    def on_session_rescheduled(self, event):
        """The copy moves; every live registration stays and its official is told."""
        payload = event["payload"]
        session_id = payload["session_id"]
        moved = {k: payload[k] for k in ("title", "venue_name", "address", "room", "starts_at", "ends_at",
                                         "parts", "registration_closes_at")}

        def move(tx):
            session = self._known_session(tx, session_id)
            tx.sessions.update_one({"_id": session_id}, {"$set": moved})
            session.update(moved)
            for registration in tx.registrations.find({"session_id": session_id, "status": {"$in": list(LIVE)}}):
                tx.emit("registration_rescheduled", {
                    "registration_id": registration["_id"], "session": session_ref(session),
                    "official": registration["official"], "status": registration["status"],
                    "previous_starts_at": payload.get("previous_starts_at"),
                    "previous_ends_at": payload.get("previous_ends_at")})

        with session_lock(session_id):
            self.db.transaction(move)

    @subscribe("session_capacity_changed")
    def on_session_capacity_changed(self, event):
        """More seats promote from the waitlist. Fewer seats than confirmed drop nobody: the session
        is flagged `over_capacity` (how many too many) for an operator to decide."""
        payload = event["payload"]
        session_id = payload["session_id"]

        def resize(tx):
            session = self._known_session(tx, session_id)
            over = max(0, session["seats_taken"] - payload["capacity"])
            tx.sessions.update_one({"_id": session_id}, {"$set": {"capacity": payload["capacity"],
                                                                  "over_capacity": over}})
            session.update(capacity=payload["capacity"], over_capacity=over)
            storage.promote(tx, session, emit_promoted)

        with session_lock(session_id):
            self.db.transaction(resize)

    @subscribe("session_cancelled")
    def on_session_cancelled(self, event):
        """Every live registration of the session is cancelled, each with its event."""
        payload = event["payload"]
        session_id = payload["session_id"]
        now = utcnow()

        def cancel(tx):
            session = self._known_session(tx, session_id)
            tx.sessions.update_one({"_id": session_id}, {"$set": {
                "status": "cancelled", "cancel_reason": payload["reason"], "cancelled_at": now}})
            for registration in tx.registrations.find({"session_id": session_id, "status": {"$in": list(LIVE)}}):
                tx.registrations.update_one({"_id": registration["_id"]}, {"$set": {
                    "status": "cancelled", "cancelled_at": now, "cancel_reason": payload["reason"],
                    "cancel_cause": "session_cancelled", "status_before_cancel": registration["status"]}})
                tx.emit("registration_cancelled", {
                    "registration_id": registration["_id"], "session": session_ref(session),
                    "official": registration["official"], "reason": payload["reason"],
                    "cause": "session_cancelled"})

        with session_lock(session_id):
            self.db.transaction(cancel)

    @staticmethod
    def _known_session(tx, session_id):
        session = tx.sessions.find_one({"_id": session_id})
        if session is None:
            # Not yet heard of (events overtaking each other): retried, then dead-lettered.
            raise LookupError("session {} not known yet".format(session_id))
        return session

    def _current_codes(self, codes):
        """Unit codes with merged units replaced by what they were merged into (transitively)."""
        out = []
        for code in codes:
            seen = set()
            while code not in seen:
                seen.add(code)
                unit = self.db.units.find_one({"_id": code}, {"merged_into": 1})
                if not unit or not unit.get("merged_into"):
                    break
                code = unit["merged_into"]
            if code not in out:
                out.append(code)
        return out

    # -- units --------------------------------------------------------------------------------------

    @rpc
    def create_unit(self, actor, data):
        """An administrative unit (city → district → ward/commune). 409 `unit_exists`; 422
        `unknown_unit` for an unknown parent."""
        auth.require_operator(actor)
        fields = validated(schemas.UnitIn(), data)
        if fields.get("parent_code") and self.db.units.find_one({"_id": fields["parent_code"]}) is None:
            raise rule_broken("unknown_unit", "No unit {}.".format(fields["parent_code"]),
                              {"parent_code": ["Unknown unit."]})
        unit = dict(fields, _id=fields["code"], status="active", created_at=utcnow())
        try:
            self.db.units.insert_one(unit)
        except DuplicateKeyError:
            raise conflict("unit_exists", "Unit {} exists.".format(fields["code"]), {"code": ["Already taken."]})
        return public_unit(unit)

    @rpc
    def list_units(self, actor):
        auth.require_operator_or_partner(actor, auth.partner_id_of(actor))
        return {"items": [public_unit(u) for u in self.db.units.find({}).sort("_id", ASCENDING)],
                "next_cursor": None}

    @rpc
    def merge_units(self, actor, data):
        """Merge units into a new one, as data: the old units stay (status `merged`, `merged_into`)
        for history; officials, registrations, session quotas and sessions' eligible units move to
        the new unit; `units_merged` is published. 409 `unit_exists` if the new code is taken; 422
        `unknown_unit` / `unit_merged` for codes that cannot be merged."""
        auth.require_operator(actor)
        fields = validated(schemas.UnitMergeIn(), data)
        codes, into = list(dict.fromkeys(fields["from_"])), fields["into"]
        olds = {u["_id"]: u for u in self.db.units.find({"_id": {"$in": codes}})}
        missing = [c for c in codes if c not in olds]
        if missing:
            raise rule_broken("unknown_unit", "No unit {}.".format(", ".join(missing)), {"from": ["Unknown unit."]})
        merged = [c for c in codes if olds[c].get("status") == "merged"]
        if merged:
            raise rule_broken("unit_merged", "Already merged: {}.".format(", ".join(merged)),
                              {"from": ["Already merged."]})
        if into["code"] in codes:
            raise invalid({"into": {"code": ["Must be a new code."]}})
        first = olds[codes[0]]
        now = utcnow()
        unit = {"_id": into["code"], "code": into["code"], "name": into["name"],
                "kind": into.get("kind", first["kind"]), "parent_code": into.get("parent_code", first.get("parent_code")),
                "status": "active", "merged_from": codes, "merged_at": now, "created_at": now}

        def merge(tx):
            tx.units.insert_one(unit)
            tx.units.update_many({"_id": {"$in": codes}}, {"$set": {
                "status": "merged", "merged_into": into["code"], "merged_at": now}})
            tx.units.update_many({"parent_code": {"$in": codes}}, {"$set": {"parent_code": into["code"]}})
            tx.officials.update_many({"unit_code": {"$in": codes}}, {"$set": {"unit_code": into["code"]}})
            tx.registrations.update_many({"unit_code": {"$in": codes}}, {"$set": {"unit_code": into["code"]}})
            new_key = storage.unit_key(into["code"])
            old_keys = [storage.unit_key(c) for c in codes]
            touched = tx.sessions.find({"$or": [{"eligible_units": {"$in": codes}}] + [
                {"unit_seats." + k: {"$exists": True}} for k in old_keys] + [
                {"quotas." + k: {"$exists": True}} for k in old_keys]})
            for session in touched:
                eligible = [into["code"] if c in codes else c for c in session.get("eligible_units", [])]
                quotas, seats = dict(session.get("quotas") or {}), dict(session.get("unit_seats") or {})
                if any(k in quotas for k in old_keys):
                    quotas[new_key] = quotas.get(new_key, 0) + sum(quotas.pop(k, 0) for k in old_keys)
                seats[new_key] = seats.get(new_key, 0) + sum(seats.pop(k, 0) for k in old_keys)
                tx.sessions.update_one({"_id": session["_id"]}, {"$set": {
                    "eligible_units": list(dict.fromkeys(eligible)), "quotas": quotas, "unit_seats": seats}})
            tx.unit_history.insert_one({"_id": new_id("merge"), "from": codes, "into": into["code"],
                                        "into_name": into["name"], "merged_at": now})
            tx.emit("units_merged", {"from_codes": codes, "into_code": into["code"], "into_name": into["name"]})

        try:
            self.db.transaction(merge)
        except DuplicateKeyError:
            raise conflict("unit_exists", "Unit {} exists.".format(into["code"]), {"into": {"code": ["Already taken."]}})
        return public_unit(unit)

    # -- officials ----------------------------------------------------------------------------------

    def _active_unit(self, code, field="unit_code"):
        unit = self.db.units.find_one({"_id": code})
        if unit is None:
            raise rule_broken("unknown_unit", "No unit {}.".format(code), {field: ["Unknown unit."]})
        if unit.get("status") == "merged":
            raise rule_broken("unit_merged", "Unit {} was merged into {}.".format(code, unit["merged_into"]),
                              {field: ["Merged into {}.".format(unit["merged_into"])]})
        return unit

    @rpc
    def create_official(self, actor, data):
        """An official, phone in +84 form. 409 `official_exists` for a known email or phone; 422
        `unknown_unit` / `unit_merged`."""
        auth.require_operator(actor)
        fields = validated(schemas.OfficialIn(), data)
        fields["email"] = fields["email"].lower()
        self._active_unit(fields["unit_code"])
        official = dict(fields, id=new_id("official"), created_at=utcnow())
        official["_id"] = official["id"]
        official["search"] = storage.search_text(official)
        try:
            self.db.officials.insert_one(official)
        except DuplicateKeyError as exc:
            field = "phone" if "phone" in str(exc) else "email"
            raise conflict("official_exists", "An official with this {} exists.".format(field),
                           {field: ["Already registered."]})
        return public_official(official)

    @rpc
    def get_official(self, actor, official_id):
        auth.require_operator(actor)
        official = self.db.officials.find_one({"_id": official_id})
        if official is None:
            raise not_found("official", official_id)
        return public_official(official)

    @rpc
    def list_officials(self, actor, query):
        """Officials by name; `q` matches accent- and case-insensitively, each word the start of a
        word of the name, email or phone ("nguyen thi anh" finds "Nguyễn Thị Ánh"); `unit_code`."""
        auth.require_operator(actor)
        filters = validated(schemas.OfficialQuery(), query)
        clauses = [storage.search_query(filters["q"])] if filters.get("q") else []
        if filters.get("unit_code"):
            clauses.append({"unit_code": filters["unit_code"]})
        if filters.get("cursor"):
            clauses.append({"_id": {"$gt": filters["cursor"]}})
        found = list(self.db.officials.find({"$and": clauses} if clauses else {})
                     .sort("_id", ASCENDING).limit(filters["limit"] + 1))
        more = len(found) > filters["limit"]
        found = found[:filters["limit"]]
        return {"items": [public_official(o) for o in found], "next_cursor": found[-1]["_id"] if more else None}

    @rpc
    def import_officials(self, actor, text):
        """A unit's staff list as CSV text (header: full_name, email, phone, unit_code,
        audience_group[, language]). Every row is checked like `POST /officials`; rows are matched by
        email: new ones are created, changed ones updated, identical ones left alone. Returns
        {created, updated, unchanged, errors: [{row, fields}]} (row = the spreadsheet's line number,
        the header being row 1). A header with unknown or missing columns refuses the whole file."""
        auth.require_operator(actor)
        return imports.import_csv(self.db, text)

    # -- registrations --------------------------------------------------------------------------------

    def _session(self, session_id):
        session = self.db.sessions.find_one({"_id": session_id})
        if session is None:
            raise not_found("session", session_id)
        return session

    @rpc
    def register(self, actor, session_id, data):
        """Register an official: `confirmed` while seats (and the unit's quota) remain, else
        `waitlisted` with a position (arrival order). 404 unknown session; 409 `already_registered`;
        422 `not_eligible` / `registration_closed` / `unknown_official`. The operator may record a
        registration after the cut-off with `after_cutoff: true`."""
        auth.require_operator(actor)
        fields = validated(REGISTRATION_IN, data)
        return public_registration(self.seating.register(
            self.db, session_id, fields["official_id"], fields["after_cutoff"]))

    @rpc
    def cancel_registration(self, actor, registration_id, data):
        """Cancel a registration: a confirmed seat is freed and the first waitlisted official who
        fits (unit quota) is promoted in the same transaction. Cancelling a cancelled registration
        changes nothing. 422 `registration_completed` once the course is completed."""
        auth.require_operator(actor)
        fields = validated(schemas.CancellationIn(), data)
        registration = self.db.registrations.find_one({"_id": registration_id})
        if registration is None:
            raise not_found("registration", registration_id)
        session_id = registration["session_id"]
        now = utcnow()

        def cancel(tx):
            current = tx.registrations.find_one({"_id": registration_id})
            if current["status"] == "cancelled":
                return current
            if current["status"] not in LIVE:
                raise rule_broken("registration_completed", "A completed course cannot be cancelled.")
            change = {"status": "cancelled", "cancelled_at": now, "cancel_reason": fields.get("reason"),
                      "cancel_cause": fields["cause"], "status_before_cancel": current["status"]}
            tx.registrations.update_one({"_id": registration_id, "status": current["status"]},
                                        {"$set": change, "$unset": {"waitlist_position": ""}})
            if current["status"] == "confirmed":
                storage.free_seat(tx, session_id, current["unit_code"])
            else:
                tx.sessions.update_one({"_id": session_id}, {"$inc": {"waitlist_length": -1}})
            session = tx.sessions.find_one({"_id": session_id})
            tx.emit("registration_cancelled", {
                "registration_id": registration_id, "session": session_ref(session),
                "official": current["official"], "reason": fields.get("reason"), "cause": fields["cause"]})
            if current["status"] == "confirmed":
                storage.promote(tx, session, emit_promoted)
                if session.get("over_capacity"):
                    tx.sessions.update_one({"_id": session_id, "over_capacity": {"$gt": 0}},
                                           {"$inc": {"over_capacity": -1}})
            current.update(change)
            return current

        with session_lock(session_id):
            return public_registration(self.db.transaction(cancel))

    @rpc
    def get_registration(self, actor, registration_id):
        """A registration with its status, QR token, waitlist position and attendance (the operator,
        or the partner delivering its session)."""
        doc = self.db.registrations.find_one({"_id": registration_id})
        if doc is None:
            raise not_found("registration", registration_id)
        require_session_reader(actor, self._session(doc["session_id"]))
        return public_registration(doc)

    @rpc
    def registration_qr(self, actor, registration_id):
        """The registration's QR code (its token) as SVG text, for the confirmation."""
        doc = self.db.registrations.find_one({"_id": registration_id})
        if doc is None:
            raise not_found("registration", registration_id)
        require_session_reader(actor, self._session(doc["session_id"]))
        return certificates.qr_svg(doc["qr_token"])

    @rpc
    def list_registrations(self, actor, session_id, query):
        """A session's registrations, waitlist in order: {"items", "next_cursor"}; ?status= (the
        operator, or the partner delivering the session)."""
        session = self._session(session_id)
        require_session_reader(actor, session)
        filters = validated(schemas.RegistrationQuery(), query)
        match = {"session_id": session_id}
        if filters.get("status"):
            match["status"] = filters["status"]
        if filters.get("cursor"):
            match["_id"] = {"$gt": filters["cursor"]}
        order = [("waitlist_position", ASCENDING)] if filters.get("status") == "waitlisted" else [("_id", ASCENDING)]
        if filters.get("status") == "waitlisted":
            match.pop("_id", None)
            if filters.get("cursor"):
                match["waitlist_position"] = {"$gt": int(filters["cursor"]) if filters["cursor"].isdigit() else 0}
        found = list(self.db.registrations.find(match).sort(order).limit(filters["limit"] + 1))
        more = len(found) > filters["limit"]
        found = found[:filters["limit"]]
        cursor = None
        if more:
            cursor = str(found[-1]["waitlist_position"]) if filters.get("status") == "waitlisted" else found[-1]["_id"]
        return {"items": [public_registration(r) for r in found], "next_cursor": cursor}

    @rpc
    def set_quotas(self, actor, session_id, data):
        """Seats per unit on a session (`{"quotas": {"Q1": 30}}`, 0 removes a quota). Enforced by the
        same conditional update as the seats; a raised quota promotes from the waitlist. Returns the
        session's seats."""
        auth.require_operator(actor)
        fields = validated(schemas.QuotasIn(), data)
        session = self._session(session_id)
        for code in fields["quotas"]:
            self._active_unit(code, "quotas")
            if session["eligible_units"] and code not in session["eligible_units"]:
                raise invalid({"quotas": {code: ["Not an eligible unit of this session."]}})

        def apply(tx):
            change = {"$set": {}, "$unset": {}}
            for code, seats in fields["quotas"].items():
                key = "quotas." + storage.unit_key(code)
                if seats:
                    change["$set"][key] = seats
                else:
                    change["$unset"][key] = ""
            tx.sessions.update_one({"_id": session_id}, {k: v for k, v in change.items() if v})
            storage.promote(tx, tx.sessions.find_one({"_id": session_id}), emit_promoted)

        with session_lock(session_id):
            self.db.transaction(apply)
        return self.seats(session_id)

    def domain_gauges(self):
        """Seats taken and waitlist length per upcoming session: what operators watch when a popular
        class opens."""
        upcoming = list(self.db.sessions.find(
            {"status": "scheduled", "starts_at": {"$gte": utcnow()}},
            {"seats_taken": 1, "waitlist_length": 1, "capacity": 1}))
        return [
            {"name": name, "help": text, "labels": ["session_id"],
             "rows": [[s["_id"], s.get(field, 0)] for s in upcoming]}
            for name, text, field in (
                ("trainops_session_seats_taken", "Seats taken in an upcoming session.", "seats_taken"),
                ("trainops_session_capacity", "Seats an upcoming session has.", "capacity"),
                ("trainops_session_waitlist", "Officials waiting for a seat in an upcoming session.",
                 "waitlist_length"))]

    @rpc
    def seats(self, session_id):
        """Seats taken, waitlist length, quotas and over-capacity, for the gateway's view of a session."""
        doc = self.db.sessions.find_one({"_id": session_id}) or {}
        out = {"seats_taken": doc.get("seats_taken", 0), "waitlist_length": doc.get("waitlist_length", 0)}
        if doc.get("quotas"):
            out["quotas"] = {storage.unit_code_of(k): {"seats": v, "taken": (doc.get("unit_seats") or {}).get(k, 0)}
                             for k, v in doc["quotas"].items()}
        if doc.get("over_capacity"):
            out["over_capacity"] = doc["over_capacity"]
        return out

    @rpc
    def over_capacity_sessions(self, actor):
        """Sessions whose capacity fell below the seats already confirmed: nobody was dropped; an
        operator decides (raise the capacity, or cancel registrations)."""
        auth.require_operator(actor)
        found = self.db.sessions.find({"over_capacity": {"$gt": 0}, "status": "scheduled"}).sort("starts_at")
        return {"items": [{"session_id": s["_id"], "title": s["title"], "starts_at": s["starts_at"],
                           "capacity": s["capacity"], "seats_taken": s["seats_taken"],
                           "over_capacity": s["over_capacity"]} for s in found], "next_cursor": None}

    # -- check-in and completion ----------------------------------------------------------------------

    @rpc
    def check_in(self, actor, session_id, data):
        """Record attendance of one part of a session by the registration's QR token (the operator,
        or the partner delivering it). `part` (1-based) defaults to the part running now, else the
        first. The same check-in twice is one check-in (`already_checked_in: true`). Attending every
        part completes the course: `course_completed` with a certificate code. 404 unknown token for
        this session; 422 `not_confirmed` / `unknown_part`."""
        fields = validated(schemas.CheckinIn(), data)
        session = self._session(session_id)
        require_session_reader(actor, session)
        registration = self.db.registrations.find_one({"_id": storage.registration_of_token(fields["qr_token"])})
        if registration is None and "." not in fields["qr_token"]:
            # A token issued before tokens carried their registration's id (dev data): look it up.
            registration = self.db.registrations.find_one({"session_id": session_id, "qr_token": fields["qr_token"]})
        if registration is None or registration["session_id"] != session_id or not secrets.compare_digest(
                registration["qr_token"].encode(), fields["qr_token"].encode()):
            raise DomainError("not_found", "No registration with this QR token for this session.", {}, 404)
        if registration["status"] not in ("confirmed", "completed"):
            raise rule_broken("not_confirmed", "This registration is {}, not confirmed.".format(registration["status"]),
                              {"qr_token": ["Not a confirmed registration."]})
        parts = parts_of(session)
        part = fields.get("part") or self._part_now(parts)
        if part > len(parts):
            raise rule_broken("unknown_part", "The session has {} part(s).".format(len(parts)),
                              {"part": ["At most {}.".format(len(parts))]})
        attendance_id = "{}:{}".format(registration["_id"], part)
        now = utcnow()

        def record(tx):
            tx.attendance.insert_one({"_id": attendance_id, "registration_id": registration["_id"],
                                      "session_id": session_id, "official_id": registration["official_id"],
                                      "part": part, "checked_in_at": now})
            tx.registrations.update_one({"_id": registration["_id"]}, {"$addToSet": {"attended_parts": part}})
            tx.emit("attendance_recorded", {"registration_id": registration["_id"], "session_id": session_id,
                                            "official_id": registration["official_id"], "part": part,
                                            "checked_in_at": now})
            current = tx.registrations.find_one({"_id": registration["_id"]})
            if current["status"] == "confirmed" and set(current["attended_parts"]) >= set(range(1, len(parts) + 1)):
                code = certificates.new_code()
                tx.certificates.insert_one({
                    "_id": code, "registration_id": registration["_id"], "session_id": session_id,
                    "official": registration["official"], "unit_code": registration["unit_code"],
                    "session": session_ref(session), "partner_id": session.get("partner_id"),
                    "issued_at": now})
                tx.registrations.update_one({"_id": registration["_id"]}, {"$set": {
                    "status": "completed", "certificate_code": code, "completed_at": now}})
                tx.emit("course_completed", {
                    "registration_id": registration["_id"], "session": session_ref(session),
                    "official": registration["official"], "certificate_code": code,
                    "certificate_url": certificates.url(code)})
                current.update(status="completed", certificate_code=code)
            return current

        try:
            current = self.db.transaction(record)
            repeat = False
        except DuplicateKeyError:
            current = self.db.registrations.find_one({"_id": registration["_id"]})
            repeat = True
        checkin = self.db.attendance.find_one({"_id": attendance_id})
        out = {"registration_id": registration["_id"], "official_id": registration["official_id"],
               "full_name": registration["official"]["full_name"], "part": part,
               "checked_in_at": checkin["checked_in_at"], "already_checked_in": repeat,
               "status": current["status"], "attended_parts": sorted(current.get("attended_parts") or [])}
        if current.get("certificate_code"):
            out["certificate_code"] = current["certificate_code"]
            out["certificate_url"] = certificates.url(current["certificate_code"])
        return out

    @staticmethod
    def _part_now(parts):
        now = utcnow()
        for number, part in enumerate(parts, start=1):
            if part["starts_at"] <= now < part["ends_at"]:
                return number
        return 1

    @rpc
    def certificate(self, code):
        """The printable Vietnamese certificate (HTML) for a verification code: anyone holding the
        code can verify it. 404 for an unknown code."""
        found = self.db.certificates.find_one({"_id": code}) if isinstance(code, str) else None
        if found is None:
            raise not_found("certificate", code)
        return certificates.render(found)

    # -- reports ------------------------------------------------------------------------------------

    @rpc
    def report(self, actor, by, query):
        """Registered, attended and completed per session, unit, district or partner (operator):
        {"columns", "rows"}; the gateway renders CSV or XLSX."""
        auth.require_operator(actor)
        validated(schemas.ReportQuery(), query)
        if by not in reports.GROUPINGS:
            raise not_found("report", by)
        return reports.build(self.db, by)

    @rpc
    def api_schemas(self):
        """The request bodies and list queries this service accepts, for the gateway's OpenAPI document."""
        return describe(schemas.BODIES, schemas.QUERIES)
