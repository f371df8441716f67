"""The operator console: server-rendered pages (jinja2), no JavaScript.

Login takes the operator token once and sets a cookie holding a signed session (an expiry and a nonce,
HMAC-signed with the operator token as key): the token itself never sits in the browser. The cookie is
HttpOnly and SameSite=Strict, and every form that changes something carries a CSRF token derived from
the session. Labels are Vietnamese; `?lang=en` switches to English (remembered in a cookie).
"""
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from werkzeug.wrappers import Response

from gateway.console.labels import LABELS

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "trainops_console"
LANG_COOKIE = "trainops_lang"
SESSION_SECONDS = 8 * 3600
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")

env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]))


def _local(value):
    if hasattr(value, "astimezone"):
        return value.astimezone(LOCAL).strftime("%d/%m/%Y %H:%M:%S")
    return value if value is not None else "—"


env.filters["local"] = _local
env.filters["pretty"] = lambda value: json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _sign(key, text):
    return hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def new_session(key):
    """A cookie value: `<expires>.<nonce>.<signature>`."""
    payload = "{}.{}".format(int(time.time()) + SESSION_SECONDS, secrets.token_hex(16))
    return "{}.{}".format(payload, _sign(key, "session:" + payload))


def session_of(request, key):
    """The session's nonce when the cookie is genuine and not expired, else None."""
    value = request.cookies.get(SESSION_COOKIE, "")
    parts = value.split(".")
    if not key or len(parts) != 3:
        return None
    expires, nonce, signature = parts
    if not hmac.compare_digest(signature, _sign(key, "session:{}.{}".format(expires, nonce))):
        return None
    if not expires.isdigit() or int(expires) < time.time():
        return None
    return nonce


def csrf_token(key, nonce):
    return _sign(key, "csrf:" + nonce)


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


def redirect(location, cookie=None, clear=False):
    response = Response("", status=303, headers={"Location": location})
    if cookie:
        response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True, samesite="Strict",
                            path="/console")
    if clear:
        response.delete_cookie(SESSION_COOKIE, path="/console", httponly=True, samesite="Strict")
    return response


def stylesheet():
    return Response((HERE / "static" / "console.css").read_bytes(), mimetype="text/css",
                    headers={"Cache-Control": "max-age=3600"})
