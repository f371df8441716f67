"""What units, officials, registrations, quotas, check-ins and merges look like on the way in, and
what leaves the service: the public shapes of units, officials, registrations, seats and check-ins,
and the references to a session and an official that registrations and events carry."""
from datetime import date

import phonenumbers
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from backbone.fields import Id, OneOf, SearchWords, Text
from backbone.paging import PageQuery
from contracts.common import AUDIENCE_GROUPS
from services.registration import certificates, rules

# Since 2025-07-01 the city has wards, communes and one special zone; its departments and its leadership
# are units too. `district` (and `ward_commune`, the kind this system once gave wards) are history.
UNIT_KINDS = ("city", "ward", "commune", "special_zone", "department", "leadership", "district", "ward_commune")
UNIT_STATUSES = ("active", "dissolved")


def UnitCode(**kwargs):  # noqa: N802 (used like a field class)
    """A unit's code: letters, digits, `_`, `.` and `-`, at most 32."""
    return fields.Str(validate=[validate.Length(min=1, max=32), validate.Regexp(r"^[A-Za-z0-9_.-]+$")], **kwargs)


def vietnamese_phone(value):
    """+84 form of a Vietnamese mobile or landline number, or ValidationError."""
    try:
        number = phonenumbers.parse(value, "VN")
    except phonenumbers.NumberParseException:
        raise ValidationError("Not a phone number.")
    if number.country_code != 84 or not phonenumbers.is_valid_number(number):
        raise ValidationError("Not a Vietnamese mobile or landline number.")
    if phonenumbers.number_type(number) not in (
            phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        raise ValidationError("Not a Vietnamese mobile or landline number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class Phone(fields.Str):
    def _deserialize(self, value, attr, data, **kwargs):
        return vietnamese_phone(super()._deserialize(value, attr, data, **kwargs))


# -- requests -------------------------------------------------------------------------------------------

class UnitIn(Schema):
    code = UnitCode(required=True)
    name = Text(200, required=True)
    kind = OneOf(UNIT_KINDS, required=True)
    parent_code = fields.Str(allow_none=True, validate=validate.Length(max=32))


class NewUnit(Schema):
    """A unit a reorganisation makes (or, alone in `into`, an existing one that takes the others)."""
    code = UnitCode(required=True)
    name = Text(200, required=True)
    kind = OneOf(UNIT_KINDS)
    parent_code = fields.Str(allow_none=True, validate=validate.Length(max=32))


class UnitMergeIn(Schema):
    from_ = fields.List(UnitCode(), required=True, data_key="from", validate=validate.Length(min=1, max=50))
    into = fields.Nested(NewUnit, required=True)


class ChangeIn(Schema):
    """One change: `from` several units into one (a merge), one into one (a rename), or one into
    several (a split, whose officials go where `officials` says, else to `default`, else are listed
    to be reassigned)."""
    from_ = fields.List(UnitCode(), required=True, data_key="from", validate=validate.Length(min=1, max=200))
    into = fields.List(fields.Nested(NewUnit), required=True, validate=validate.Length(min=1, max=50))
    officials = fields.Dict(keys=Id(), values=UnitCode(), validate=validate.Length(max=100_000), metadata={
        "description": "A split: which of the new units each named official goes to."})
    default = UnitCode(allow_none=True, metadata={
        "description": "A split: where the officials not named in `officials` go; without it they are "
                       "listed in `to_reassign` for their coordinators."})


class ReorganizeIn(Schema):
    effective_on = fields.Date(required=True)
    changes = fields.List(fields.Nested(ChangeIn), required=True, validate=validate.Length(min=1, max=500))


class HeadcountIn(Schema):
    """How many officials of an audience group a unit has, when not all of them are imported."""
    audience_group = OneOf(AUDIENCE_GROUPS, required=True)
    staff = fields.Int(strict=True, required=True, validate=validate.Range(min=0, max=1_000_000))


class UnitQuery(PageQuery):
    status = OneOf(UNIT_STATUSES)
    kind = OneOf(UNIT_KINDS)
    q = SearchWords(metadata={
        "description": "Words of the name or code, accents and case ignored."})


class OfficialIn(Schema):
    full_name = Text(200, required=True)
    email = fields.Email(required=True, validate=validate.Length(max=254))
    phone = Phone(required=True, validate=validate.Length(max=32))
    unit_code = Text(32, required=True)
    audience_group = OneOf(AUDIENCE_GROUPS, required=True)
    language = OneOf(("vi", "en"), load_default="vi")

    @validates("email")
    def lower_case(self, value, **kwargs):
        if value != value.strip():
            raise ValidationError("No surrounding spaces.")


class OfficialChangeIn(Schema):
    """An official's record corrected: any of OfficialIn's fields, checked the same way; what is not
    sent stays as it is (so no default language either)."""
    full_name = Text(200)
    email = fields.Email(validate=validate.Length(max=254))
    phone = Phone(validate=validate.Length(max=32))
    unit_code = Text(32)
    audience_group = OneOf(AUDIENCE_GROUPS)
    language = OneOf(("vi", "en"))

    @validates("email")
    def lower_case(self, value, **kwargs):
        if value != value.strip():
            raise ValidationError("No surrounding spaces.")

    @validates_schema
    def something_changes(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one field to change.")


class CoordinatorIn(Schema):
    """A unit's coordinator: who nominates its staff. `unit_codes` defaults to the unit of the path."""
    full_name = Text(200, required=True)
    email = fields.Email(required=True, validate=validate.Length(max=254))
    phone = Phone(validate=validate.Length(max=32))
    unit_codes = fields.List(UnitCode(), validate=validate.Length(min=1, max=50))


class CoordinatorQuery(PageQuery):
    """A unit's coordinators, a page at a time."""


class OfficialQuery(PageQuery):
    q = SearchWords(metadata={
        "description": "Accents and case ignored, words in any order. Several words: a name, each word but the "
                       "last a whole word of it, the last the start of another (\"van an\": Nguyễn Văn An, "
                       "Nguyễn Văn Anh). One word, or an email or phone (a digit or one of @ . _ + -): the start "
                       "of a word of the name, email or phone."})
    unit_code = fields.Str(validate=validate.Length(max=32))


class RegistrationIn(Schema):
    official_id = Id(required=True)
    # The operator records registrations of classes whose cut-off has passed (the 2025 programme
    # began before this system did); nobody else may, and it must be asked for explicitly.
    after_cutoff = fields.Bool(load_default=False)


class CancellationIn(Schema):
    reason = fields.Str(validate=validate.Length(max=500))
    cause = OneOf(("official", "operator"), load_default="official")


class RegistrationQuery(PageQuery):
    status = OneOf(("confirmed", "waitlisted", "cancelled", "completed"))


class QuotasIn(Schema):
    """Seats per unit on one session: `{"quotas": {"Q1": 30, "Q3": 30}}`; 0 removes a unit's quota."""
    quotas = fields.Dict(keys=UnitCode(), values=fields.Int(strict=True, validate=validate.Range(min=0, max=10000)),
                         required=True)


class CheckinIn(Schema):
    # Scanned at the door from the official's QR code (partners never see the tokens).
    qr_token = Text(64, required=True)
    # 1-based; by default the part running now, else the first.
    part = fields.Int(strict=True, validate=validate.Range(min=1, max=20))
    # The operator records attendance after the session has ended (from the sign-in sheet); nobody
    # else may, and it must be asked for explicitly, like `after_cutoff` for registrations.
    after_session = fields.Bool(load_default=False)


# The programme's days lie in this century: a date outside it is a typo, and a report over it would
# count thousands of months.
CENTURY = validate.Range(min=date(2000, 1, 1), max=date(2099, 12, 31), error="A day of 2000-2099.")


class Target(Schema):
    share = fields.Float(required=True, validate=validate.Range(min=0, max=1), metadata={
        "description": "The share of the group's officials to have completed a course, 0 to 1."})
    deadline = fields.Date(required=True, validate=CENTURY)


class ProgrammeIn(Schema):
    """The programme record leaders follow coverage against."""
    name = Text(300, required=True)
    legal_basis = Text(1000, required=True)
    starts_on = fields.Date(required=True, validate=CENTURY)
    ends_on = fields.Date(required=True, validate=CENTURY)
    targets = fields.Dict(keys=OneOf(AUDIENCE_GROUPS), values=fields.Nested(Target), required=True)

    @validates_schema
    def period(self, data, **kwargs):
        if data["ends_on"] < data["starts_on"]:
            raise ValidationError("Ends before it starts.", "ends_on")


class CoverageQuery(Schema):
    by = OneOf(("unit", "audience_group", "partner", "month"), load_default="unit")
    as_of = fields.Date(validate=CENTURY, metadata={
        "description": "The figures as they stood at the end of that day (today by default)."})
    format = OneOf(("json", "csv", "xlsx", "pdf"), load_default="json")


class ReportQuery(Schema):
    format = OneOf(("json", "csv", "xlsx"), load_default="json")
    units = OneOf(("now", "then"), load_default="now", metadata={
        "description": "By unit: under the units of today (`now`), or those registrations were made under (`then`)."})


# -- what leaves the service ------------------------------------------------------------------------------

def public_official(doc):
    return {k: doc.get(k) for k in ("id", "full_name", "email", "phone", "unit_code", "audience_group",
                                    "language")}


def public_coordinator(doc):
    """A coordinator as operators see it (never its token: only the digest is kept)."""
    return {k: doc.get(k) for k in ("id", "full_name", "email", "phone", "unit_codes", "status", "created_at",
                                    "created_by", "revoked_at", "revoked_by")}


def coordinator_registration(doc):
    """A registration as the coordinator of its official's unit sees it: everything the operator sees
    but the QR token (that checks the official in at the door; the official shows it, nobody else)."""
    out = public_registration(doc)
    out.pop("qr_token", None)
    return out


def public_unit(doc):
    out = {k: doc.get(k) for k in ("code", "name", "kind", "parent_code", "valid_from", "valid_until",
                                    "predecessors", "headcount")}
    if doc.get("position"):
        out["position"] = doc["position"]
    # Units merged before reorganisations kept `merged_into`: the same fact, said the new way.
    dissolved = doc.get("status") in ("dissolved", "merged")
    out["status"] = "dissolved" if dissolved else "active"
    out["successors"] = doc.get("successors") or ([doc["merged_into"]] if doc.get("merged_into") else [])
    out["predecessors"] = out["predecessors"] or doc.get("merged_from") or []
    out["headcount"] = out["headcount"] or {}
    return out


def public_registration(doc):
    """A registration as the operator sees it: everything, contacts and QR token included."""
    out = {k: doc.get(k) for k in ("id", "session_id", "official_id", "unit_code", "audience_group", "status",
                                   "qr_token", "created_at", "cancelled_at", "cancel_reason", "cancel_cause",
                                   "attended_parts", "certificate_code", "completed_at")}
    if doc.get("status") == "waitlisted":
        out["waitlist_position"] = doc.get("waitlist_position")
    if doc.get("official"):
        out["official"] = {k: doc["official"].get(k) for k in ("full_name", "email", "phone")}
    return out


def partner_registration(doc):
    """A registration as the partner delivering its session sees it (rules.sees_personal_data): who
    (name, unit, audience group), status and attendance; no contact, QR token or certificate code."""
    out = {k: doc.get(k) for k in ("id", "session_id", "unit_code", "audience_group", "status", "created_at",
                                   "cancelled_at", "attended_parts", "completed_at")}
    if doc.get("status") == "waitlisted":
        out["waitlist_position"] = doc.get("waitlist_position")
    out["official"] = {"full_name": (doc.get("official") or {}).get("full_name")}
    return out


def registration_for(actor):
    """How `actor` sees registrations: `public_registration`, `coordinator_registration` or
    `partner_registration`."""
    if actor and actor.get("role") == "coordinator":
        return coordinator_registration
    return public_registration if rules.sees_personal_data(actor) else partner_registration


def public_seats(session):
    """Seats taken, waitlist length, quotas (seats and taken per unit) and over-capacity of a session
    (all zero for a session not heard of)."""
    doc = session or {}
    out = {"seats_taken": doc.get("seats_taken", 0), "waitlist_length": doc.get("waitlist_length", 0)}
    if doc.get("quotas"):
        out["quotas"] = {rules.unit_code_of(k): {"seats": v, "taken": (doc.get("unit_seats") or {}).get(k, 0)}
                         for k, v in doc["quotas"].items()}
    if doc.get("over_capacity"):
        out["over_capacity"] = doc["over_capacity"]
    return out


def public_over_capacity(session):
    return {"session_id": session["_id"], "title": session["title"], "starts_at": session["starts_at"],
            "capacity": session["capacity"], "seats_taken": session["seats_taken"],
            "over_capacity": session["over_capacity"]}


def public_checkin(registration, part, checkin, repeated, personal=True):
    """A check-in as the door sees it: who, which part, when, whether it was a repeat, and the
    registration's status after it; for the operator (`personal`) the official's id and, once the
    course is completed, the certificate (the official gets it by email)."""
    out = {"registration_id": registration["_id"], "full_name": registration["official"]["full_name"], "part": part,
           "checked_in_at": checkin["checked_in_at"], "already_checked_in": repeated,
           "status": registration["status"], "attended_parts": sorted(registration.get("attended_parts") or [])}
    if not personal:
        return out
    out["official_id"] = registration["official_id"]
    if registration.get("certificate_code"):
        out["certificate_code"] = registration["certificate_code"]
        out["certificate_url"] = certificates.url(registration["certificate_code"])
    return out


SESSION_REF = ("title", "venue_name", "address", "room", "starts_at", "ends_at")


def session_ref(session):
    """The session as registrations' events carry it (contracts.registration.SessionRef)."""
    return {k: session[k] for k in SESSION_REF} | {"id": session["_id"]}


def official_ref(official):
    """The official as a registration keeps them and its events carry them (contracts.registration.OfficialRef)."""
    return {"id": official["_id"], "full_name": official["full_name"], "email": official["email"],
            "phone": official["phone"], "language": official.get("language", "vi")}


SESSION_GAUGES = (
    ("trainops_session_seats_taken", "Seats taken in an upcoming session.", "seats_taken"),
    ("trainops_session_capacity", "Seats an upcoming session has.", "capacity"),
    ("trainops_session_waitlist", "Officials waiting for a seat in an upcoming session.", "waitlist_length"))


def session_gauges(upcoming):
    """Seats taken, capacity and waitlist length per upcoming session, as Operated gauges."""
    return [{"name": name, "help": text, "labels": ["session_id"],
             "rows": [[s["_id"], s.get(field, 0)] for s in upcoming]}
            for name, text, field in SESSION_GAUGES]


class CertificateRevocationIn(Schema):
    """Why a certificate no longer stands (shown on its verification page and PDF)."""
    reason = Text(500, required=True)


class LanguageIn(Schema):
    """The language an official's notices and pages come in."""
    language = OneOf(("vi", "en"), required=True)


def own_registration(registration, session):
    """A registration as its official sees it at /me: status, waitlist place, the session (venue,
    address) and, while confirmed, the QR token to show at the door."""
    out = {k: registration.get(k) for k in ("id", "session_id", "status", "created_at", "cancelled_at",
                                            "attended_parts", "certificate_code")}
    if registration.get("status") == "waitlisted":
        out["waitlist_position"] = registration.get("waitlist_position")
    if registration.get("status") == "confirmed":
        out["qr_token"] = registration.get("qr_token")
    out["session"] = {k: (session or {}).get(k) for k in ("title", "venue_name", "address", "room", "starts_at",
                                                          "ends_at", "status")}
    return out


def open_session(session):
    """A session an official may still join, as /me lists it."""
    return {"id": session["_id"], **{k: session.get(k) for k in (
        "title", "venue_name", "address", "room", "starts_at", "ends_at", "registration_closes_at")},
        "seats_left": max(0, session.get("capacity", 0) - session.get("seats_taken", 0)),
        "waitlist_length": session.get("waitlist_length", 0)}


def public_certificate(certificate, unit_name=None):
    """A certificate as its verification shows it: who (their name only), which course, when, and
    whether it was revoked (and why)."""
    session = certificate["session"]
    return {"code": certificate["_id"], "full_name": certificate["official"]["full_name"],
            "unit_code": certificate.get("unit_code"), "unit_name": unit_name or certificate.get("unit_code"),
            "title": session["title"], "venue_name": session["venue_name"], "address": session["address"],
            "session_starts_at": session["starts_at"], "issued_at": certificate["issued_at"],
            "offering_id": certificate.get("offering_id"), "partner_id": certificate.get("partner_id"),
            "url": certificates.url(certificate["_id"]),
            "status": "revoked" if certificate.get("revoked_at") else "valid",
            "revoked_at": certificate.get("revoked_at"), "revoke_reason": certificate.get("revoke_reason")}


# Documented at GET /openapi.json; the gateway's routes name them.
BODIES = {"ProgrammeIn": ProgrammeIn, "UnitIn": UnitIn, "UnitMergeIn": UnitMergeIn, "ReorganizeIn": ReorganizeIn, "HeadcountIn": HeadcountIn,
          "OfficialIn": OfficialIn, "OfficialChangeIn": OfficialChangeIn, "CoordinatorIn": CoordinatorIn, "RegistrationIn": RegistrationIn, "CancellationIn": CancellationIn,
          "QuotasIn": QuotasIn, "CheckinIn": CheckinIn,
          "CertificateRevocationIn": CertificateRevocationIn, "LanguageIn": LanguageIn}
QUERIES = {"CoverageQuery": CoverageQuery, "CoordinatorQuery": CoordinatorQuery, "UnitQuery": UnitQuery, "OfficialQuery": OfficialQuery, "RegistrationQuery": RegistrationQuery,
           "ReportQuery": ReportQuery}


def public_programme(doc):
    if doc is None:
        return None
    return {k: doc.get(k) for k in ("name", "legal_basis", "starts_on", "ends_on", "targets", "updated_at")}


def public_record(official, registrations, attendance, certificates_, sessions):
    """One official's training record: each registration with the parts attended and its certificate."""
    parts = {}
    for record in attendance:
        parts.setdefault(record["registration_id"], []).append(
            {"part": record["part"], "checked_in_at": record["checked_in_at"]})
    issued = {c["registration_id"]: c for c in certificates_}
    return {"official": public_official(official), "registrations": [dict(
        {k: r.get(k) for k in ("id", "session_id", "status", "created_at", "cancelled_at", "completed_at",
                                "unit_code", "unit_code_then")},
        session={k: (sessions.get(r["session_id"]) or {}).get(k) for k in ("title", "venue_name", "starts_at", "ends_at")},
        attendance=parts.get(r["_id"], []),
        certificate=({"code": issued[r["_id"]]["_id"], "issued_at": issued[r["_id"]]["issued_at"],
                      "url": certificates.url(issued[r["_id"]]["_id"])} if r["_id"] in issued else None))
        for r in registrations]}


# -- personal data (Decree 13/2023/ND-CP) ---------------------------------------------------------

class ErasureIn(Schema):
    """Why an official's personal data is erased (the request, a reference to it): kept with the erasure."""
    reason = Text(500, required=True)


def public_erasure(official):
    erasure = official.get("erasure") or {}
    return {"official_id": official["_id"], "erased_at": erasure.get("at"), "erased_by": erasure.get("by"),
            "reason": erasure.get("reason")}


BODIES["ErasureIn"] = ErasureIn
