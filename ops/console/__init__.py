"""The operator console: server-rendered pages (jinja2), no JavaScript.

Login takes the operator token once and sets a cookie holding a signed session (a nonce, signed and
timestamped by itsdangerous with the operator token as key): the token itself never sits in the browser. The cookie is
HttpOnly and SameSite=Strict, and every form that changes something carries a CSRF token derived from
the session. Labels are Vietnamese; `?lang=en` switches to English (remembered in a cookie).
"""
import hmac
import json
import secrets
from pathlib import Path

from itsdangerous import BadSignature, Signer, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from nameko import config
from werkzeug.wrappers import Response

from backbone.clock import shown
from backbone.config import public_url
from ops.console.labels import LABELS

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "trainops_console"
LANG_COOKIE = "trainops_lang"
SESSION_SECONDS = 8 * 3600

env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]))


def _local(value):
    if hasattr(value, "astimezone"):
        return shown(value, "%d/%m/%Y %H:%M:%S")
    return value if value is not None else "—"


env.filters["local"] = _local
env.filters["pct"] = lambda share: "—" if share is None else "{:.1f}%".format(share * 100)
env.filters["day"] = lambda day: day.strftime("%d/%m/%Y") if hasattr(day, "strftime") else (
    "/".join(reversed(str(day).split("-"))) if day else "—")
env.filters["pretty"] = lambda value: json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _sessions(key):
    return URLSafeTimedSerializer(key, salt="trainops-console-session")


def new_session(key):
    """(cookie value, nonce): a fresh nonce, signed with the time it was signed. The nonce is also
    kept server-side (`ops/routes.py`): logging out forgets it, and the cookie is worth nothing."""
    nonce = secrets.token_hex(16)
    return _sessions(key).dumps(nonce), nonce


def session_of(request, key):
    """The session's nonce when the cookie is genuine and younger than SESSION_SECONDS, else None."""
    value = request.cookies.get(SESSION_COOKIE, "")
    if not key or not value:
        return None
    try:
        return _sessions(key).loads(value, max_age=SESSION_SECONDS)
    except BadSignature:  # forged, altered or expired (SignatureExpired is a BadSignature)
        return None


def csrf_token(key, nonce):
    return Signer(key, salt="trainops-console-csrf").get_signature(nonce).decode("ascii")


def csrf_ok(request, key, nonce):
    return hmac.compare_digest(request.form.get("csrf", ""), csrf_token(key, nonce))


def language(request):
    lang = request.args.get("lang") or request.cookies.get(LANG_COOKIE) or "vi"
    return lang if lang in LABELS else "vi"


def page(request, template, status=200, **context):
    lang = language(request)
    labels = LABELS[lang]
    html = env.get_template(template).render(t=labels, lang=lang, path=request.path, **context)
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    # No scripts at all, and nothing from elsewhere.
    response.headers["Content-Security-Policy"] = "default-src 'self'; script-src 'none'; frame-ancestors 'none'"
    if request.args.get("lang") in LABELS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="Strict",
                            path="/console")
    return response


def served_over_https(request):
    """Whether the browser reached us over HTTPS: directly, or through the proxy that ends TLS
    (PUBLIC_URL says https)."""
    return request.scheme == "https" or public_url(config).startswith("https://")


def redirect(location, cookie=None, clear=False, secure=False):
    response = Response("", status=303, headers={"Location": location})
    if cookie:
        response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True, samesite="Strict",
                            path="/console", secure=secure)
    if clear:
        response.delete_cookie(SESSION_COOKIE, path="/console", httponly=True, samesite="Strict", secure=secure)
    return response


def stylesheet():
    return Response((HERE / "static" / "console.css").read_bytes(), mimetype="text/css",
                    headers={"Cache-Control": "max-age=3600"})
