"""Officials' self-service at `/me`: sign-in by a single-use link sent by email (no passwords), a
session cookie kept server-side (signing out ends it), and the official's page: registrations with
the QR code and an .ics, cancel, sessions open to them, certificates and notice preferences.
Vietnamese first, `?lang=en`, no JavaScript, every form with a CSRF token.

JSON twins under `/me/...` (for a future mobile app) take the same cookie (with the CSRF token in
`X-CSRF-Token` for a write) or a short-lived bearer token `me_...` from `POST /me/token`.

Who acts is `{"role": "official", "official_id"}`; the registration and notifications services
check again that an official acts only for themself.
"""
import hashlib
import hmac
import json
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote_plus

from icalendar import Calendar, Event
from itsdangerous import BadSignature, Signer, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from nameko import config
from pymongo import ASCENDING, IndexModel
from werkzeug.wrappers import Response

from backbone.clock import shown, utcnow
from backbone.config import public_url
from backbone.errors import DomainError, forbidden
from gateway import signin
from gateway.admission import bearer_token
from gateway.entrypoints import api, read_json
from gateway.responses import attachment
from gateway.selfservice.labels import LABELS

COOKIE = "trainops_me"
LANG_COOKIE = "trainops_me_lang"
SESSION_SECONDS = 7 * 24 * 3600
TOKEN_PREFIX = "me_"
TOKEN_SECONDS = 3600
# Sign-in links asked for one address within LINK_WINDOW: past LINK_REQUESTS, no more email is sent
# (the answer stays the same 202, so it tells nobody whether the address is known).
LINK_REQUESTS = 3
LINK_WINDOW = timedelta(minutes=15)
INDEXES = {
    "me_sessions": [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0),
                    IndexModel([("official_id", ASCENDING)])],
    "me_tokens": [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)],
    "me_link_requests": [IndexModel([("until", ASCENDING)], expireAfterSeconds=0)],
    "me_seen": [],
}

_env = Environment(loader=FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
                   autoescape=select_autoescape(["html"]))
_env.filters["local"] = lambda value: shown(value) if hasattr(value, "astimezone") else (value or "—")
_env.filters["local_time"] = lambda value: shown(value, "%H:%M") if hasattr(value, "astimezone") else (value or "")
_env.filters["map_link"] = lambda address: "https://www.openstreetmap.org/search?query=" + quote_plus(address or "")


def _key():
    return config.get("OPERATOR_TOKEN") or ""


def _sessions():
    return URLSafeTimedSerializer(_key(), salt="trainops-me-session")


def csrf_token(nonce):
    return Signer(_key(), salt="trainops-me-csrf").get_signature(nonce).decode("ascii")


def _digest(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normal_email(value):
    """An address as officials are looked up by (stored in lower case), or None when it cannot be one."""
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    if not 3 <= len(value) <= 254 or "@" not in value or any(c.isspace() for c in value):
        return None
    return value


def language(request):
    lang = request.args.get("lang") or request.cookies.get(LANG_COOKIE) or "vi"
    return lang if lang in LABELS else "vi"


def page(request, template, status=200, **context):
    lang = language(request)
    html = _env.get_template(template).render(t=LABELS[lang], lang=lang, **context)
    response = Response(html, status=status, mimetype="text/html")
    response.headers.update({
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'self'; script-src 'none'; style-src 'unsafe-inline'; "
                                   "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"})
    if request.args.get("lang") in LABELS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="Lax", path="/me")
    return response


def _secure(request):
    return request.scheme == "https" or public_url(config).startswith("https://")


def redirect(location, cookie=None, clear=False, secure=False):
    response = Response("", status=303, headers={"Location": location, "Cache-Control": "no-store"})
    if cookie:
        # Lax, not Strict: the sign-in link is opened from a mail reader, and the redirect that
        # follows must carry the new cookie. Writes are guarded by the CSRF token.
        response.set_cookie(COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True, samesite="Lax",
                            path="/me", secure=secure)
    if clear:
        response.delete_cookie(COOKIE, path="/me", httponly=True, samesite="Lax", secure=secure)
    return response


def is_form(request):
    return request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")


