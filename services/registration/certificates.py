"""Certificates of completion (printable Vietnamese HTML; the page is the verification) and the
registration's QR code."""
import io
import secrets
from pathlib import Path

import segno
from jinja2 import Environment, FileSystemLoader, select_autoescape
from nameko import config

from backbone.clock import shown
from backbone.config import public_url

_templates = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                         autoescape=select_autoescape(["html"]))


def new_code():
    """Unguessable and easy to read aloud: 20 characters without look-alikes (~100 bits)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(20))
    return "-".join(raw[i:i + 5] for i in range(0, 20, 5))


def url(code):
    """The verification page's address, absolute (PUBLIC_URL): it is printed, mailed and put in a QR
    code, where a relative path opens nothing."""
    return "{}/certificates/{}".format(public_url(config), code)


def qr_svg(token, scale=4):
    out = io.BytesIO()
    segno.make(token, error="m").save(out, kind="svg", scale=scale, xmldecl=False)
    return out.getvalue().decode("utf-8")


def shown_date(moment):
    """The local calendar day, as people here write it (22/03/2025)."""
    return shown(moment, "%d/%m/%Y")


def render(certificate, unit_name=None):
    session = certificate["session"]
    revoked = certificate.get("revoked_at")
    return _templates.get_template("certificate.html").render(
        code=certificate["code"] if "code" in certificate else certificate["_id"],
        name=certificate["official"]["full_name"], title=session["title"], unit=unit_name,
        venue=session["venue_name"], address=session["address"], url=url(certificate["_id"]),
        day=shown_date(session["starts_at"]), issued=shown_date(certificate["issued_at"]),
        revoked=shown_date(revoked) if revoked else None, revoke_reason=certificate.get("revoke_reason"),
        qr=qr_svg(url(certificate["_id"]), scale=3))
