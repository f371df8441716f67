"""The OpenAPI document of the public API: paths from the gateway's routes; request bodies and query
parameters from the services' marshmallow schemas (each service describes its own by RPC, through
apispec: `backbone.openapi.describe`); a route names its body and its query schema."""
import re

from backbone.openapi import new_spec

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "fields"],
        "properties": {
            "code": {"type": "string", "example": "no_active_agreement"},
            "message": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": True,
                       "description": "Field name → list of problems (nested for nested fields)."},
        },
    }},
}

AUTH_TEXT = {
    "operator": "Operator token only.",
    # Read by tests/test_authorization.py as an operator route: partners and viewers are refused too.
    "admin": "Operator token only, of an admin: an admin account's token or OPERATOR_TOKEN.",
    "partner": "A partner's API key (own records only) or the operator token.",
    "any": "Operator token or a partner's API key.",
    "feed": "The feed's own read-only token in `?token=` (its calendar_url: API keys and the operator token are "
            "refused there), or the operator token or a partner's API key as a Bearer header.",
    "official": "An official's own: the /me session cookie or a `me_...` token as a Bearer header (any other "
                "token is refused).",
    None: "No authentication.",
}

ERRORS = {
    "400": "Malformed JSON (or CSV): not UTF-8, not an object, nested too deep, a lone surrogate.",
    "401": "No token, or an unknown or revoked one.",
    "403": "A valid token acting outside its rights.",
    "404": "Unknown id.",
    "409": "Conflict (for example `room_conflict`, `already_registered`, `request_in_progress`).",
    "413": "`payload_too_large`: the body is over the cap (larger for imports), or a file has too many rows.",
    "422": "Invalid fields or a broken business rule (for example `no_active_agreement`).",
    "429": "`too_many_requests` from this client or token: wait `Retry-After` seconds.",
    "503": "`service_unavailable`: a service did not answer in time.",
}


HEX_ID = "^{}-[0-9a-f]{{16}}$"
# What the ids in paths look like (an id of another shape is simply unknown: 404).
PATH_PARAMETERS = {
    "partner_id": {"pattern": HEX_ID.format("partner")},
    "agreement_id": {"pattern": HEX_ID.format("agreement")},
    "offering_id": {"pattern": HEX_ID.format("offering")},
    "venue_id": {"pattern": HEX_ID.format("venue")},
    "session_id": {"pattern": HEX_ID.format("session")},
    "official_id": {"pattern": HEX_ID.format("official")},
    "key_id": {"pattern": HEX_ID.format("key")},
    "operator_id": {"pattern": HEX_ID.format("operator")},
    "token_id": {"pattern": HEX_ID.format("optoken")},
    "registration_id": {"pattern": "^registration-[0-9a-f]{20}$"},
    "code": {"pattern": "^[A-Za-z0-9_.-]{1,32}$",
             "description": "A certificate's verification code, as printed on it, or a unit's code."},
    "by": {"enum": ["session", "unit", "district", "partner"]},
}


def build(routes, described):
    """`routes`: the gateway's Api entrypoints; `described`: what each service's `api_schemas` answers
    ({"bodies": {name: JSON schema}, "queries": {name: [parameters]}})."""
    spec = new_spec(title="trainops public API", version="1.0.0")
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", ERROR)
    queries = {}
    for answer in described:
        for name, schema in sorted(answer["bodies"].items()):
            if name not in spec.components.schemas:
                spec.components.schema(name, schema)
        queries.update(answer["queries"])
    paths = {}
    for route in sorted(routes, key=lambda r: (r.url, r.method)):
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.url)
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": dict({"type": "string", "maxLength": 300}, **PATH_PARAMETERS.get(name, {}))}
                      for name in re.findall(r"{(\w+)}", path)]
        if route.query:
            parameters += queries[route.query]
        responses = {str(route.status): {"description": "Success."}}
        for status, text in ERRORS.items():
            if route.auth is None and status in ("401", "403"):
                continue
            if status in ("400", "413") and route.method != "POST":
                continue
            responses[status] = {"description": text,
                                 "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        operation = {
            "summary": route.summary or route.method_name.replace("_", " "),
            "description": AUTH_TEXT[route.auth],
            "operationId": route.method_name,
            "responses": responses,
        }
        if parameters:
            operation["parameters"] = parameters
        if route.auth == "feed":
            operation["security"] = [{}, {"bearer": []}]  # its token is in the query (FeedQuery)
        elif route.auth:
            operation["security"] = [{"bearer": []}]
        if route.method == "POST":
            operation["parameters"] = operation.get("parameters", []) + [{
                "name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "The same key with the same body returns the first successful result."}]
        if route.body:
            operation["requestBody"] = {"required": "(body optional)" not in route.summary, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/" + route.body}}}}
        paths.setdefault(path, {})[route.method.lower()] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()
