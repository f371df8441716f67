"""The operator's HTTP routes, which the gateway mounts (`class GatewayService(OperationsRoutes)`):
health, Prometheus metrics, dead letters and their replay, the audit trail of a correlation id, and
the console (server-rendered pages, signed in by cookie: `ops/console/`)."""
import hmac
from datetime import date, timedelta
from urllib.parse import quote

from nameko import config
from pymongo import ASCENDING, IndexModel
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.wrappers import Response

from backbone.auth import OPERATOR, is_admin, is_operator, require_operator
from backbone.clock import utcnow
from backbone.errors import DomainError
from gateway import admission, documents, tables
from gateway.entrypoints import api, read_json
from ops import accounts, audit, console, fleet
from ops.console import charts, pages
from ops.console.labels import CERTIFICATE_LABELS
from ops.console.programme import ProgrammeConsoleRoutes
from ops.console.units import UnitConsoleRoutes


LOGIN_ATTEMPTS = 5
LOGIN_WINDOW = timedelta(minutes=15)
# The gateway's collections these routes keep (sessions and login attempts run out on their own).
INDEXES = {
    "console_sessions": [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)],
    "console_logins": [IndexModel([("until", ASCENDING)], expireAfterSeconds=0)],
}


def asked_day(request):
    """The `as_of` a console page was asked for, or None (today) when absent or not a date."""
    try:
        return date.fromisoformat(request.args.get("as_of", "")[:10])
    except ValueError:
        return None


COVERAGE_CHARTS = {
    "progress": lambda gw, found, t: charts.progress(found["report"]["month"]["items"],
                                                     found["report"]["month"]["totals"]["target"], t),
    "groups": lambda gw, found, t: charts.by_group(found["report"]["audience_group"]["items"], t, t["groups"]),
    "units": lambda gw, found, t: charts.by_unit(found["report"]["unit"]["items"], t),
    "map": lambda gw, found, t: charts.city_map(found["report"]["unit"]["items"],
                                                     [u for u in pages.active_units(gw) if pages.on_the_map(u)], t),
}


