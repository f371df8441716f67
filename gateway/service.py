"""The HTTP gateway: the only public entry. It authenticates the caller, parses JSON, and calls the
services by RPC (nameko's ServiceRpc, one connection per container, never a proxy per request). The
paths, status codes and error shape are the contract in shared/API.md."""
import hmac

import eventlet
from nameko import config
from nameko.rpc import ServiceRpc

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

    @api("GET", "/partners", auth="any", summary="Partners (a partner sees only itself).")
    def list_partners(self, request):
        return {"items": self.partners.list_partners(self.actor(request)), "next_cursor": None}

    @api("GET", "/partners/<partner_id>", auth="partner", summary="One partner.")
    def get_partner(self, request, partner_id):
        return self.partners.get_partner(self.actor(request), partner_id)

    @api("POST", "/partners/<partner_id>/agreements", body="AgreementIn", status=201,
         summary="Record a cooperation agreement; status follows from its dates.")
    def create_agreement(self, request, partner_id):
        return 201, self.partners.create_agreement(self.actor(request), partner_id, read_json(request))

    @api("POST", "/offerings", body="OfferingIn", auth="partner", status=201,
         summary="Publish a course offering under an active agreement.")
    def create_offering(self, request):
        return 201, self.partners.create_offering(self.actor(request), read_json(request))

    @api("GET", "/offerings", auth="partner", summary="Offerings (a partner sees its own); ?partner_id=")
    def list_offerings(self, request):
        items = self.partners.list_offerings(self.actor(request), request.args.get("partner_id"))
        return {"items": items, "next_cursor": None}

    # -- scheduling -------------------------------------------------------------------------------

    @api("POST", "/venues", body="VenueIn", status=201, summary="A venue and its rooms.")
    def create_venue(self, request):
        return 201, self.scheduling.create_venue(self.actor(request), read_json(request))

    @api("POST", "/sessions", body="SessionIn", auth="partner", status=201,
         summary="Schedule a session; 409 room_conflict / trainer_conflict naming the other session.")
    def create_session(self, request):
        return 201, self.scheduling.create_session(self.actor(request), read_json(request))

    @api("GET", "/sessions/<session_id>", auth="any", summary="A session with seats taken and waitlist length.")
    def get_session(self, request, session_id):
        session = self.scheduling.get_session(self.actor(request), session_id)
        session.update(self.registration.seats(session_id))
        return session

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
