"""Configuration values arrive as written: a string setting holds exactly what its environment variable
says, whether a process starts under `nameko run --config config.yml` (asked here through nameko's own
`show-config`, which loads the file the same way) or loads config.yml through backbone.config; and a
setting of the wrong kind stops the process at start, naming the setting and its variable."""
import os
import subprocess
import sys
from pathlib import Path

import marshmallow
import pytest
import yaml

from backbone import settings
from backbone.config import CONFIG_FILE, load, variables

ROOT = Path(__file__).resolve().parent.parent
NAMEKO = str(Path(sys.executable).with_name("nameko"))

# Each of these was mangled or refused before: YAML read 123456 as an integer, `no` as false, cut
# `ab #cd` at its comment, and took `!x` for a tag, `*x` for an alias, `%x` for a directive and `[x` for
# an unfinished list, so the process did not start.
AWKWARD = ["123456", "no", "ab #cd", "!x", "*x", "%x", "[x", "{x", "x: y", "'quoted'", "  padded  ", "07", "1e3",
           "~", "null", "mật khẩu"]


def clean_environment(**values):
    """The process environment with no trainops setting of ours leaking in, plus `values`."""
    names = {name for found in variables().values() for name in found}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(values)
    return env


def nameko_show_config(**values):
    done = subprocess.run([NAMEKO, "show-config", "--config", "config.yml"], cwd=ROOT, capture_output=True,
                          text=True, env=clean_environment(**values), timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return yaml.safe_load(done.stdout)


def test_every_string_setting_arrives_verbatim_through_nameko_run_s_own_loading():
    # One process per value would cost a second each: the awkward values go to several settings at once.
    for first, second in zip(AWKWARD[0::2], AWKWARD[1::2]):
        shown = nameko_show_config(SMTP_PASSWORD=first, SMTP_USER=second, OPERATOR_TOKEN=first,
                                   UNSUBSCRIBE_SECRET=second, MAIL_FROM=first)
        assert shown["SMTP"]["password"] == first
        assert shown["SMTP"]["user"] == second
        assert shown["OPERATOR_TOKEN"] == first
        assert shown["NOTIFICATIONS"]["unsubscribe_secret"] == second
        assert shown["SMTP"]["sender"] == first


@pytest.mark.parametrize("value", AWKWARD)
def test_every_string_setting_arrives_verbatim_through_backbone_config(monkeypatch, value):
    for name in ("SMTP_PASSWORD", "SMTP_USER", "OPERATOR_TOKEN", "UNSUBSCRIBE_SECRET", "SMS_SENDER", "FEED_SECRET"):
        monkeypatch.setenv(name, value)
    data = load()
    assert data["SMTP"]["password"] == data["SMTP"]["user"] == data["FEED_SECRET"] == value
    assert data["OPERATOR_TOKEN"] == data["NOTIFICATIONS"]["unsubscribe_secret"] == data["SMS"]["sender"] == value


def test_typed_settings_are_converted_from_the_strings_the_environment_gives(monkeypatch):
    monkeypatch.setenv("SMTP_PORT", "587")
    monkeypatch.setenv("SMTP_STARTTLS", "true")
    monkeypatch.setenv("ANNOUNCE_SENT", "no")
    monkeypatch.setenv("EVENT_RETRY_DELAYS", "[0.5, 2, 10]")
    monkeypatch.setenv("NOTIFICATION_RETRY_DELAYS", "5, 50")
    monkeypatch.setenv("METRICS_PORT", "9100")
    monkeypatch.setenv("MAX_WORKERS", "12")
    data = load()
    assert data["SMTP"]["port"] == 587 and data["SMTP"]["starttls"] is True
    assert data["NOTIFICATIONS"]["announce_sent"] is False
    assert data["EVENTS"]["retry_delays"] == [0.5, 2.0, 10.0]
    assert data["NOTIFICATIONS"]["retry_delays"] == [5.0, 50.0]
    assert data["METRICS_PORT"] == 9100 and data["max_workers"] == 12
    # Empty is "off" for the metrics port.
    monkeypatch.setenv("METRICS_PORT", "")
    assert load()["METRICS_PORT"] is None


@pytest.mark.parametrize("variable, value, named", [
    ("SMTP_PORT", "abc", "SMTP.port (from ${SMTP_PORT})"),
    ("SMTP_PORT", "70000", "SMTP.port (from ${SMTP_PORT})"),
    ("SMTP_STARTTLS", "maybe", "SMTP.starttls (from ${SMTP_STARTTLS})"),
    ("MAX_WORKERS", "0", "max_workers (from ${MAX_WORKERS})"),
    ("EVENT_RETRY_DELAYS", "[1, 5", "EVENTS.retry_delays (from ${EVENT_RETRY_DELAYS})"),
    ("EVENT_RETRY_DELAYS", "soon", "EVENTS.retry_delays (from ${EVENT_RETRY_DELAYS})"),
    ("QUEUE_TYPE", "stream", "QUEUE_TYPE (from ${QUEUE_TYPE})"),
    ("SMS_QUIET_HOURS", "9pm-7am", "NOTIFICATIONS.quiet_hours (from ${SMS_QUIET_HOURS})"),
    ("REMINDER_HOUR", "25", "NOTIFICATIONS.reminder_hour (from ${REMINDER_HOUR})"),
    ("PUBLIC_URL", "trainops.example.org", "PUBLIC_URL (from ${PUBLIC_URL})"),
    ("HTTP_MAX_BODY_BYTES", "1MB", "HTTP.max_body_bytes (from ${HTTP_MAX_BODY_BYTES})"),
    ("HTTP_TRUSTED_PROXIES", "proxy.example.org", "HTTP.trusted_proxies (from ${HTTP_TRUSTED_PROXIES})"),
    ("IMPORT_MAX_ROWS", "lots", "IMPORT_MAX_ROWS (from ${IMPORT_MAX_ROWS})"),
    ("GATEWAY_PORT", "http", "WEB_SERVER_ADDRESS (from ${GATEWAY_HOST}, ${GATEWAY_PORT})"),
    ("AMQP_URI", "rabbitmq:5672", "AMQP_URI (from ${AMQP_URI})"),
])
def test_a_setting_of_the_wrong_kind_is_refused_naming_the_setting_and_its_variable(monkeypatch, variable, value, named):
    monkeypatch.setenv(variable, value)
    with pytest.raises(settings.SettingsError) as refused:
        load()
    assert named in str(refused.value)


def test_the_refusal_never_prints_a_secret_value(monkeypatch):
    monkeypatch.setenv("AMQP_URI", "rabbitmq-with-password-hunter2")
    monkeypatch.setenv("SMTP_PORT", "abc")
    with pytest.raises(settings.SettingsError) as refused:
        load()
    assert "hunter2" not in str(refused.value)
    assert "(given 'abc')" in str(refused.value)


def test_nameko_run_refuses_to_start_a_service_with_a_wrong_setting_and_names_it():
    # The container checks the configuration before it does anything: no broker or database is reached.
    done = subprocess.run(
        [NAMEKO, "run", "--config", "config.yml", "services.partners.service:PartnersService"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=clean_environment(SMTP_PORT="abc", AMQP_URI="amqp://nobody:x@127.0.0.1:1/"))
    assert done.returncode != 0
    assert "SMTP.port (from ${SMTP_PORT}): Not a valid integer. (given 'abc')" in done.stderr


def test_every_variable_of_config_yml_is_raw_and_every_setting_it_feeds_has_a_type():
    text = CONFIG_FILE.read_text(encoding="utf-8")
    substituted = [line for line in text.splitlines() if "${" in line and not line.lstrip().startswith("#")]
    assert substituted and all("!raw_env_var ${" in line for line in substituted), \
        [line for line in substituted if "!raw_env_var" not in line]
    declared = settings.Settings().fields

    def typed(path):
        fields_ = declared
        for key in path:
            if key not in fields_:
                return False
            field = fields_[key]
            if isinstance(field, marshmallow.fields.Dict):  # LOGGING, WORKERS: typed by their values
                return True
            fields_ = getattr(field, "schema", None).fields if hasattr(field, "schema") else {}
        return True

    untyped = [".".join(path) for path in variables() if not typed(path)]
    assert not untyped, "add these to backbone/settings.py: {}".format(untyped)
