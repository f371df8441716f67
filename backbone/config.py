"""Load `config.yml` exactly as `nameko run --config` does, for processes that are not nameko runners
(the topology declarer, the seed loader, the tests and the benchmark), and check it
(`backbone/settings.py`): every `${VAR:default}` arrives as the string written, then each setting
is converted to its type or the process stops naming it."""
import functools
import importlib
import os
import re
from pathlib import Path

import yaml
from nameko import config as nameko_config
from nameko.cli.utils.config import load_config

from backbone import settings

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = ROOT / "config.yml"
_VARIABLE = re.compile(r"\$\{([^}:\s]+)")


class _Unsubstituted(yaml.SafeLoader):
    """config.yml as written: `${VAR:default}` left as it is."""


for _tag in ("!raw_env_var", "!env_var"):
    _Unsubstituted.add_constructor(_tag, lambda loader, node: loader.construct_scalar(node))


def variables(path=CONFIG_FILE):
    """{setting path: [VAR, ...]}: which environment variables each setting of config.yml reads."""
    return _variables(str(path))


@functools.lru_cache(maxsize=8)
def _variables(path):
    with open(path, encoding="utf-8") as handle:
        written = yaml.load(handle, Loader=_Unsubstituted)
    found = {}

    def walk(value, where):
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, where + (key,))
        elif isinstance(value, str) and _VARIABLE.search(value):
            found[where] = _VARIABLE.findall(value)

    walk(written, ())
    return found


def check(data, path=CONFIG_FILE):
    """Validate and convert `data` in place (`backbone.settings.check`), naming the variables of
    `path` in any error. Raises settings.SettingsError."""
    return settings.check(data, variables(path))


def load(path=CONFIG_FILE, **overrides):
    """Read the YAML with environment substitution; `overrides` win; checked and converted. Returns a
    plain dict."""
    with open(path, encoding="utf-8") as handle:
        data = load_config(handle)
    data.update(overrides)
    return check(data, path)


def install(path=CONFIG_FILE, **overrides):
    """Load and make it nameko's global config (what `from nameko import config` reads)."""
    data = load(path, **overrides)
    nameko_config.clear()
    nameko_config.update(data)
    return data


def service_classes(names=None):
    """{name: service class} from config.yml's SERVICES (`module:Class`), imported by name: the one
    list of trainops's services, which the topology, `make run`, the tests and the bench read."""
    listed = nameko_config.get("SERVICES") or load().get("SERVICES") or {}
    classes = {}
    for name, target in listed.items():
        if names is None or name in names:
            module, _, attribute = target.partition(":")
            classes[name] = getattr(importlib.import_module(module), attribute)
    return classes


def database_name(service_name):
    return "{}_{}".format(nameko_config.get("DATABASE_PREFIX", "trainops"), service_name)


def events_setting(key, default=None):
    return (nameko_config.get("EVENTS") or {}).get(key, default)


# What PRIVACY (config.yml) says when a process runs without it (a test's own configuration).
PRIVACY_DEFAULTS = {"handled_events_hours": 168, "personal_data_days": 90, "qr_token_hours": 24,
                    "contact_email": ""}


def privacy_setting(key):
    """A retention period or the privacy contact (config.yml: PRIVACY)."""
    return (nameko_config.get("PRIVACY") or {}).get(key, PRIVACY_DEFAULTS[key])


# A secret shorter than this is refused: 32 characters of `secrets.token_urlsafe` are 192 bits.
SECRET_MIN_LENGTH = 32


class MissingSecret(RuntimeError):
    """A process was started without a secret it needs, or with one too short to be one."""


def required_secret(value, variable):
    """`value`, a secret from the configuration, when it can be one; otherwise MissingSecret naming the
    environment variable that sets it, and the process refuses to start. No secret has a committed
    default (`make run` writes dev ones into var/, the tests set theirs), and a loopback PUBLIC_URL
    earns no exception: nobody needs one, and a signature made with an empty or published key is
    forgeable wherever the process happens to listen."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise MissingSecret("{} is not set: this process refuses to start without it. Set it to a random "
                            "value of at least {} characters (python3 -c 'import secrets; "
                            "print(secrets.token_urlsafe(32))'); `make run` makes one in var/."
                            .format(variable, SECRET_MIN_LENGTH))
    if len(text) < SECRET_MIN_LENGTH:
        raise MissingSecret("{} is too short ({} characters): it takes at least {}.".format(
            variable, len(text), SECRET_MIN_LENGTH))
    return text


def public_url(config):
    """The address people and calendar apps reach the gateway at, without a trailing slash."""
    return (config.get("PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/")


def env_flag(name, default=False):
    value = os.environ.get(name)
    return default if value is None else value.lower() in ("1", "true", "yes", "on")
