"""The HTTP gateway: the only public entry. It authenticates the caller, parses JSON, and calls the
services by RPC (nameko's ServiceRpc, one connection per container, never a proxy per request). The
paths, status codes and error shape are the public contract, published at `GET /openapi.json`."""
import hmac
import re

import eventlet
from nameko import config
from pymongo import ASCENDING, IndexModel
from werkzeug.wrappers import Response

from backbone.auth import FEED_TOKEN_PREFIX, OPERATOR, coordinator_units, is_admin
from backbone.database import Database
from backbone.errors import DomainError
from backbone.logs import Tracing
from gateway import documents, openapi, privacy, selfservice, signin, tables
from gateway.admission import bearer_token, token_digest
from gateway.entrypoints import Routes, ServiceClient, api, read_json
from gateway.responses import attachment
from gateway.certificates import CertificateRoutes
from gateway.selfservice import SelfServiceRoutes
from ops import accounts, administration, fleet
from ops import routes as ops_routes
from ops.administration import AdministrationRoutes
from ops.routes import OperationsRoutes

HEALTH_TIMEOUT = 2.0
# What a unit coordinator's API token starts with (issued by registration, `POST /units/{code}/coordinators`).
COORDINATOR_TOKEN_PREFIX = "co_"
# An Idempotency-Key is honoured for a day: a retry comes within minutes, a replay after a day is a new request.
IDEMPOTENCY_SECONDS = 24 * 3600
_DOCUMENTS = {}


def forget_in_gateway(db, official_id, official):
    """The gateway's part of an erasure: the answers kept for Idempotency-Key replays that name the
    official (by id, name, email or phone) are dropped, and their sign-in links, /me sessions and
    tokens (signed in, they would still see what is left of them)."""
    values = [official_id] + [official.get(k) for k in ("full_name", "email", "phone") if official and official.get(k)]
    pattern = "|".join(re.escape(v) for v in values)
    db.idempotency.delete_many({"body": {"$regex": pattern}})
    db.sign_in_links.delete_many({"audience": "official", "subject_id": official_id})
    db.me_sessions.delete_many({"official_id": official_id})
    db.me_tokens.delete_many({"official_id": official_id})
    db.me_seen.delete_one({"_id": official_id})


