"""Field types every schema uses the same way: requests (services' `schemas.py`) and event contracts
(`contracts/`)."""
from marshmallow import ValidationError, fields, validate


def not_blank(value):
    if not value.strip():
        raise ValidationError("Must not be blank.")


def Text(max_length, **kwargs):  # noqa: N802 (used like a field class)
    """A string of 1 to `max_length` characters that is not only spaces."""
    return fields.Str(validate=[validate.Length(min=1, max=max_length), not_blank], **kwargs)


def no_control_characters(value):
    # A NUL or another control character is in no name, email or phone, and some stores refuse it in a pattern.
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise ValidationError("Must not contain control characters.")


def SearchWords(**kwargs):  # noqa: N802
    """What a search box sends: up to 200 characters, no control characters."""
    return fields.Str(validate=[validate.Length(max=200), no_control_characters], **kwargs)


def Id(**kwargs):  # noqa: N802
    """An id of ours (`session-3f2a...`) or of the caller's, at most 64 characters."""
    return fields.Str(validate=validate.Length(min=1, max=64), **kwargs)


def When(**kwargs):  # noqa: N802
    """An instant with its offset (a time without one is ambiguous and refused)."""
    return fields.AwareDateTime(format="iso", **kwargs)


def OneOf(choices, **kwargs):  # noqa: N802
    return fields.Str(validate=validate.OneOf(choices), **kwargs)
