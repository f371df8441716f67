"""The routes of administration, which the gateway mounts beside `OperationsRoutes`: named operator
accounts and their personal tokens (`ops/accounts.py`), and the audit of who acted (`ops/audit.py`),
whose records the gateway writes for every write through `audit_write`."""
from gateway.entrypoints import api, read_json
from ops import accounts, audit

INDEXES = dict(accounts.INDEXES, **audit.INDEXES)


def schemas():
    """The bodies and queries of these routes, for the OpenAPI document."""
    return {
        "bodies": {"OperatorIn": {
            "type": "object", "required": ["full_name", "email", "role"], "additionalProperties": False,
            "properties": {"full_name": {"type": "string", "minLength": 1, "maxLength": 200},
                           "email": {"type": "string", "format": "email", "maxLength": 254},
                           "role": {"type": "string", "enum": ["admin", "operator", "viewer"]}}}},
        "queries": {"AuditLogQuery": audit.parameters()},
    }


class AdministrationRoutes:
    """Needs of the service that mounts it: `actor(request)`, its `db` (with INDEXES) and `tracing`."""

    def audit_write(self, request, route, target, status):
        """Called by `@api` for every write whose caller was authenticated (gateway/entrypoints.py)."""
        actor = request.environ.get("trainops.actor")
        if actor:
            audit.record(self.db, actor, route, target, status, self.tracing)  # tracing: the correlation id

    @api("POST", "/operators", body="OperatorIn", auth="admin", status=201,
         summary="A named operator account (admin, operator or viewer); it signs in to the console by email.")
    def create_operator(self, request):
        return 201, accounts.create(self.db, self.actor(request), read_json(request))

    @api("GET", "/operators", auth="admin", summary="The operator accounts, oldest first.")
    def list_operators(self, request):
        return accounts.listed(self.db, self.actor(request))

    @api("POST", "/operators/<operator_id>/deactivate", auth="admin",
         summary="Deactivate an account: its tokens and console sessions open nothing from the next request on.")
    def deactivate_operator(self, request, operator_id):
        return accounts.deactivate(self.db, self.actor(request), operator_id)

    @api("POST", "/operators/<operator_id>/tokens", auth="admin", status=201,
         summary="A personal API token (op_...) for the account (an admin, or the account itself); shown this once.")
    def issue_operator_token(self, request, operator_id):
        return 201, accounts.issue_token(self.db, self.actor(request), operator_id)

    @api("POST", "/operators/<operator_id>/tokens/<token_id>/revoke", auth="admin",
         summary="Revoke a personal token (an admin, or the account itself); it gets 401 from the next request on.")
    def revoke_operator_token(self, request, operator_id, token_id):
        return accounts.revoke_token(self.db, self.actor(request), operator_id, token_id)

    @api("GET", "/audit", auth="admin", query="AuditLogQuery",
         summary="Who acted: every write with its actor, route, target ids, status and correlation id, oldest "
                 "first: {items, next_cursor}.")
    def audit_log(self, request):
        return audit.query(self.db, self.actor(request), request.args.to_dict())

