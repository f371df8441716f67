"""Load `config.yml` exactly as `nameko run --config` does, for processes that are not nameko runners
(the topology declarer, the seed loader, the tests and the benchmark)."""
import importlib
import os
from pathlib import Path

from nameko import config as nameko_config
from nameko.cli.utils.config import load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = ROOT / "config.yml"


def load(path=CONFIG_FILE, **overrides):
    """Read the YAML with environment substitution; `overrides` win. Returns a plain dict."""
    with open(path, encoding="utf-8") as handle:
        data = load_config(handle)
    data.update(overrides)
    return data


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


def env_flag(name, default=False):
    value = os.environ.get(name)
    return default if value is None else value.lower() in ("1", "true", "yes", "on")