class OperationsRoutes(UnitConsoleRoutes, ProgrammeConsoleRoutes):
    """Needs of the service that mounts it: `actor(request)`, its `db` (with INDEXES) and an RPC
    client per service."""

    @api("GET", "/health", auth=None, summary="Every service's health; 503 naming the failing ones.")
    def health(self, request):
        """Every service's health RPC (its MongoDB, its broker connection, its outbox backlog), asked
        in parallel with a short timeout: a stopped or hung service shows as down within it; it does
        not hang this endpoint. `checks` adds each service's details (what failed, outbox backlog)."""
        healthy, services, details = fleet.health(self)
        return (200 if healthy else 503), {"status": "ok" if healthy else "degraded", "services": services,
                                           "checks": {name: {k: v for k, v in d.items() if k != "queues"}
                                                      for name, d in details.items()}}

    @api("GET", "/metrics",
         summary="Prometheus text: the gateway's and every service's metrics; trainops_service_up 0 for "
                 "a service that did not answer.")
    def prometheus_metrics(self, request):
        require_operator(self.actor(request), reading=True)
        return Response(fleet.scrape(self), content_type=CONTENT_TYPE_LATEST)

    # -- operations -------------------------------------------------------------------------------

    @api("GET", "/dead-letters", query="DeadLetterQuery",
         summary="Dead letters of every service, newest first: consumer, error, attempts and the original event.")
    def list_dead_letters(self, request):
        actor = self.actor(request)
        require_operator(actor, reading=True)  # before the services are asked: a partner's 403 is not "unavailable"
        return fleet.dead_letters(self, actor, request.args.get("consumer"),
                                  request.args.get("event_type"), request.args.get("status"))

    @api("POST", "/dead-letters/<letter_id>/replay",
         summary="Send one dead letter back to its consumer; an event handled since is not handled again.")
    def replay_dead_letter(self, request, letter_id):
        actor = self.actor(request)
        require_operator(actor)
        return fleet.replay_one(self, actor, letter_id)

    @api("POST", "/dead-letters/replay", body="DeadLetterReplayIn",
         summary="Replay every parked dead letter of one kind at one consumer: {consumer, event_type}.")
    def replay_dead_letters(self, request):
        actor = self.actor(request)
        require_operator(actor)
        body = read_json(request)
        return fleet.replay_kind(self, actor, body.get("consumer"), body.get("event_type"))

    @api("GET", "/events", query="AuditQuery",
         summary="The audit trail of a correlation id across services, in order of time: events written, "
                 "published, handled, dead-lettered.")
    def audit_trail(self, request):
        actor = self.actor(request)
        require_operator(actor, reading=True)
        return fleet.audit_trail(self, actor, request.args.get("correlation_id", "")[:64])

    # The console: pages for people, signed-in by cookie (see ops/console/__init__.py).

    def console_session(self, request):
        """The session's nonce when its cookie is genuine, young enough, not logged out and, for an
        operator account, the account still active; who signed in is then `console_actor(request)`."""
        nonce = console.session_of(request, config.get("OPERATOR_TOKEN") or "")
        found = nonce and self.db.console_sessions.find_one({"_id": nonce, "expires_at": {"$gt": utcnow()}})
        if not found:
            return None
        if found.get("operator_id"):
            account = accounts.active_account(self.db, found["operator_id"])
            if account is None:  # deactivated since: the session ends now
                return None
            request.environ["trainops.console_actor"] = accounts.as_actor(account)
        else:
            request.environ["trainops.console_actor"] = OPERATOR  # signed in with OPERATOR_TOKEN
        return nonce

    @staticmethod
    def console_actor(request):
        """Who signed in to this console session (after `console_session`): an account's actor, or SYSTEM."""
        return request.environ.get("trainops.console_actor")

    def console_form_refusal(self, request, action=None):
        """For a console form: a redirect to the login, or a 403 page when the form's CSRF token is
        not this session's, or the one who signed in is a viewer; None when the post may go ahead.
        `action`: the console action's name, for the audit of a viewer's refused try."""
        nonce = self.console_session(request)
        if nonce is None:
            return console.redirect("/console/login")
        if not console.csrf_ok(request, config["OPERATOR_TOKEN"], nonce):
            return console.page(request, "login.html", status=403,
                                error=console.LABELS[console.language(request)]["forbidden"])
        if not is_operator(self.console_actor(request)):
            if action:
                self.console_audit(request, action, {}, 403)
            return console.page(request, "login.html", status=403,
                                error=console.LABELS[console.language(request)]["viewer_reads_only"])
        return None

    def console_audit(self, request, action, target, status):
        """A console action in the audit, with who signed in (`route`: "console: <action>")."""
        audit.record(self.db, self.console_actor(request), "console: " + action, target, status, self.tracing)

    def console_page(self, request, template, gather, *args):
        nonce = self.console_session(request)
        if nonce is None:
            return console.redirect("/console/login")
        csrf = console.csrf_token(config["OPERATOR_TOKEN"], nonce)
        me = self.console_actor(request)
        return console.page(request, template, csrf=csrf, me=me, can_write=is_operator(me), is_admin=is_admin(me),
                            **gather(self, *args))

    @api("GET", "/console/static/console.css", auth=None, public=False)
    def console_css(self, request):
        return console.stylesheet()

    @api("GET", "/console/login", auth=None, public=False)
    def console_login_form(self, request):
        return console.page(request, "login.html")

    @api("POST", "/console/login", auth=None, public=False)
    def console_login(self, request):
        """At most LOGIN_ATTEMPTS failed logins per client address in LOGIN_WINDOW, then 429."""
        client = admission.client_of(request)
        attempts = self.db.console_logins.find_one({"_id": client}) or {}
        if attempts.get("failures", 0) >= LOGIN_ATTEMPTS and attempts["until"] > utcnow():
            response = console.page(request, "login.html", status=429,
                                    error=console.LABELS[console.language(request)]["too_many_logins"])
            response.headers["Retry-After"] = str(int((attempts["until"] - utcnow()).total_seconds()) + 1)
            return response
        key = config.get("OPERATOR_TOKEN") or ""
        given = request.form.get("token", "")
        if key and hmac.compare_digest(given.encode(), key.encode()):
            self.db.console_logins.delete_one({"_id": client})
            cookie, nonce = console.new_session(key)
            self.db.console_sessions.insert_one({"_id": nonce, "who": "system", "operator_id": None,
                                                 "created_at": utcnow(),
                                                 "expires_at": utcnow() + timedelta(seconds=console.SESSION_SECONDS)})
            return console.redirect("/console", cookie=cookie, secure=console.served_over_https(request))
        self.db.console_logins.update_one({"_id": client}, {
            "$inc": {"failures": 1}, "$set": {"until": utcnow() + LOGIN_WINDOW}}, upsert=True)
        return console.page(request, "login.html", status=401,
                            error=console.LABELS[console.language(request)]["bad_token"])

    @api("POST", "/console/logout", auth=None, public=False)
    def console_logout(self, request):
        """Forgets the session here, so a copy of the cookie opens nothing any more."""
        nonce = console.session_of(request, config.get("OPERATOR_TOKEN") or "")
        if nonce:
            self.db.console_sessions.delete_one({"_id": nonce})
        return console.redirect("/console/login", clear=True, secure=console.served_over_https(request))

    @api("GET", "/console", auth=None, public=False)
    def console_overview(self, request):
        return self.console_page(request, "overview.html", pages.overview)

    @api("GET", "/console/dead-letters", auth=None, public=False)
    def console_dead_letters(self, request):
        replayed = request.args.get("replayed")
        return self.console_page(request, "dead_letters.html", pages.dead_letters,
                                 int(replayed) if replayed and replayed.isdigit() else None)

    @api("POST", "/console/dead-letters/replay", auth=None, public=False)
    def console_replay(self, request):
        refusal = self.console_form_refusal(request, "replay dead letters")
        if refusal is not None:
            return refusal
        actor = self.console_actor(request)
        if request.form.get("id"):
            target = {"letter_id": request.form["id"][:200]}
            done = fleet.replay_one(self, actor, request.form["id"])
        else:
            target = {"consumer": request.form.get("consumer", "")[:100],
                      "event_type": request.form.get("event_type", "")[:100]}
            done = fleet.replay_kind(self, actor, request.form.get("consumer"), request.form.get("event_type"))
        self.console_audit(request, "replay dead letters", target, 200)
        return console.redirect("/console/dead-letters?replayed={}".format(len(done["replayed"])))

    @api("GET", "/console/sessions", auth=None, public=False)
    def console_sessions(self, request):
        return self.console_page(request, "sessions.html", pages.sessions)

    @api("GET", "/console/notifications", auth=None, public=False)
    def console_notifications(self, request):
        return self.console_page(request, "notifications.html", pages.notifications,
                                 request.args.get("outcome", "")[:40])

    @api("POST", "/console/notifications/resend", auth=None, public=False)
    def console_resend(self, request):
        refusal = self.console_form_refusal(request, "resend notice")
        if refusal is not None:
            return refusal
        try:
            self.notifications.resend(self.console_actor(request), request.form.get("id", ""))
            outcome, status = "resent", 200
        except DomainError as error:  # not failed any more, or unknown: say so on the page
            outcome, status = error.code, error.status
        self.console_audit(request, "resend notice", {"notice_id": request.form.get("id", "")[:100]}, status)
        return console.redirect("/console/notifications?outcome={}".format(outcome))

    @api("GET", "/console/partners", auth=None, public=False)
    def console_partners(self, request):
        return self.console_page(request, "partners.html", pages.partners)

    # Coverage for leaders: the page, its charts (SVG images) and the quarterly report to download.
    @api("GET", "/console/coverage", auth=None, public=False)
    def console_coverage(self, request):
        return self.console_page(request, "coverage.html", pages.coverage, asked_day(request))

    @api("GET", "/console/coverage/<chart>.svg", auth=None, public=False)
    def console_coverage_chart(self, request, chart):
        if chart not in COVERAGE_CHARTS:
            return console.page(request, "login.html", status=404)
        if self.console_session(request) is None:
            return Response("", status=401)
        found = pages.coverage(self, asked_day(request))
        if found["report"] is None:
            return Response("", status=503, headers={"Retry-After": "5"})
        labels = console.LABELS[console.language(request)]
        svg = COVERAGE_CHARTS[chart](self, found, labels)
        # Shown as an image: no script runs there, and none may.
        return Response(svg, mimetype="image/svg+xml", headers={
            "Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    @api("GET", "/console/coverage/report.<kind>", auth=None, public=False)
    def console_coverage_report(self, request, kind):
        if kind not in ("xlsx", "pdf"):
            return console.page(request, "login.html", status=404)
        if self.console_session(request) is None:
            return console.redirect("/console/login")
        report = pages.coverage_report(self, asked_day(request))
        if report is None:
            return Response("", status=503, headers={"Retry-After": "5"})
        labels = console.LABELS[console.language(request)]
        titles = {by: labels["by_" + by] for by in pages.COVERAGE_VIEWS}
        if kind == "pdf":
            return documents.quarterly_pdf(report, titles, labels["groups"])
        sheets = [(titles[by], answer["columns"], [[labels["groups"].get(i[c], i[c]) if c == "name" else i[c]
                                                   for c in answer["columns"]]
                                                  for i in answer["items"] + [answer["totals"]]])
                  for by, answer in report.items()]
        return tables.xlsx_book(sheets, "bao-cao-quy-" + report["unit"]["as_of"])

    @api("GET", "/console/events", auth=None, public=False)
    def console_events(self, request):
        correlation_id = request.args.get("correlation_id", "").strip()[:64]

        def gather(gateway):
            if not correlation_id:
                return {"correlation_id": "", "items": [], "unavailable": []}
            return fleet.audit_trail(gateway, OPERATOR, correlation_id)
        return self.console_page(request, "events.html", gather)

    # Certificates: find one by its code, revoke it (registration checks who asks again).
    @api("GET", "/console/certificates", auth=None, public=False)
    def console_certificates(self, request):
        code = request.args.get("code", "").strip().upper()[:40]

        def gather(gateway):
            found, missing = None, False
            if code:
                try:
                    found = gateway.registration.certificate_record(code)
                except DomainError:
                    missing = True
            return {"code": code, "found": found, "missing": missing, "outcome": request.args.get("outcome", "")[:40],
                    "c": CERTIFICATE_LABELS[console.language(request)]}
        return self.console_page(request, "certificates.html", gather)

    @api("POST", "/console/certificates/revoke", auth=None, public=False)
    def console_revoke_certificate(self, request):
        refusal = self.console_form_refusal(request, "revoke certificate")
        if refusal is not None:
            return refusal
        code = request.form.get("code", "")[:40]
        try:
            self.registration.revoke_certificate(self.console_actor(request), code,
                                                 {"reason": request.form.get("reason", "").strip()})
            outcome, status = "revoked", 200
        except DomainError as error:
            outcome, status = error.code, error.status
        self.console_audit(request, "revoke certificate", {"code": code}, status)
        return console.redirect("/console/certificates?code={}&outcome={}".format(quote(code), outcome))