class GatewayService(OperationsRoutes, AdministrationRoutes, SelfServiceRoutes, CertificateRoutes):
    name = "gateway"

    # Idempotency records (kept a day), console sessions, login attempts, sign-in links, officials'
    # sessions and tokens, operator accounts and their tokens, and the audit of who acted; it
    # publishes no events.
    db = Database(relay=False, indexes=dict(ops_routes.INDEXES, **signin.INDEXES, **selfservice.INDEXES,
                                            **administration.INDEXES, idempotency=[
        IndexModel([("created_at", ASCENDING)], expireAfterSeconds=IDEMPOTENCY_SECONDS)]))
    tracing = Tracing()
    routes = Routes()
    partners = ServiceClient("partners")
    scheduling = ServiceClient("scheduling")
    registration = ServiceClient("registration")
    notifications = ServiceClient("notifications")

    def actor(self, request):
        """The caller: the operator, a partner (by its API key), or 401. Asked once per request (the
        answer stays on it); a token that authenticated nobody is refused without an RPC for a
        minute (`gateway/admission.py`)."""
        known = request.environ.get("trainops.actor")
        if known is not None:
            return known
        token = bearer_token(request)
        if not token:
            raise DomainError("unauthenticated", "Send Authorization: Bearer <token>.", {}, 401)
        operator_token = config.get("OPERATOR_TOKEN") or ""
        if operator_token and hmac.compare_digest(token.encode(), operator_token.encode()):
            found = OPERATOR
        elif token.startswith(selfservice.TOKEN_PREFIX):
            # An official's short-lived token for the JSON twins under /me (gateway/selfservice).
            found = self.official_token(token)
            if not found:
                raise DomainError("unauthenticated", "Unknown or expired token.", {}, 401)
        elif token.startswith(FEED_TOKEN_PREFIX):
            raise DomainError("unauthenticated", "A calendar feed token opens its calendar feed only, "
                              "in its calendar_url; it is no Bearer token.", {}, 401)
        elif token.startswith(COORDINATOR_TOKEN_PREFIX):
            # A unit coordinator: registration keeps its token's digest and its units (with what they
            # became), asked on every request, so a revocation or a reorganisation counts at once.
            # Only refusals are remembered (as for API keys): a revoked token was never known good here.
            found = self.known_token(request, token, self.registration.authenticate_coordinator)
        elif token.startswith(accounts.TOKEN_PREFIX):
            # An operator account's personal token: in this database, checked against the account
            # each time (a deactivated account's token stops at once); misses are remembered.
            found = self.known_token(request, token, lambda known: accounts.authenticate(self.db, known))
        else:
            found = self.known_token(request, token, self.partners.authenticate)
        request.environ["trainops.actor"] = found
        return found

    @staticmethod
    def known_token(request, token, authenticate):
        """Who `authenticate` (a service's RPC) says the token is, or 401; a token that authenticated
        nobody is refused without an RPC for a minute (`gateway/admission.py`)."""
        unknown = request.environ["trainops.admission"].unknown_tokens
        digest = token_digest(token)
        found = None if digest in unknown else authenticate(token)
        if not found:
            unknown.add(digest)
            raise DomainError("unauthenticated", "Unknown or revoked token.", {}, 401)
        return found

    # -- health and the API description -----------------------------------------------------------------

    @api("GET", "/alive", auth=None, summary="The gateway process answers (touches nothing else).")
    def alive(self, request):
        return {"status": "alive"}

    @api("GET", "/openapi.json", auth=None, summary="This document.")
    def openapi_document(self, request):
        """Built once per deployment (the services' schemas do not change while they run), and kept:
        anyone may ask for it."""
        deployment = (config.get("AMQP_URI"), config.get("DATABASE_PREFIX"))
        if deployment not in _DOCUMENTS:
            described = [fleet.schemas(), administration.schemas()]
            for name in fleet.services():
                with eventlet.Timeout(HEALTH_TIMEOUT * 2):
                    described.append(getattr(self, name).api_schemas())
            _DOCUMENTS[deployment] = openapi.build(self.routes, described)
        return _DOCUMENTS[deployment]

    # -- partners ---------------------------------------------------------------------------------

    @api("POST", "/partners", body="PartnerIn", status=201,
         summary="Onboard a partner; the answer holds its API key, shown this once.")
    def create_partner(self, request):
        return 201, self.partners.create_partner(self.actor(request), read_json(request))

    @api("GET", "/partners", auth="any", query="PartnerQuery",
         summary="Partners by code (a partner sees only itself).")
    def list_partners(self, request):
        return self.partners.list_partners(self.actor(request), request.args.to_dict())

    @api("GET", "/partners/<partner_id>", auth="partner",
         summary="One partner, with its API keys' ids and hints and the calendar_url of its feed.")
    def get_partner(self, request, partner_id):
        actor = self.actor(request)
        partner = self.partners.get_partner(actor, partner_id)
        # Scheduling owns the feeds; partners has checked who may read this partner.
        partner["calendar_url"] = self.scheduling.calendar_url(actor, "partner", partner_id)
        return partner

    @api("POST", "/partners/<partner_id>/keys", status=201,
         summary="Issue another API key (rotation: issue, switch, revoke the old); the key is shown this once.")
    def issue_api_key(self, request, partner_id):
        return 201, self.partners.issue_api_key(self.actor(request), partner_id)

    @api("POST", "/partners/<partner_id>/keys/<key_id>/revoke",
         summary="Revoke an API key; it gets 401 from the next request on.")
    def revoke_api_key(self, request, partner_id, key_id):
        return self.partners.revoke_api_key(self.actor(request), partner_id, key_id)

    @api("POST", "/partners/<partner_id>/agreements", body="AgreementIn", status=201,
         summary="Record a cooperation agreement; status follows from its dates.")
    def create_agreement(self, request, partner_id):
        return 201, self.partners.create_agreement(self.actor(request), partner_id, read_json(request))

    @api("GET", "/partners/<partner_id>/agreements", auth="partner",
         query="AgreementQuery", summary="A partner's agreements with their status.")
    def list_agreements(self, request, partner_id):
        return self.partners.list_agreements(self.actor(request), partner_id, request.args.to_dict())

    @api("GET", "/agreements/<agreement_id>", auth="partner",
         summary="One agreement: status (pending, active, expired), amendments and termination in history.")
    def get_agreement(self, request, agreement_id):
        return self.partners.get_agreement(self.actor(request), agreement_id)

    @api("POST", "/agreements/<agreement_id>/amend", body="AgreementAmendment",
         summary="Extend or shorten an agreement's validity; 422 agreement_ended once it has ended.")
    def amend_agreement(self, request, agreement_id):
        return self.partners.amend_agreement(self.actor(request), agreement_id, read_json(request))

    @api("POST", "/agreements/<agreement_id>/terminate", body="AgreementTermination",
         summary="End an agreement as of today (body optional).")
    def terminate_agreement(self, request, agreement_id):
        return self.partners.terminate_agreement(self.actor(request), agreement_id, read_json(request, optional=True))

    @api("POST", "/offerings", body="OfferingIn", auth="partner", status=201,
         summary="Publish a course offering; 422 no_active_agreement unless an active agreement covers it.")
    def create_offering(self, request):
        return 201, self.partners.create_offering(self.actor(request), read_json(request))

    @api("GET", "/offerings", auth="partner",
         query="OfferingQuery", summary="Offerings (a partner sees its own).")
    def list_offerings(self, request):
        return self.partners.list_offerings(self.actor(request), request.args.to_dict())

    @api("GET", "/offerings/<offering_id>", auth="partner", summary="One offering.")
    def get_offering(self, request, offering_id):
        return self.partners.get_offering(self.actor(request), offering_id)

    @api("POST", "/offerings/<offering_id>/update", body="OfferingUpdate", auth="partner",
         summary="Change an offering's fields; checked against the agreements again.")
    def update_offering(self, request, offering_id):
        return self.partners.update_offering(self.actor(request), offering_id, read_json(request))

    @api("POST", "/offerings/<offering_id>/withdraw", body="OfferingWithdrawal", auth="partner",
         summary="Withdraw an offering (body optional); its future sessions are cancelled.")
    def withdraw_offering(self, request, offering_id):
        return self.partners.withdraw_offering(self.actor(request), offering_id, read_json(request, optional=True))

    # -- scheduling -------------------------------------------------------------------------------

    def feed_caller(self, request):
        """The caller of an .ics feed. Calendar apps cannot send headers, so a feed's URL carries its
        own read-only token (`?token=`, checked by scheduling), and only that: a URL leaks through
        calendar sync services, proxies and shared links, so an API key or the operator token there
        is refused before anything is asked. Without `?token=`, the Authorization header as anywhere
        (None: the caller is the feed's token)."""
        token = request.args.get("token")
        if token is None:
            return self.actor(request)
        if not token.startswith(FEED_TOKEN_PREFIX):
            raise DomainError("unauthenticated", "Only a calendar feed token (from calendar_url) goes in ?token=.",
                              {}, 401)
        return None

    @staticmethod
    def calendar_file(ics, name):
        return Response(ics.encode("utf-8"), mimetype="text/calendar",
                        headers={"Content-Disposition": attachment(name, "ics", "inline")})

    @api("POST", "/venues", body="VenueIn", status=201, summary="A venue and its rooms.")
    def create_venue(self, request):
        return 201, self.scheduling.create_venue(self.actor(request), read_json(request))

    @api("GET", "/venues", auth="any", query="VenueQuery", summary="Venues by name with their rooms.")
    def list_venues(self, request):
        return self.scheduling.list_venues(self.actor(request), request.args.to_dict())

    @api("GET", "/venues/<venue_id>", auth="any",
         summary="A venue and its rooms (seats, equipment); calendar_url for the operator and its host.")
    def get_venue(self, request, venue_id):
        return self.scheduling.get_venue(self.actor(request), venue_id)

    @api("GET", "/venues/<venue_id>/calendar.ics", auth="feed",
         query="FeedQuery", summary="ICS feed of the venue's sessions for calendar apps (its calendar_url).")
    def venue_calendar(self, request, venue_id):
        return self.calendar_file(self.scheduling.venue_calendar(
            self.feed_caller(request), venue_id, request.args.to_dict()), venue_id)

    @api("GET", "/partners/<partner_id>/calendar.ics", auth="feed",
         query="FeedQuery", summary="ICS feed of the sessions a partner delivers or hosts (its calendar_url).")
    def partner_calendar(self, request, partner_id):
        return self.calendar_file(self.scheduling.partner_calendar(
            self.feed_caller(request), partner_id, request.args.to_dict()), partner_id)

    @api("POST", "/partners/<partner_id>/calendar/rotate", auth="partner",
         summary="A new calendar_url for the partner's feed; the old one is refused from now on.")
    def rotate_partner_calendar(self, request, partner_id):
        actor = self.actor(request)
        self.partners.get_partner(actor, partner_id)  # 404 for no such partner, 403 for another's
        return self.scheduling.rotate_feed(actor, "partner", partner_id)

    @api("POST", "/venues/<venue_id>/calendar/rotate", auth="partner",
         summary="A new calendar_url for the venue's feed (operator or host); the old one is refused from now on.")
    def rotate_venue_calendar(self, request, venue_id):
        return self.scheduling.rotate_feed(self.actor(request), "venue", venue_id)

    @api("POST", "/sessions/<session_id>/calendar/rotate", auth="partner",
         summary="A new calendar_url for the session's feed (operator, its partner or host); the old one is "
                 "refused from now on.")
    def rotate_session_calendar(self, request, session_id):
        return self.scheduling.rotate_feed(self.actor(request), "session", session_id)

    @api("POST", "/sessions", body="SessionIn", auth="partner", status=201,
         summary="Schedule a session; 409 room_conflict / trainer_conflict naming the other session.")
    def create_session(self, request):
        return 201, self.scheduling.create_session(self.actor(request), read_json(request))

    @api("GET", "/sessions", auth="any", query="SessionQuery", summary="The programme calendar by start time.")
    def list_sessions(self, request):
        return self.scheduling.list_sessions(self.actor(request), request.args.to_dict())

    @api("GET", "/sessions/<session_id>", auth="any",
         summary="A session with seats taken and waitlist length; calendar_url for the operator and its partners.")
    def get_session(self, request, session_id):
        session = self.scheduling.get_session(self.actor(request), session_id)
        session.update(self.registration.seats(session_id))
        return session

    @api("GET", "/sessions/<session_id>/calendar.ics", auth="feed",
         query="FeedQuery", summary="The session as an iCalendar file (its calendar_url, or any token as a header).")
    def session_calendar(self, request, session_id):
        return self.calendar_file(self.scheduling.session_calendar(
            self.feed_caller(request), session_id, request.args.to_dict()), session_id)

    @api("POST", "/sessions/<session_id>/reschedule", body="RescheduleIn", auth="partner",
         summary="Move a session (same checks as scheduling it); its parts move with it unless given.")
    def reschedule_session(self, request, session_id):
        return self.scheduling.reschedule_session(self.actor(request), session_id, read_json(request))

    @api("POST", "/sessions/<session_id>/capacity", body="CapacityIn", auth="partner",
         summary="Change how many a session seats; 422 capacity_exceeds_room.")
    def change_capacity(self, request, session_id):
        return self.scheduling.change_capacity(self.actor(request), session_id, read_json(request))

    @api("POST", "/sessions/<session_id>/cancel", body="CancelIn", auth="partner",
         summary="Cancel a session with a reason; its room and trainer are free again.")
    def cancel_session(self, request, session_id):
        return self.scheduling.cancel_session(self.actor(request), session_id, read_json(request))

    # -- registration -----------------------------------------------------------------------------

    @api("POST", "/units", body="UnitIn", status=201, summary="An administrative unit (a ward, a department, ...).")
    def create_unit(self, request):
        return 201, self.registration.create_unit(self.actor(request), read_json(request))

    @api("GET", "/units", auth="any", query="UnitQuery",
         summary="Units by code, dissolved ones with what they became; q ignores accents.")
    def list_units(self, request):
        return self.registration.list_units(self.actor(request), request.args.to_dict())

    @api("POST", "/units/load-map",
         summary="Load the city's map: its 168 units of today, its departments and leadership, and the units "
                 "of early 2025 the first class was for; again, it changes nothing (body optional).")
    def load_map(self, request):
        actor = self.actor(request)
        read_json(request, optional=True)
        return self.registration.load_map(actor)

    @api("POST", "/units/reorganize", body="ReorganizeIn",
         summary="Merges, renames and splits of units as data, checked as a whole; 422 names the bad change.")
    def reorganize_units(self, request):
        return self.registration.reorganize_units(self.actor(request), read_json(request))

    @api("POST", "/units/merge", body="UnitMergeIn", status=201,
         summary="Merge units into one; officials, quotas and sessions' eligible units follow.")
    def merge_units(self, request):
        return 201, self.registration.merge_units(self.actor(request), read_json(request))

    @api("POST", "/units/<code>/headcount", body="HeadcountIn",
         summary="Declare how many officials of an audience group a unit has (coverage counts against it).")
    def set_headcount(self, request, code):
        return self.registration.set_headcount(self.actor(request), code, read_json(request))

    @api("POST", "/units/<code>/coordinators", body="CoordinatorIn", status=201,
         summary="A coordinator of the unit (or of unit_codes): {id, unit_codes, api_token}; the co_ token is "
                 "shown this once, stored as a digest; it acts for its units and what they become.")
    def create_coordinator(self, request, code):
        return 201, self.registration.create_coordinator(self.actor(request), code, read_json(request))

    @api("GET", "/units/<code>/coordinators", query="CoordinatorQuery",
         summary="The unit's coordinators (never their tokens): {items, next_cursor}.")
    def list_coordinators(self, request, code):
        return self.registration.list_coordinators(self.actor(request), code, request.args.to_dict())

    @api("POST", "/coordinators/<coordinator_id>/revoke",
         summary="Revoke a coordinator's token; it gets 401 from the next request on.")
    def revoke_coordinator(self, request, coordinator_id):
        return self.registration.revoke_coordinator(self.actor(request), coordinator_id)

    @api("POST", "/officials", body="OfficialIn", status=201,
         summary="An official; phone answered in +84 form (a coordinator: of its units, else 403 unit_not_yours).")
    def create_official(self, request):
        return 201, self.registration.create_official(self.actor(request), read_json(request))

    @api("POST", "/officials/import", max_body="max_import_bytes", timeout="import",
         summary="A staff list as CSV (UTF-8, BOM accepted): {created, updated, unchanged, errors: [{row, fields}], "
                 "errors_total}; 413 past the size or row cap.")
    def import_officials(self, request):
        actor = self.actor(request)  # before the file is read
        try:
            text = request.get_data().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DomainError("malformed_csv", "The file is not UTF-8 text: {}".format(exc), {}, 400)
        return self.registration.import_officials(actor, text)

    @api("GET", "/officials", query="OfficialQuery", summary="Officials; q matches accent-insensitively.")
    def list_officials(self, request):
        return self.registration.list_officials(self.actor(request), request.args.to_dict())

    @api("GET", "/officials/<official_id>", summary="One official.")
    def get_official(self, request, official_id):
        return self.registration.get_official(self.actor(request), official_id)

    @api("POST", "/officials/<official_id>/update", body="OfficialChangeIn",
         summary="Correct an official's record (any of its fields, checked as on creation; a coordinator: "
                 "of its units only, else 403 unit_not_yours); 409 official_exists for another's email or phone.")
    def update_official(self, request, official_id):
        return self.registration.update_official(self.actor(request), official_id, read_json(request))

    @api("GET", "/officials/<official_id>/record",
         summary="One official's training record: registrations, attendance and certificates.")
    def official_record(self, request, official_id):
        return self.registration.official_record(self.actor(request), official_id)

    @api("POST", "/sessions/<session_id>/registrations", body="RegistrationIn", status=201,
         summary="Register an official: confirmed, or waitlisted with a position.")
    def register(self, request, session_id):
        return 201, self.registration.register(self.actor(request), session_id, read_json(request))

    @api("GET", "/sessions/<session_id>/registrations", auth="partner", query="RegistrationQuery",
         summary="A session's registrations (the waitlist in order); partners see name, unit, audience group, "
                 "status and attendance only.")
    def list_registrations(self, request, session_id):
        return self.registration.list_registrations(self.actor(request), session_id, request.args.to_dict())

    @api("POST", "/sessions/<session_id>/quotas", body="QuotasIn",
         summary="Seats per unit on a session, e.g. {\"quotas\": {\"Q1\": 30}}; 0 removes one.")
    def set_quotas(self, request, session_id):
        return self.registration.set_quotas(self.actor(request), session_id, read_json(request))

    @api("POST", "/sessions/<session_id>/checkins", body="CheckinIn", auth="partner",
         summary="Check an official in by the QR token scanned at the door (per part), from an hour before the "
                 "start to the end; a repeat is the same check-in.")
    def check_in(self, request, session_id):
        return self.registration.check_in(self.actor(request), session_id, read_json(request))

    @api("GET", "/registrations/<registration_id>", auth="partner",
         summary="A registration with its status (the operator also sees contacts and the QR token).")
    def get_registration(self, request, registration_id):
        return self.registration.get_registration(self.actor(request), registration_id)

    @api("GET", "/registrations/<registration_id>/qr.svg", summary="The registration's QR code (SVG).")
    def registration_qr(self, request, registration_id):
        svg = self.registration.registration_qr(self.actor(request), registration_id)
        return Response(svg.encode("utf-8"), mimetype="image/svg+xml")

    @api("POST", "/registrations/<registration_id>/cancel", body="CancellationIn",
         summary="Cancel a registration (body optional); the first who fits on the waitlist is promoted.")
    def cancel_registration(self, request, registration_id):
        return self.registration.cancel_registration(
            self.actor(request), registration_id, read_json(request, optional=True))

    @api("GET", "/certificates/<code>", auth=None,
         summary="A certificate of completion as printable HTML: the public verification of its code.")
    def certificate(self, request, code):
        return Response(self.registration.certificate(code).encode("utf-8"), mimetype="text/html")

    @api("GET", "/programme", auth="any", summary="The programme: name, legal basis, period and targets.")
    def get_programme(self, request):
        return self.registration.get_programme(self.actor(request))

    @api("POST", "/programme", body="ProgrammeIn", summary="Set the programme record (name, basis, targets).")
    def set_programme(self, request):
        return self.registration.set_programme(self.actor(request), read_json(request))

    @api("GET", "/reports/coverage", query="CoverageQuery",
         summary="Coverage for leaders: staff, trained, coverage, registered, attended, target and gap by unit, "
                 "audience group, partner or month, with totals; json, csv, xlsx or pdf.")
    def coverage(self, request):
        actor = self.actor(request)
        found = self.registration.coverage(actor, request.args.to_dict())
        # A coordinator reads no partner records: its partner rows keep their ids.
        if request.args.get("by") == "partner" and coordinator_units(actor) is None:
            names = {p["id"]: p["name"] for p in self.partners.list_partners(actor, {"limit": 200})["items"]}
            for item in found["items"]:
                item["name"] = names.get(item["key"], item["name"])
        kind = request.args.get("format", "json")
        if kind == "pdf":
            return documents.coverage_pdf(found)
        if kind in ("csv", "xlsx"):
            rows = [[item[c] for c in found["columns"]] for item in found["items"] + [found["totals"]]]
            return tables.tabular({"columns": found["columns"], "rows": rows}, kind,
                                  "coverage-{}-{}".format(request.args.get("by", "unit"), found["as_of"]))
        return found

    @api("GET", "/reports/over-capacity",
         summary="Sessions whose capacity fell below the seats confirmed (nobody was dropped).")
    def over_capacity(self, request):
        return self.registration.over_capacity_sessions(self.actor(request))

    @api("GET", "/reports/<by>",
         query="ReportQuery", summary="Registered, attended, completed per session|unit|district|partner.")
    def report(self, request, by):
        report = self.registration.report(self.actor(request), by, request.args.to_dict())
        return tables.tabular(report, request.args.get("format", "json"), "report-" + by)

    # -- personal data (Decree 13/2023/ND-CP) --------------------------------------------------------

    @api("POST", "/officials/<official_id>/erase", body="ErasureIn", status=202, auth="admin",
         summary="Erase an official's personal data on request (admin): every service removes or anonymises what "
                 "it holds (through `official_erased`); certificates stay verifiable without the name. Again: the "
                 "same answer.")
    def erase_official(self, request, official_id):
        actor = self.actor(request)
        body = read_json(request)
        # What to look for in the gateway's own records, read before registration forgets it.
        before = self.registration.get_official(actor, official_id) if is_admin(actor) else None
        erased = self.registration.erase_official(actor, official_id, body)
        forget_in_gateway(self.db, official_id, before)
        return 202, erased

    @api("GET", "/officials/<official_id>/data", auth="admin",
         summary="Everything held about one official, in every service (admin, or the official themself): "
                 "one JSON document keyed by service.")
    def official_data(self, request, official_id):
        return self.held_about(self.actor(request), official_id)

    def held_about(self, actor, official_id):
        """Every service's answer about one official (each checks again who asks)."""
        held = {"registration": self.registration.personal_data(actor, official_id)}
        for name in ("notifications", "partners", "scheduling"):
            held[name] = getattr(self, name).personal_data(actor, official_id)
        return {"official_id": official_id, "services": held}

    @api("GET", "/privacy", auth=None, summary="The privacy notice (HTML, Vietnamese; ?lang=en): controller, purpose, "
                                                "data held, recipients, retention periods, rights.")
    def privacy_notice(self, request):
        return Response(privacy.render(request), mimetype="text/html", headers={"Cache-Control": "no-cache"})

    # -- notifications ----------------------------------------------------------------------------

    @api("GET", "/notifications", query="NoticeQuery",
         summary="The notices' log, oldest first, recipients masked: {items, next_cursor}.")
    def list_notifications(self, request):
        keys = ("official_id", "partner_id", "status", "channel", "template", "event_id", "limit", "cursor")
        filters = {k: request.args[k] for k in keys if k in request.args}
        return self.notifications.list_notices(self.actor(request), filters)

    @api("POST", "/notifications/<notice_id>/resend",
         summary="A failed notice gets a new attempt now; 409 not_failed when it is not failed.")
    def resend_notification(self, request, notice_id):
        return self.notifications.resend(self.actor(request), notice_id)

    # The page behind the unsubscribe link in every email: for people, like the console (HTML on
    # every outcome, left out of the API document). Opening it changes nothing; its form POSTs to
    # the same address, as do mail providers' one-click unsubscribes (RFC 8058).

    @staticmethod
    def person_page(answer):
        return Response(answer["html"], status=answer["status"], mimetype="text/html", headers={
            "Cache-Control": "no-store",
            # The link's signature is in the address: it goes nowhere else.
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                       "frame-ancestors 'none'; base-uri 'none'"})

    @api("GET", "/notifications/unsubscribe", auth=None, public=False)
    def subscription_page(self, request):
        return self.person_page(self.notifications.subscription_page(request.args.to_dict()))

    @api("POST", "/notifications/unsubscribe", auth=None, public=False)
    def change_subscription(self, request):
        return self.person_page(self.notifications.change_subscription(
            request.args.to_dict(), request.form.to_dict()))
