"""Notice templates: files an operator can edit, rendered with jinja2. Vietnamese first. A missing
variable is an error (StrictUndefined), never a blank in a sent message."""
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
TEMPLATES = Path(__file__).resolve().parent / "templates"


def local(value):
    """dd/mm/yyyy HH:MM in Ho Chi Minh City time."""
    return value.astimezone(LOCAL).strftime("%d/%m/%Y %H:%M")


def local_time(value):
    return value.astimezone(LOCAL).strftime("%H:%M")


def environment(directory=TEMPLATES):
    env = Environment(
        loader=FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=True,
    )
    env.filters.update(local=local, local_time=local_time)
    return env


class Renderer:
    def __init__(self, directory=TEMPLATES):
        self.env = environment(directory)

    def email(self, template, language, context):
        """(subject, text, html) of an email notice."""
        name = "{}.{}".format(template, language)
        subject = self.env.get_template(name + ".subject").render(context).strip()
        text = self.env.get_template(name + ".txt").render(context)
        html = self.env.get_template(name + ".html").render(context)
        return subject, text, html
