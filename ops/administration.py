"""The routes of administration, which the gateway mounts beside `OperationsRoutes`: named operator
accounts and their personal tokens (`ops/accounts.py`), the audit of who acted (`ops/audit.py`),
whose records the gateway writes for every write through `audit_write`, and their console pages:
sign-in by a link sent to an account's email, the audit page and the accounts page (admins)."""
import logging
import re
from datetime import timedelta

import eventlet
from nameko import config

from backbone.auth import SYSTEM, is_admin
from backbone.clock import utcnow
from backbone.config import public_url
from backbone.errors import DomainError
from gateway import admission, signin
from gateway.entrypoints import api, read_json
from ops import accounts, audit, console
from ops.console import pages

log = logging.getLogger(__name__)
AUDIENCE = "operator"
# Sign-in links asked for in LINK_WINDOW, per address (each is an email to someone: nobody floods an
# inbox) and per client (the centre's operators may share one address behind its NAT).
LINK_REQUESTS_PER_ADDRESS = 5
LINK_REQUESTS_PER_CLIENT = 30
LINK_WINDOW = timedelta(minutes=15)
MAIL_TIMEOUT = 5

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


    # -- the console: sign-in by email ------------------------------------------------------------

    @api("POST", "/console/login/link", auth=None, public=False)
    def console_login_link(self, request):
        """Sends a sign-in link to an active account's email. The page answers the same whether or not
        the address is an account's (nobody learns who has one); at most LINK_REQUESTS_PER_ADDRESS per
        address and LINK_REQUESTS_PER_CLIENT per client in LINK_WINDOW, then 429."""
        labels = console.LABELS[console.language(request)]
        email = request.form.get("email", "")[:254]
        # Counted alike for every address, known or not, so the limit tells nobody who has an account.
        for key, cap in (("link:" + admission.client_of(request), LINK_REQUESTS_PER_CLIENT),
                         ("link-to:" + accounts.digest(email.strip().lower()), LINK_REQUESTS_PER_ADDRESS)):
            asked = self.db.console_logins.find_one({"_id": key}) or {}
            if asked.get("failures", 0) >= cap and asked["until"] > utcnow():
                response = console.page(request, "login.html", status=429, error=labels["too_many_logins"])
                response.headers["Retry-After"] = str(int((asked["until"] - utcnow()).total_seconds()) + 1)
                return response
        for key in ("link:" + admission.client_of(request), "link-to:" + accounts.digest(email.strip().lower())):
            self.db.console_logins.update_one({"_id": key}, {
                "$inc": {"failures": 1}, "$set": {"until": utcnow() + LINK_WINDOW}}, upsert=True)
        account = accounts.by_email(self.db, email)
        if account is not None:
            token = signin.issue(self.db, AUDIENCE, account["_id"])
            link = "{}/console/login/link?token={}".format(public_url(config), token)
            try:
                with eventlet.Timeout(MAIL_TIMEOUT):
                    self.notifications.send_sign_in_link(account["email"], account["full_name"],
                                                         console.language(request), link, AUDIENCE)
            except BaseException as exc:  # eventlet's Timeout too: the page says the same either way
                log.warning("console: the sign-in link for %s could not be sent: %s", account["_id"],
                            type(exc).__name__)
        return console.page(request, "login.html", status=202, sent=labels["link_sent"])

    @api("GET", "/console/login/link", auth=None, public=False)
    def console_login_confirm(self, request):
        """The page a sign-in link opens: a button that signs in (a POST). Opening the link alone
        spends nothing, so a mail scanner that fetches it does not use up the person's link."""
        token = request.args.get("token", "")[:128]
        response = console.page(request, "login_link.html", token=token)
        response.headers["Referrer-Policy"] = "no-referrer"  # the token is in this page's address
        return response

    @api("POST", "/console/login/link/redeem", auth=None, public=False)
    def console_login_redeem(self, request):
        """Spends the link (once, within its 15 minutes) and opens a console session for its account."""
        labels = console.LABELS[console.language(request)]
        operator_id = signin.redeem(self.db, AUDIENCE, request.form.get("token", ""))
        account = accounts.active_account(self.db, operator_id)
        if account is None:
            return console.page(request, "login.html", status=401, error=labels["bad_link"])
        cookie, nonce = console.new_session(config.get("OPERATOR_TOKEN") or "")
        self.db.console_sessions.insert_one({
            "_id": nonce, "who": "operator:" + account["_id"], "operator_id": account["_id"],
            "created_at": utcnow(), "expires_at": utcnow() + timedelta(seconds=console.SESSION_SECONDS)})
        request.environ["trainops.console_actor"] = accounts.as_actor(account)
        self.console_audit(request, "sign in", {"operator_id": account["_id"]}, 303)
        return console.redirect("/console", cookie=cookie, secure=console.served_over_https(request))

    # -- the console: administration pages (admins) -----------------------------------------------

    def admin_page(self, request, template, gather):
        """A page for admins: the login for nobody, 403 for anyone else."""
        nonce = self.console_session(request)
        if nonce is None:
            return console.redirect("/console/login")
        if not is_admin(self.console_actor(request)):
            return console.page(request, "login.html", status=403,
                                error=console.LABELS[console.language(request)]["admins_only"])
        return self.console_page(request, template, gather)

    @api("GET", "/console/audit", auth=None, public=False)
    def console_audit_page(self, request):
        asked = {k: request.args[k].strip() for k in ("actor", "target", "cursor") if request.args.get(k, "").strip()}

        def gather(gateway):
            try:
                found = audit.query(gateway.db, SYSTEM, dict(asked, limit=100))
            except DomainError as error:
                return {"asked": asked, "items": [], "next_cursor": None, "error": error.fields or error.message}
            return dict(found, asked=asked, error=None)
        return self.admin_page(request, "audit.html", gather)

    @api("GET", "/console/operators", auth=None, public=False)
    def console_operators(self, request):
        outcome = request.args.get("outcome", "")[:40]
        return self.admin_page(request, "operators.html", lambda gateway: dict(
            accounts.listed(gateway.db, SYSTEM), outcome=outcome, form={}, errors={}))

    @api("POST", "/console/operators", auth=None, public=False)
    def console_create_operator(self, request):
        refusal = self.console_form_refusal(request, "create operator account") or \
            self.admin_refusal(request, "create operator account")
        if refusal is not None:
            return refusal
        form = {k: request.form.get(k, "").strip() for k in ("full_name", "email", "role")}
        try:
            created = accounts.create(self.db, self.console_actor(request), form)
        except DomainError as error:
            self.console_audit(request, "create operator account", {}, error.status)
            # The form again, with what was typed and each field's problem next to it.
            page = self.console_page(request, "operators.html", lambda gateway: dict(
                accounts.listed(gateway.db, SYSTEM), outcome="", form=form,
                errors=error.fields or {"email": [error.message]}))
            page.status_code = error.status
            return page
        self.console_audit(request, "create operator account", {"operator_id": created["id"]}, 201)
        return console.redirect("/console/operators?outcome=created")

    @api("POST", "/console/operators/deactivate", auth=None, public=False)
    def console_deactivate_operator(self, request):
        refusal = self.console_form_refusal(request, "deactivate operator account") or \
            self.admin_refusal(request, "deactivate operator account")
        if refusal is not None:
            return refusal
        operator_id = request.form.get("id", "")[:100]
        try:
            accounts.deactivate(self.db, self.console_actor(request), operator_id)
            outcome, status = "deactivated", 200
        except DomainError as error:
            outcome, status = error.code, error.status
        self.console_audit(request, "deactivate operator account", {"operator_id": operator_id}, status)
        return console.redirect("/console/operators?outcome=" + outcome)

    def admin_refusal(self, request, action):
        if is_admin(self.console_actor(request)):
            return None
        self.console_audit(request, action, {}, 403)
        return console.page(request, "login.html", status=403,
                            error=console.LABELS[console.language(request)]["admins_only"])

    # -- the console: partners and agreements -----------------------------------------------------

    def partners_form(self, request, action, which, call, target_of=lambda answer: {}):
        """A partners-page form: `call(actor, form)` asks the service as the one signed in; the page
        again, with the outcome, or the service's refusal in words next to the form `which`."""
        refusal = self.console_form_refusal(request, action)
        if refusal is not None:
            return refusal
        form = {k: v.strip() for k, v in request.form.items() if k != "csrf"}
        try:
            answer = call(self.console_actor(request), form)
        except DomainError as error:
            self.console_audit(request, action, {k: form[k] for k in ("partner_id", "agreement_id") if form.get(k)},
                               error.status)
            page = self.console_page(request, "partners.html", lambda gateway: dict(
                pages.partners(gateway), which=which, form=form, errors=error.fields, refused=error.message))
            page.status_code = error.status
            return page
        self.console_audit(request, action, target_of(answer), 200)
        page = self.console_page(request, "partners.html", lambda gateway: dict(
            pages.partners(gateway), which=which, done=action, answer=answer, form={}, errors={}))
        return page

    @api("POST", "/console/partners/create", auth=None, public=False)
    def console_create_partner(self, request):
        """The new partner's API key is shown on the page that answers, this once."""
        return self.partners_form(request, "create partner", "partner", lambda actor, form: self.partners.create_partner(
            actor, {k: form.get(k, "") for k in ("code", "name", "kind", "contact_email")}),
            lambda answer: {"partner_id": answer["id"]})

    @api("POST", "/console/agreements/create", auth=None, public=False)
    def console_create_agreement(self, request):
        def call(actor, form):
            body = {k: form.get(k, "") for k in ("title",)}
            body.update({k: local_day(form.get(k, "")) for k in ("signed_on", "valid_from", "valid_until")})
            return self.partners.create_agreement(actor, form.get("partner_id", ""), body)
        return self.partners_form(request, "create agreement", "agreement", call,
                                  lambda answer: {"agreement_id": answer["id"], "partner_id": answer["partner_id"]})

    @api("POST", "/console/agreements/amend", auth=None, public=False)
    def console_amend_agreement(self, request):
        def call(actor, form):
            body = {"reason": form.get("reason", "")}
            if form.get("valid_until"):
                body["valid_until"] = local_day(form["valid_until"])
            if form.get("valid_from"):
                body["valid_from"] = local_day(form["valid_from"])
            return self.partners.amend_agreement(actor, form.get("agreement_id", ""), body)
        return self.partners_form(request, "amend agreement", "amend", call,
                                  lambda answer: {"agreement_id": answer["id"]})

    @api("POST", "/console/agreements/terminate", auth=None, public=False)
    def console_terminate_agreement(self, request):
        def call(actor, form):
            body = {"reason": form["reason"]} if form.get("reason") else {}
            return self.partners.terminate_agreement(actor, form.get("agreement_id", ""), body)
        return self.partners_form(request, "terminate agreement", "terminate", call,
                                  lambda answer: {"agreement_id": answer["id"]})


def local_day(text):
    """A day as people here write it (dd/mm/yyyy) or as a date field sends it (yyyy-mm-dd), in ISO
    form for the services; anything else as typed, for the service to refuse by name."""
    found = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text.strip())
    return "{}-{:0>2}-{:0>2}".format(found.group(3), found.group(2), found.group(1)) if found else text.strip()
