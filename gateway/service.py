"""The HTTP gateway: the only public entry. It authenticates the caller, parses JSON, and calls the
services by RPC (nameko's ServiceRpc, one connection per container, never a proxy per request). The
paths, status codes and error shape are the contract in shared/API.md."""
import hmac

import eventlet
from nameko import config
from nameko.rpc import ServiceRpc
from werkzeug.wrappers import Request, Response

from backbone.auth import OPERATOR
from backbone.errors import DomainError
from backbone.logs import Tracing
from backbone.store import Store
from gateway import openapi
from gateway.entrypoints import Routes, api, read_json

SERVICES = ("partners", "scheduling", "registration", "notifications")
HEALTH_TIMEOUT = 2.0


def bearer_token(request):
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


class GatewayService:
    name = "gateway"

    store = Store(relay=False)  # idempotency records only; the gateway publishes no events
    tracing = Tracing()
    routes = Routes()
    partners = ServiceRpc("partners")
    scheduling = ServiceRpc("scheduling")
    registration = ServiceRpc("registration")
    notifications = ServiceRpc("notifications")

    def actor(self, request):
        """The caller: the operator, a partner (by its API key), or 401."""
        token = bearer_token(request)
        if not token:
            raise DomainError("unauthenticated", "Send Authorization: Bearer <token>.", {}, 401)
        operator_token = config.get("OPERATOR_TOKEN") or ""
        if operator_token and hmac.compare_digest(token.encode(), operator_token.encode()):
            return OPERATOR
        found = self.partners.authenticate(token)
        if not found:
            raise DomainError("unauthenticated", "Unknown or revoked token.", {}, 401)
        return found

    # -- health and the API description -----------------------------------------------------------------

    @api("GET", "/alive", auth=None, summary="The gateway process answers (touches nothing else).")
    def alive(self, request):
        return {"status": "alive"}

    @api("GET", "/health", auth=None, summary="Every service's health; 503 naming the failing ones.")
    def health(self, request):
        """Every service's health RPC, asked in parallel with a short timeout: a hung service shows
        as down; it does not hang this endpoint."""
        def ask(name):
            try:
                with eventlet.Timeout(HEALTH_TIMEOUT):
                    return name, getattr(self, name).health().get("status", "down")
            except BaseException:  # eventlet's Timeout is a BaseException
                return name, "down"

        services = dict(eventlet.GreenPool(len(SERVICES)).imap(ask, SERVICES))
        healthy = all(status == "ok" for status in services.values())
        return (200 if healthy else 503), {"status": "ok" if healthy else "degraded", "services": services}

    @api("GET", "/openapi.json", auth=None, summary="This document.")
    def openapi_document(self, request):
        components = {}
        for name in ("partners", "scheduling", "registration"):
            with eventlet.Timeout(HEALTH_TIMEOUT * 2):
                components.update(getattr(self, name).api_schemas())
        return openapi.build(self.routes, components)

    # -- partners ---------------------------------------------------------------------------------

    @api("POST", "/partners", body="PartnerIn", status=201,
         summary="Onboard a partner; the answer holds its API key, shown this once.")
    def create_partner(self, request):
        return 201, self.partners.create_partner(self.actor(request), read_json(request))

    @api("GET", "/partners", auth="any",
         summary="Partners by code (a partner sees only itself); ?limit=&cursor=")
    def list_partners(self, request):
        return self.partners.list_partners(self.actor(request), request.args.to_dict())

    @api("GET", "/partners/<partner_id>", auth="partner", summary="One partner, with its API keys' ids and hints.")
    def get_partner(self, request, partner_id):
        return self.partners.get_partner(self.actor(request), partner_id)

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
         summary="A partner's agreements with their status; ?limit=&cursor=")
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
         summary="Offerings (a partner sees its own); ?partner_id=&audience=&date=&status=&limit=&cursor=")
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

    def calendar_actor(self, request):
        """The caller of an .ics feed. Calendar apps cannot send headers, so here, and only here,
        `?token=` may stand in for the Authorization header (a token in a URL lands in browser
        histories and access logs: nothing that writes accepts it)."""
        token = request.args.get("token")
        if token and not bearer_token(request):
            request = Request.from_values(headers={"Authorization": "Bearer " + token})
        return self.actor(request)

    @staticmethod
    def calendar_file(ics, name):
        return Response(ics.encode("utf-8"), mimetype="text/calendar",
                        headers={"Content-Disposition": 'inline; filename="{}.ics"'.format(name)})

    @api("POST", "/venues", body="VenueIn", status=201, summary="A venue and its rooms.")
    def create_venue(self, request):
        return 201, self.scheduling.create_venue(self.actor(request), read_json(request))

    @api("GET", "/venues", auth="any", summary="Venues by name with their rooms; ?limit=&cursor=")
    def list_venues(self, request):
        return self.scheduling.list_venues(self.actor(request), request.args.to_dict())

    @api("GET", "/venues/<venue_id>", auth="any", summary="A venue and its rooms (seats, equipment).")
    def get_venue(self, request, venue_id):
        return self.scheduling.get_venue(self.actor(request), venue_id)

    @api("GET", "/venues/<venue_id>/calendar.ics", auth="any",
         summary="ICS feed of the venue's sessions for calendar apps; ?token= instead of the header.")
    def venue_calendar(self, request, venue_id):
        return self.calendar_file(self.scheduling.venue_calendar(self.calendar_actor(request), venue_id), venue_id)

    @api("GET", "/partners/<partner_id>/calendar.ics", auth="partner",
         summary="ICS feed of the sessions a partner delivers or hosts; ?token= instead of the header.")
    def partner_calendar(self, request, partner_id):
        return self.calendar_file(
            self.scheduling.partner_calendar(self.calendar_actor(request), partner_id), partner_id)

    @api("POST", "/sessions", body="SessionIn", auth="partner", status=201,
         summary="Schedule a session; 409 room_conflict / trainer_conflict naming the other session.")
    def create_session(self, request):
        return 201, self.scheduling.create_session(self.actor(request), read_json(request))

    @api("GET", "/sessions", auth="any",
         summary="The programme calendar by start time; ?month=YYYY-MM&unit=&partner_id=&venue_id=&status="
                 "&limit=&cursor=")
    def list_sessions(self, request):
        return self.scheduling.list_sessions(self.actor(request), request.args.to_dict())

    @api("GET", "/sessions/<session_id>", auth="any", summary="A session with seats taken and waitlist length.")
    def get_session(self, request, session_id):
        session = self.scheduling.get_session(self.actor(request), session_id)
        session.update(self.registration.seats(session_id))
        return session

    @api("GET", "/sessions/<session_id>/calendar.ics", auth="any",
         summary="The session as an iCalendar file; ?token= instead of the header.")
    def session_calendar(self, request, session_id):
        return self.calendar_file(
            self.scheduling.session_calendar(self.calendar_actor(request), session_id), session_id)

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

    @api("POST", "/units", body="UnitIn", status=201, summary="An administrative unit.")
    def create_unit(self, request):
        return 201, self.registration.create_unit(self.actor(request), read_json(request))

    @api("POST", "/officials", body="OfficialIn", status=201, summary="An official; phone answered in +84 form.")
    def create_official(self, request):
        return 201, self.registration.create_official(self.actor(request), read_json(request))

    @api("POST", "/sessions/<session_id>/registrations", body="RegistrationIn", status=201,
         summary="Register an official: confirmed, or waitlisted with a position.")
    def register(self, request, session_id):
        return 201, self.registration.register(self.actor(request), session_id, read_json(request))

    @api("GET", "/registrations/<registration_id>", summary="A registration with its status and QR token.")
    def get_registration(self, request, registration_id):
        return self.registration.get_registration(self.actor(request), registration_id)

    # -- notifications ----------------------------------------------------------------------------

    @api("GET", "/notifications", summary="The delivery log; ?official_id=&status=&channel=")
    def list_notifications(self, request):
        filters = {k: request.args[k] for k in ("official_id", "status", "channel") if k in request.args}
        return {"items": self.notifications.list_notices(self.actor(request), filters), "next_cursor": None}
