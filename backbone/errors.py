"""Domain errors: raised by services, carried across RPC intact, turned into the HTTP error shape
`{"error": {"code", "message", "fields"}}` by the gateway in one place."""
from nameko.exceptions import deserialize_to_instance


@deserialize_to_instance
class DomainError(Exception):
    """A refusal the caller can act on. One class (not a hierarchy) because nameko rebuilds a remote
    exception as `cls(*args)`: the HTTP status travels as data."""

    def __init__(self, code, message, fields=None, status=422):
        super().__init__(code, message, fields or {}, status)
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.status = int(status)  # nameko sends exception arguments as text: "409" across RPC

    def __str__(self):
        return "{}: {}".format(self.code, self.message)

    def as_body(self):
        return {"error": {"code": self.code, "message": self.message, "fields": self.fields}}


def invalid(fields, message="Some fields are invalid.", code="invalid_fields"):
    return DomainError(code, message, fields, 422)


def not_found(what, ident):
    return DomainError("not_found", "No {} with id {}.".format(what, ident), {}, 404)


def conflict(code, message, fields=None):
    return DomainError(code, message, fields, 409)


def forbidden(message="This token may not do that."):
    return DomainError("forbidden", message, {}, 403)


def rule_broken(code, message, fields=None):
    """A business rule said no (422 with a specific code, e.g. `no_active_agreement`)."""
    return DomainError(code, message, fields, 422)


def from_validation(err):
    """A marshmallow ValidationError as our 422, field by field."""
    messages = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
    return invalid(messages)


def validated(schema, data, **kwargs):
    """`schema.load(data)` with refusals as our 422, field by field. Unknown fields are refused by
    marshmallow's default (RAISE), so nothing unexpected is ever stored."""
    from marshmallow import ValidationError
    if not isinstance(data, dict):
        raise invalid({"_schema": ["Expected a JSON object."]})
    try:
        return schema.load(data, **kwargs)
    except ValidationError as err:
        raise from_validation(err)
