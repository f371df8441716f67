"""The HTTP gateway: the only public entry. It authenticates the caller, parses JSON, and calls the
services by RPC (nameko's ServiceRpc, one connection per container, never a proxy per request). The
paths, status codes and error shape are the contract in shared/API.md."""
import hmac

import eventlet
from nameko import config
from nameko.rpc import ServiceRpc
from werkzeug.wrappers import Response

from backbone.auth import OPERATOR
from backbone.errors import DomainError
from backbone.logs import Tracing
from backbone.store import Store
from gateway.entrypoints import api, error_response, json_response, read_json

SERVICES = ("partners", "scheduling", "registration", "notifications")
HEALTH_TIMEOUT = 2.0


def bearer_token(request):
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


class GatewayService:
    name = "gateway"

    store = Store(relay=False)  # idempotency records only; the gateway publishes no events
    tracing = Tracing()
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

    # -- health -----------------------------------------------------------------------------------

    @api("GET", "/alive")
    def alive(self, request):
        return {"status": "alive"}

    @api("GET", "/health")
    def health(self, request):
        """Every service's health RPC, asked in parallel with a short timeout: a hung service shows
        as down; it does not hang this endpoint."""
        def ask(name):
            try:
                with eventlet.Timeout(HEALTH_TIMEOUT):
                    reply = getattr(self, name).health.call_async()
                    return name, reply.result().get("status", "down")
            except BaseException:  # a timeout is a BaseException in eventlet
                return name, "down"

        pool = eventlet.GreenPool(len(SERVICES))
        services = dict(pool.imap(ask, SERVICES))
        healthy = all(status == "ok" for status in services.values())
        return (200 if healthy else 503), {"status": "ok" if healthy else "degraded", "services": services}

    # -- partners ---------------------------------------------------------------------------------

    @api("POST", "/partners")
    def create_partner(self, request):
        return 201, self.partners.create_partner(self.actor(request), read_json(request))

    @api("GET", "/partners")
    def list_partners(self, request):
        return {"items": self.partners.list_partners(self.actor(request)), "next_cursor": None}

    @api("GET", "/partners/<partner_id>")
    def get_partner(self, request, partner_id):
        return self.partners.get_partner(self.actor(request), partner_id)

    @api("POST", "/partners/<partner_id>/agreements")
    def create_agreement(self, request, partner_id):
        return 201, self.partners.create_agreement(self.actor(request), partner_id, read_json(request))

    @api("POST", "/offerings")
    def create_offering(self, request):
        return 201, self.partners.create_offering(self.actor(request), read_json(request))

    @api("GET", "/offerings")
    def list_offerings(self, request):
        items = self.partners.list_offerings(self.actor(request), request.args.get("partner_id"))
        return {"items": items, "next_cursor": None}

    # -- scheduling -------------------------------------------------------------------------------

    @api("POST", "/venues")
    def create_venue(self, request):
        return 201, self.scheduling.create_venue(self.actor(request), read_json(request))

    @api("POST", "/sessions")
    def create_session(self, request):
        return 201, self.scheduling.create_session(self.actor(request), read_json(request))

    @api("GET", "/sessions/<session_id>")
    def get_session(self, request, session_id):
        actor = self.actor(request)
        session = self.scheduling.get_session(actor, session_id)
        session.update(self.registration.seats(session_id))
        return session

    # -- registration -----------------------------------------------------------------------------

    @api("POST", "/units")
    def create_unit(self, request):
        return 201, self.registration.create_unit(self.actor(request), read_json(request))

    @api("POST", "/officials")
    def create_official(self, request):
        return 201, self.registration.create_official(self.actor(request), read_json(request))

    @api("POST", "/sessions/<session_id>/registrations")
    def register(self, request, session_id):
        return 201, self.registration.register(self.actor(request), session_id, read_json(request))

    @api("GET", "/registrations/<registration_id>")
    def get_registration(self, request, registration_id):
        return self.registration.get_registration(self.actor(request), registration_id)

    # -- notifications ----------------------------------------------------------------------------

    @api("GET", "/notifications")
    def list_notifications(self, request):
        filters = {k: request.args[k] for k in ("official_id", "status", "channel") if k in request.args}
        return {"items": self.notifications.list_notices(self.actor(request), filters), "next_cursor": None}
