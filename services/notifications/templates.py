"""Notice templates: files an operator can edit, rendered with jinja2. Vietnamese first, English
available. A missing variable is an error (StrictUndefined), never a blank in a sent message.

One file set per notice kind and language in `templates/`: `<kind>.<lang>.subject`, `.txt`, `.html`
(autoescaped) for email, and `.sms` when the notice also goes by SMS (no `.sms` file: email only).
"""
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, select_autoescape

from backbone.clock import shown
from backbone.events import schema_for

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Notices to officials (about their registration) and to partners (about their offerings/agreements).
OFFICIAL_KINDS = (
    "registration_confirmed", "registration_waitlisted", "registration_promoted", "registration_cancelled",
    "session_cancelled", "registration_rescheduled", "reminder", "course_completed",
)
PARTNER_KINDS = ("offering_published", "offering_withdrawn", "agreement_expired", "agreement_ending",
                 "agreement_ending_operator")
KINDS = OFFICIAL_KINDS + PARTNER_KINDS


def local(value):
    """dd/mm/yyyy HH:MM in Ho Chi Minh City time."""
    return shown(value)


def local_time(value):
    return shown(value, "%H:%M")


def local_date(value):
    """dd/mm/yyyy; dates (agreement validity) as they are, datetimes in Ho Chi Minh City time."""
    if hasattr(value, "astimezone") and hasattr(value, "hour"):
        return shown(value, "%d/%m/%Y")
    return value.strftime("%d/%m/%Y")


def environment(directory=TEMPLATES):
    env = Environment(
        loader=FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=True,
    )
    env.filters.update(local=local, local_time=local_time, local_date=local_date)
    return env


def with_every_field(event):
    """The payload with every field of its contract, None where the producer left an optional one out:
    a template may then test `{% if reason %}`, while a name no contract has stays an error."""
    if "type" not in event:
        return event["payload"]
    fields = schema_for(event["type"], event.get("version", 1)).fields
    return dict({name: None for name in fields}, **event["payload"])


class Renderer:
    def __init__(self, directory=TEMPLATES):
        self.directory = Path(directory)
        self.env = environment(directory)

    def email(self, template, language, context):
        """(subject, text, html) of an email notice."""
        name = "{}.{}".format(template, language)
        subject = " ".join(self.env.get_template(name + ".subject").render(context).split())
        text = self.env.get_template(name + ".txt").render(context)
        html = self.env.get_template(name + ".html").render(context)
        return subject, text, html

    def has_sms(self, template, language):
        """Whether the notice also goes by SMS in that language (it has a `.sms` file)."""
        return (self.directory / "{}.{}.sms".format(template, language)).exists()

    def sms(self, template, language, context):
        """The SMS text, on one line (an operator's line breaks in the file are not paid for)."""
        try:
            text = self.env.get_template("{}.{}.sms".format(template, language)).render(context)
        except TemplateNotFound:
            return None
        return " ".join(text.split())
