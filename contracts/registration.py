"""What registration publishes: registrations confirmed, waitlisted, promoted, cancelled and
rescheduled, attendance recorded, courses completed, units reorganised. Consumer: notifications.

Personal data: each registration event carries the official (`OfficialRef`: name, email, phone,
language) because notifications must write to them and never reads registration's database, and a
confirmation or promotion the QR token it shows them; nothing else about them travels (each personal
field says who reads it, for what: tests/test_contracts_personal.py). `attendance_recorded` and
`official_erased` name the official by id only.

All facts (each happened once, to one registration, one official or the city's units: a consumer acts on
each once, in any order); none is state-carrying. registration_rescheduled carries the session's new
time for the notice it causes, not a state a consumer keeps."""
from marshmallow import Schema, fields, validate

from backbone.events import contract
from backbone.fields import Id, When


class OfficialRef(Schema):
    """What notifications need to reach an official, carried in the event so nobody reads another's data.
    An erased official's events carry `backbone.personal.ERASED_NAME` and no contacts."""
    id = Id(required=True)
    full_name = fields.Str(required=True, metadata={
        "personal": "notifications: the greeting of the official's email and SMS (Kính gửi ...)."})
    email = fields.Str(allow_none=True, metadata={"personal": "notifications: where the official's email goes."})
    phone = fields.Str(allow_none=True, metadata={"personal": "notifications: where the official's SMS goes."})
    language = fields.Str(load_default="vi")


class SessionRef(Schema):
    id = Id(required=True)
    title = fields.Str(required=True)
    venue_name = fields.Str(required=True)
    address = fields.Str(required=True)
    room = fields.Str(required=True)
    starts_at = When(required=True)
    ends_at = When(required=True)


class _Registration(Schema):
    registration_id = Id(required=True)
    session = fields.Nested(SessionRef, required=True)
    official = fields.Nested(OfficialRef, required=True)


@contract("registration_confirmed")
class RegistrationConfirmed(_Registration):
    qr_token = fields.Str(required=True, metadata={
        "personal": "notifications: the code (and QR image) the confirmation email and SMS give the official for the door."})


@contract("registration_waitlisted")
class RegistrationWaitlisted(_Registration):
    waitlist_position = fields.Int(required=True)


@contract("registration_promoted")
class RegistrationPromoted(_Registration):
    qr_token = fields.Str(required=True, metadata={
        "personal": "notifications: the code (and QR image) the promotion email and SMS give the official for the door."})


@contract("registration_cancelled")
class RegistrationCancelled(_Registration):
    reason = fields.Str(allow_none=True)
    # who or what ended it: the official (or their unit), an operator, or the session's cancellation.
    cause = fields.Str(load_default="official",
                       validate=validate.OneOf(("official", "operator", "session_cancelled")))


@contract("registration_rescheduled")
class RegistrationRescheduled(_Registration):
    """Per registration of a rescheduled session, so each official can be told (`session` is the new time)."""
    status = fields.Str(required=True, validate=validate.OneOf(("confirmed", "waitlisted")))
    previous_starts_at = When(allow_none=True)
    previous_ends_at = When(allow_none=True)


@contract("attendance_recorded")
class AttendanceRecorded(Schema):
    registration_id = Id(required=True)
    session_id = Id(required=True)
    official_id = Id(required=True)
    part = fields.Int(required=True)
    checked_in_at = When(required=True)


@contract("course_completed")
class CourseCompleted(_Registration):
    certificate_code = fields.Str(required=True)
    certificate_url = fields.Str(required=True)


class UnitChange(Schema):
    kind = fields.Str(required=True, validate=validate.OneOf(("merge", "absorb", "rename", "split")))
    from_codes = fields.List(fields.Str(), required=True, validate=validate.Length(min=1))
    into_codes = fields.List(fields.Str(), required=True, validate=validate.Length(min=1))


@contract("units_reorganized")
class UnitsReorganized(Schema):
    """Units dissolved into others (a merge, a rename, a split), as of `effective_on`. A fact."""
    effective_on = fields.Date(required=True)
    changes = fields.List(fields.Nested(UnitChange), required=True, validate=validate.Length(min=1))

@contract("official_erased")
class OfficialErased(Schema):
    """An official's personal data was erased on request (Decree 13/2023/ND-CP): every service removes
    or anonymises what it holds about them, in its own collections and in its records of events
    (`backbone/personal.py`). It names the official by id only: it carries no personal data."""
    official_id = Id(required=True)
    erased_at = When(required=True)
