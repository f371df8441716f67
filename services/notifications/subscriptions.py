"""The page an email's unsubscribe link opens, where an official stops notices by one channel or
takes them back. Opening the link changes nothing: mail scanners and link previews follow every link
in a message, so the change is a POST, from the page's form (it works without JavaScript) or the
one-click POST that mail providers send to the List-Unsubscribe address (RFC 8058). The link's
signature (rules.unsubscribe_signature) is what lets the page act for that official: nothing else
about them is needed, or shown.

Vietnamese first, `?lang=en` for English. Plain HTML for any reader: a language attribute, one
heading, the outcome announced as a status, real buttons, no script.
"""
from urllib.parse import urlencode

from marshmallow import ValidationError

from services.notifications import rules
from services.notifications.schemas import SubscriptionLink
from services.notifications.templates import environment

PAGE = "subscription.html"

LABELS = {
    "vi": {
        "title": "Nhận thông báo qua {channel}",
        "channel": {"email": "email", "sms": "tin nhắn SMS"},
        "subscribed": "Anh/Chị đang nhận thông báo về các lớp bồi dưỡng ứng dụng AI qua {channel}.",
        "unsubscribed": "Anh/Chị đã ngừng nhận thông báo qua {channel}.",
        "done_unsubscribe": "Đã ngừng gửi thông báo qua {channel} cho Anh/Chị.",
        "done_resubscribe": "Anh/Chị sẽ nhận lại thông báo qua {channel}.",
        "unsubscribe": "Ngừng nhận thông báo qua {channel}",
        "resubscribe": "Nhận lại thông báo qua {channel}",
        "always": "Thông báo hủy lớp học mà Anh/Chị đã đăng ký vẫn luôn được gửi.",
        "invalid_title": "Liên kết không hợp lệ",
        "invalid": "Liên kết này không đúng hoặc không đầy đủ. Hãy mở lại liên kết trong email "
                   "mới nhất mà Anh/Chị nhận được, hoặc liên hệ Trung tâm Chuyển đổi số TP. Hồ Chí Minh.",
        "unclear": "Yêu cầu không rõ: hãy dùng một trong các nút trên trang.",
        "sender": "Trung tâm Chuyển đổi số TP. Hồ Chí Minh",
        "other_language": "English",
    },
    "en": {
        "title": "Notices by {channel}",
        "channel": {"email": "email", "sms": "SMS"},
        "subscribed": "You receive notices about the AI training classes by {channel}.",
        "unsubscribed": "You no longer receive notices by {channel}.",
        "done_unsubscribe": "Notices by {channel} have stopped.",
        "done_resubscribe": "You will receive notices by {channel} again.",
        "unsubscribe": "Stop notices by {channel}",
        "resubscribe": "Receive notices by {channel} again",
        "always": "The cancellation of a class you registered for is always sent.",
        "invalid_title": "This link is not valid",
        "invalid": "This link is wrong or incomplete. Open the link in the latest email you received "
                   "again, or contact the Ho Chi Minh City Digital Transformation Centre.",
        "unclear": "Unclear request: use one of the buttons on the page.",
        "sender": "Ho Chi Minh City Digital Transformation Centre",
        "other_language": "Tiếng Việt",
    },
}

_env = environment()


def language(query):
    return rules.language_of((query or {}).get("lang"))


def read_link(query, secret):
    """(official_id, channel) of a genuine link, or (None, status): 400 for a malformed one, 403 for
    one whose signature is not ours."""
    try:
        link = SubscriptionLink().load(query or {})
    except ValidationError:
        return None, 400
    if not rules.signed_by_us(secret, link["official"], link["channel"], link["sig"]):
        return None, 403
    return (link["official"], link["channel"]), None


def page(query, channel, subscribed, done=None, status=200, problem=None):
    """{"status", "html"} of the page: the channel's state and the button that changes it; `done`
    ("unsubscribe" / "resubscribe") announces what a POST just did, `problem` a request it could not
    read."""
    lang = language(query)
    labels = LABELS[lang]
    name = labels["channel"][channel]
    text = {key: value.format(channel=name) if isinstance(value, str) else value for key, value in labels.items()}
    return {"status": status, "html": _env.get_template(PAGE).render(
        t=text, lang=lang, subscribed=subscribed, done=done, problem=problem, valid=True,
        other=_other_language(query, lang))}


def invalid(query, status):
    """The page for a link that is malformed (400) or not ours (403)."""
    lang = language(query)
    return {"status": status, "html": _env.get_template(PAGE).render(
        t=LABELS[lang], lang=lang, valid=False, other=_other_language(query, lang))}


def _other_language(query, lang):
    """The same page in the other language: (its `lang`, its query string)."""
    other = "en" if lang == "vi" else "vi"
    kept = {k: v for k, v in (query or {}).items() if k in ("official", "channel", "sig")}
    if other != rules.DEFAULT_LANGUAGE:
        kept["lang"] = other
    return other, "?" + urlencode(kept)
