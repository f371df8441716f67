"""The privacy notice (Decree 13/2023/ND-CP, Article 11 and 13): who controls officials' personal
data, for what, what is held, who receives it, how long it is kept and how to use one's rights.
Vietnamese first (`?lang=en`), one page without JavaScript. Its retention periods are read from the
settings (config.yml: PRIVACY), so the notice says what the system does."""
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from nameko import config

from backbone.config import privacy_setting

IDEMPOTENCY_HOURS = 24
_env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                   autoescape=select_autoescape(["html"]))


def language(request):
    lang = request.args.get("lang", "vi")
    return lang if lang in ("vi", "en") else "vi"


def _number(value):
    return "{:g}".format(float(value))


def periods():
    """The retention periods in force, as the notice states them."""
    return {"personal_data_days": _number(privacy_setting("personal_data_days")),
            "qr_token_hours": _number(privacy_setting("qr_token_hours")),
            "handled_events_hours": _number(privacy_setting("handled_events_hours")),
            "idempotency_hours": IDEMPOTENCY_HOURS}


def url():
    """The notice's absolute address, for links in notices and pages."""
    return "{}/privacy".format((config.get("PUBLIC_URL") or "").rstrip("/"))


def render(request):
    lang = language(request)
    return _env.get_template("privacy.html").render(
        lang=lang, other="en" if lang == "vi" else "vi", contact=privacy_setting("contact_email"), **periods())
