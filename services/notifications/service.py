"""Notifications: tells officials and partners what happened, by email (and SMS), once.

At most one notice per (event, recipient, channel): the delivery log's _id is that triple, so a
repeated event or a restart mid-send finds the notice already there and does not send it twice.
"""
import hashlib
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

from nameko import config
from nameko.rpc import rpc
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from backbone import auth
from backbone.logs import Tracing, mask
from backbone.store import Store, utcnow
from backbone.subscriber import PermanentFailure, subscribe
from services.notifications.templates import Renderer

INDEXES = {
    "deliveries": [
        IndexModel([("official_id", ASCENDING), ("created_at", ASCENDING)]),
        IndexModel([("status", ASCENDING)]),
    ],
}

renderer = Renderer()


def notice_id(event_id, channel, recipient):
    digest = hashlib.sha256(recipient.encode("utf-8")).hexdigest()[:16]
    return "{}:{}:{}".format(event_id, channel, digest)


def public_delivery(doc):
    out = {k: doc.get(k) for k in ("event_id", "channel", "template", "status", "attempts", "last_error",
                                   "official_id", "created_at", "sent_at")}
    out["id"] = doc["_id"]
    out["to"] = mask(doc["to"])
    return out


class NotificationsService:
    name = "notifications"

    store = Store(indexes=INDEXES)
    tracing = Tracing()

    @subscribe("registration_confirmed")
    def on_registration_confirmed(self, event):
        self.email_official(event, "registration_confirmed")

    def email_official(self, event, template):
        payload = event["payload"]
        official = payload["official"]
        if not official.get("email"):
            return
        language = official.get("language") or "vi"
        subject, text, html = renderer.email(template, language, payload)
        delivery_id = notice_id(event["event_id"], "email", official["email"])
        try:
            self.store.deliveries.insert_one({
                "_id": delivery_id, "event_id": event["event_id"], "channel": "email", "template": template,
                "to": official["email"], "official_id": official["id"], "status": "queued", "attempts": 0,
                "correlation_id": event["correlation_id"], "created_at": utcnow(),
            })
        except DuplicateKeyError:
            if self.store.deliveries.find_one({"_id": delivery_id})["status"] in ("sent", "failed"):
                return
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = config["SMTP"]["sender"]
        message["To"] = official["email"]
        message["Message-ID"] = make_msgid(idstring=delivery_id.replace(":", "."), domain="trainops.local")
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        try:
            send_email(message)
        except smtplib.SMTPResponseException as exc:
            permanent = exc.smtp_code >= 500
            self.store.deliveries.update_one({"_id": delivery_id}, {
                "$set": {"status": "failed" if permanent else "retrying",
                         "last_error": "{} {}".format(exc.smtp_code, exc.smtp_error)},
                "$inc": {"attempts": 1}})
            if permanent:
                raise PermanentFailure("SMTP refused permanently: {}".format(exc.smtp_code))
            raise
        except OSError as exc:
            self.store.deliveries.update_one({"_id": delivery_id}, {
                "$set": {"status": "retrying", "last_error": str(exc)}, "$inc": {"attempts": 1}})
            raise
        self.store.deliveries.update_one({"_id": delivery_id}, {
            "$set": {"status": "sent", "sent_at": utcnow(), "last_error": None}, "$inc": {"attempts": 1}})

    @rpc
    def list_notices(self, actor, filters):
        auth.require_operator(actor)
        query = {k: v for k, v in (filters or {}).items() if k in ("official_id", "status", "channel")}
        return [public_delivery(d) for d in self.store.deliveries.find(query).sort("created_at", ASCENDING)]

    @rpc
    def health(self):
        return self.store.health()


def send_email(message):
    smtp = config["SMTP"]
    with smtplib.SMTP(smtp["host"], int(smtp["port"]), timeout=20) as client:
        if smtp.get("starttls"):
            client.starttls()
        if smtp.get("user"):
            client.login(smtp["user"], smtp["password"] or "")
        client.send_message(message)
