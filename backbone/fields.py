"""Field types every schema uses the same way: requests (services' `schemas.py`) and event contracts
(`contracts/`)."""
from marshmallow import ValidationError, fields, validate


def not_blank(value):
    if not value.strip():
        raise ValidationError("Must not be blank.")


def Text(max_length, **kwargs):  # noqa: N802 (used like a field class)
    """A string of 1 to `max_length` characters that is not only spaces."""
    return fields.Str(validate=[validate.Length(min=1, max=max_length), not_blank], **kwargs)


# A NUL or another control character is in no name, email or phone, and some stores refuse it in a
# pattern. A Regexp, so that /openapi.json states it as the field's pattern.
NO_CONTROL_CHARACTERS = validate.Regexp(r"^[^\x00-\x1f\x7f-\x9f]*$", error="Must not contain control characters.")


def SearchWords(**kwargs):  # noqa: N802
    """What a search box sends: up to 200 characters, no control characters."""
    return fields.Str(validate=[validate.Length(max=200), NO_CONTROL_CHARACTERS], **kwargs)


def Id(**kwargs):  # noqa: N802
    """An id of ours (`session-3f2a...`) or of the caller's, at most 64 characters."""
    return fields.Str(validate=validate.Length(min=1, max=64), **kwargs)


def When(**kwargs):  # noqa: N802
    """An instant with its offset (a time without one is ambiguous and refused)."""
    return fields.AwareDateTime(format="iso", **kwargs)


def OneOf(choices, **kwargs):  # noqa: N802
    return fields.Str(validate=validate.OneOf(choices), **kwargs)
