"""Certificates beyond their verification page: the printable A4 PDF anyone holding the code may
fetch, and the operator's revocation (both checked again by the registration service)."""
import eventlet

from backbone.auth import OPERATOR
from backbone.errors import DomainError
from gateway import documents
from gateway.entrypoints import api, read_json

# The partner's name and the offering's modules print on the certificate; without them (partners
# slow or down) it prints without, rather than not at all.
PARTNERS_TIMEOUT = 3


class CertificateRoutes:
    """Needs of the service that mounts it: `actor(request)` and the registration and partners clients."""

    @api("GET", "/certificates/<code>.pdf", auth=None,
         summary="A certificate as a printable A4 PDF: name, unit, course and modules with hours, partner, date, "
                 "code and a QR code of its verification URL; a revoked one says so.")
    def certificate_pdf(self, request, code):
        record = self.registration.certificate_record(code)
        modules, partner = [], None
        timeout = eventlet.Timeout(PARTNERS_TIMEOUT)
        try:
            if record.get("offering_id"):
                modules = self.partners.get_offering(OPERATOR, record["offering_id"]).get("modules") or []
            if record.get("partner_id"):
                partner = self.partners.get_partner(OPERATOR, record["partner_id"]).get("name")
        except DomainError:
            pass
        except eventlet.Timeout as expired:
            if expired is not timeout:  # the request's own deadline: not ours to swallow
                raise
        finally:
            timeout.cancel()
        return documents.certificate_pdf(record, modules, partner)

    @api("POST", "/certificates/<code>/revoke", body="CertificateRevocationIn",
         summary="Revoke a certificate with a reason (operator); its page and PDF say so. 409 certificate_revoked "
                 "the second time.")
    def revoke_certificate(self, request, code):
        return self.registration.revoke_certificate(self.actor(request), code, read_json(request))