def calendar_file(registration):
    """One registration's session as an iCalendar file."""
    session = registration["session"]
    calendar = Calendar()
    calendar.add("prodid", "-//trainops//me//VI")
    calendar.add("version", "2.0")
    event = Event()
    event.add("uid", "{}@trainops".format(registration["id"]))
    event.add("summary", session["title"])
    event.add("dtstart", session["starts_at"])
    event.add("dtend", session["ends_at"])
    event.add("dtstamp", utcnow())
    event.add("location", "{}, {} ({})".format(session["venue_name"], session["address"], session["room"]))
    event.add("url", public_url(config) + "/me")
    calendar.add_component(event)
    return calendar.to_ical()


class SelfServiceRoutes:
    """Needs of the service that mounts it: `actor(request)`, its `db` (with INDEXES), and the
    registration and notifications RPC clients."""

    # -- who is signed in ---------------------------------------------------------------------------

    def me_session(self, request):
        """(official_id, nonce) of the cookie's session when genuine, young enough and not signed out."""
        value = request.cookies.get(COOKIE, "")
        if not value or not _key():
            return None, None
        try:
            nonce = _sessions().loads(value, max_age=SESSION_SECONDS)
        except BadSignature:
            return None, None
        found = self.db.me_sessions.find_one({"_id": nonce, "expires_at": {"$gt": utcnow()}})
        return (found["official_id"], nonce) if found else (None, None)

    def official_token(self, token):
        """The official a `me_...` bearer token was issued to, or None (unknown or expired)."""
        found = self.db.me_tokens.find_one({"_id": _digest(token), "expires_at": {"$gt": utcnow()}})
        return {"role": "official", "official_id": found["official_id"]} if found else None

    def me_actor(self, request, writing=False):
        """(actor, nonce) of the official asking: by bearer token (`me_...`; nonce None), or by the
        session cookie (a write then needs the CSRF token: form field `csrf` or `X-CSRF-Token`). 401
        when neither; 403 for a bearer token of anyone but an official."""
        if bearer_token(request):
            actor = self.actor(request)
            if actor.get("role") != "official":
                raise forbidden("These are an official's own pages: sign in at /me.")
            return actor, None
        official_id, nonce = self.me_session(request)
        if official_id is None:
            raise DomainError("unauthenticated", "Sign in at /me first.", {}, 401)
        if writing:
            given = request.form.get("csrf") or request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(given.encode(), csrf_token(nonce).encode()):
                raise DomainError("csrf_failed", "The form's CSRF token is missing or not this session's.", {}, 403)
        actor = {"role": "official", "official_id": official_id}
        request.environ["trainops.actor"] = actor  # the audit records who acted
        return actor, nonce

    # -- signing in -----------------------------------------------------------------------------------

    @api("GET", "/me/link", auth=None, public=False)
    def me_link_page(self, request):
        return page(request, "link.html")

    @api("POST", "/me/link", auth=None,
         summary="Ask for a sign-in link by email ({email}, JSON or a form): 202 whether or not the address "
                 "is known; a known official gets a single-use link valid 15 minutes.")
    def me_link(self, request):
        form = is_form(request)
        email = normal_email(request.form.get("email") if form else read_json(request).get("email"))
        if email is None:
            if form:
                return page(request, "link.html", status=422, problem=LABELS[language(request)]["email_invalid"])
            raise DomainError("invalid_fields", "Some fields are invalid.", {"email": ["Not an email address."]}, 422)
        self.send_sign_in_link(email, language(request))
        if form:
            return page(request, "link.html", status=202, sent=True)
        return 202, {"status": "accepted", "message": "If this address belongs to an official, a sign-in link "
                                                      "valid for 15 minutes is on its way."}

    def send_sign_in_link(self, email, lang):
        """The same work for a known and an unknown address (one look-up, one counter), then the link
        for a known one, handed to notifications without waiting: the answer's timing tells nothing."""
        key = _digest(email)
        now = utcnow()
        counted = self.db.me_link_requests.find_one_and_update(
            {"_id": key, "until": {"$gt": now}}, {"$inc": {"count": 1}}, return_document=True)
        if counted is None:
            self.db.me_link_requests.replace_one({"_id": key}, {"count": 1, "until": now + LINK_WINDOW}, upsert=True)
            counted = {"count": 1}
        official = self.registration.official_for_sign_in(email)
        if official is None or counted["count"] > LINK_REQUESTS:
            return
        token = signin.issue(self.db, "official", official["id"])
        link = "{}/me/login?token={}".format(public_url(config), token)
        self.notifications.send_sign_in_link.call_async(
            email, official["full_name"], official.get("language") or lang, link, "official")

    @api("GET", "/me/login", auth=None, public=False)
    def me_login(self, request):
        """Redeems the link once: a session cookie and a redirect to /me; a spent or expired link gets
        the sign-in page saying so."""
        official_id = signin.redeem(self.db, "official", request.args.get("token", ""))
        if official_id is None:
            return page(request, "link.html", status=410, spent=True)
        nonce = secrets.token_hex(16)
        now = utcnow()
        self.db.me_sessions.insert_one({"_id": nonce, "official_id": official_id, "created_at": now,
                                        "expires_at": now + timedelta(seconds=SESSION_SECONDS)})
        first = self.db.me_seen.update_one({"_id": official_id}, {"$setOnInsert": {"first_sign_in": now}},
                                           upsert=True).upserted_id is not None
        return redirect("/me?welcome=1" if first else "/me", cookie=_sessions().dumps(nonce),
                        secure=_secure(request))

    @api("POST", "/me/logout", auth=None, public=False)
    def me_logout(self, request):
        """Forgets the session here: a copy of the cookie opens nothing any more."""
        official_id, nonce = self.me_session(request)
        if nonce:
            self.db.me_sessions.delete_one({"_id": nonce})
        return redirect("/me/link", clear=True, secure=_secure(request))

    @api("POST", "/me/token", auth="official", status=201,
         summary="A bearer token me_... for the JSON twins under /me, valid an hour (from a signed-in session, "
                 "with its X-CSRF-Token).")
    def me_token(self, request):
        actor, nonce = self.me_actor(request, writing=True)
        if nonce is None:
            raise forbidden("A token is issued to a signed-in session only.")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = utcnow() + timedelta(seconds=TOKEN_SECONDS)
        self.db.me_tokens.insert_one({"_id": _digest(token), "official_id": actor["official_id"],
                                      "expires_at": expires})
        return 201, {"token": token, "expires_at": expires}

    # -- the page ---------------------------------------------------------------------------------------

    @api("GET", "/me", auth=None, public=False)
    def me_page(self, request):
        official_id, nonce = self.me_session(request)
        if official_id is None:
            return redirect("/me/link")
        actor = {"role": "official", "official_id": official_id}
        done = request.args.get("done")
        problem = request.args.get("problem", "")[:200]
        return page(request, "me.html", me=self.registration.my_page(actor),
                    channels=self.notifications.my_channels(actor), csrf=csrf_token(nonce),
                    welcome=request.args.get("welcome") == "1", problem=problem,
                    done=done if done in LABELS["vi"]["done"] else None, data_link=True)

    def _refused_form(self, request, error):
        """A form whose action a rule refused: the page again, saying why."""
        if is_form(request) and error.status < 500 and error.code not in ("unauthenticated", "csrf_failed"):
            return redirect("/me?problem={}".format(quote_plus(error.message)))
        if is_form(request) and error.code == "unauthenticated":
            return redirect("/me/link")
        if is_form(request) and error.code == "csrf_failed":
            return page(request, "link.html", status=403, problem=LABELS[language(request)]["errors"]["forbidden"])
        raise error

    @api("GET", "/me/data", auth="official",
         summary="Download my data: everything every service holds about me, as one JSON file.")
    def me_data(self, request):
        actor, _ = self.me_actor(request)
        held = json.dumps(self.held_about(actor, actor["official_id"]), ensure_ascii=False, indent=2, default=str)
        return Response(held.encode("utf-8"), mimetype="application/json", headers={
            "Content-Disposition": attachment("du-lieu-cua-toi", "json"), "Cache-Control": "no-store"})

    @api("GET", "/me/registrations", auth="official", summary="My registrations (an official's cookie or me_ token).")
    def me_registrations(self, request):
        actor, _ = self.me_actor(request)
        return {"items": self.registration.my_page(actor)["registrations"], "next_cursor": None}

    @api("GET", "/me/sessions", auth="official", summary="Sessions open to me (an official's cookie or me_ token).")
    def me_sessions(self, request):
        actor, _ = self.me_actor(request)
        return {"items": self.registration.my_page(actor)["open_sessions"], "next_cursor": None}

    @api("GET", "/me/certificates", auth="official", summary="My certificates (an official's cookie or me_ token).")
    def me_certificates(self, request):
        actor, _ = self.me_actor(request)
        return {"items": self.registration.my_page(actor)["certificates"], "next_cursor": None}

    @api("POST", "/me/registrations/<registration_id>/cancel", auth="official",
         summary="Cancel my registration (form with csrf, or JSON); the first who fits on the waitlist is promoted.")
    def me_cancel(self, request, registration_id):
        try:
            actor, nonce = self.me_actor(request, writing=True)
            if not is_form(request):
                read_json(request, optional=True)
            found = self.registration.cancel_registration(actor, registration_id, {"cause": "official"})
        except DomainError as error:
            return self._refused_form(request, error)
        return redirect("/me?done=cancelled") if is_form(request) else found

    @api("POST", "/me/sessions/<session_id>/register", auth="official", status=201,
         summary="Register myself for a session (form with csrf, or JSON): confirmed or waitlisted, every rule "
                 "as for operators.")
    def me_register(self, request, session_id):
        try:
            actor, nonce = self.me_actor(request, writing=True)
            if not is_form(request):
                read_json(request, optional=True)
            found = self.registration.register(actor, session_id, {"official_id": actor["official_id"]})
        except DomainError as error:
            return self._refused_form(request, error)
        return redirect("/me?done=registered") if is_form(request) else (201, found)

    @api("POST", "/me/preferences", auth="official",
         summary="My notice preferences: {language: vi|en, email: bool, sms: bool} (form with csrf, or JSON).")
    def me_preferences(self, request):
        try:
            actor, nonce = self.me_actor(request, writing=True)
            if is_form(request):
                asked = {"language": request.form.get("language", "vi"),
                         "email": request.form.get("email") == "on", "sms": request.form.get("sms") == "on"}
            else:
                asked = read_json(request)
                unknown = set(asked) - {"language", "email", "sms"}
                if unknown or any(not isinstance(asked.get(c, True), bool) for c in ("email", "sms")):
                    raise DomainError("invalid_fields", "Some fields are invalid.",
                                      {k: ["Unknown field."] for k in unknown} or {"email": ["true or false"]}, 422)
            if "language" in asked:
                self.registration.set_my_language(actor, {"language": asked["language"]})
            for channel in ("email", "sms"):
                if channel in asked:
                    self.notifications.set_my_channel(actor, channel, asked[channel])
        except DomainError as error:
            return self._refused_form(request, error)
        if is_form(request):
            return redirect("/me?done=saved")
        return dict(self.notifications.my_channels(actor), language=self.registration.my_page(actor)[
            "official"]["language"])

    @api("GET", "/me/preferences", auth="official", summary="My notice preferences: {language, email, sms}.")
    def me_preferences_read(self, request):
        actor, _ = self.me_actor(request)
        return dict(self.notifications.my_channels(actor),
                    language=self.registration.my_page(actor)["official"]["language"])

    @api("GET", "/me/registrations/<registration_id>/qr.svg", auth="official", public=False)
    def me_qr(self, request, registration_id):
        actor, _ = self.me_actor(request)
        svg = self.registration.registration_qr(actor, registration_id)
        return Response(svg.encode("utf-8"), mimetype="image/svg+xml", headers={"Cache-Control": "no-store"})

    @api("GET", "/me/registrations/<registration_id>/calendar.ics", auth="official", public=False)
    def me_calendar(self, request, registration_id):
        actor, _ = self.me_actor(request)
        mine = [r for r in self.registration.my_page(actor)["registrations"] if r["id"] == registration_id]
        if not mine:
            raise DomainError("not_found", "No registration with id {}.".format(registration_id), {}, 404)
        return Response(calendar_file(mine[0]), mimetype="text/calendar", headers={
            "Content-Disposition": attachment(registration_id, "ics"), "Cache-Control": "no-store"})

