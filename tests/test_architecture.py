"""ARCHITECTURE.md stays true: every room it names exists, and every import rule it states holds,
read from the code itself (the import statements of every module, top level or inside functions)."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
OWN = {"backbone", "contracts", "services", "gateway", "ops", "devstack", "bench", "tests", "deploy"}


def rooms():
    """{room: allowed import roots or None for anything}, from the table under "## The rooms"."""
    table = TEXT.split("## The rooms", 1)[1].split("\n\n", 2)[1]
    found = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        names = re.findall(r"`([\w.]+)`", cells[0])
        allowed = None if cells[2] == "anything" else set(re.findall(r"`([\w./]+)`", cells[2]))
        for name in names:
            found[name] = allowed
    return found


def imports_of(path):
    """The modules a file imports, absolute and dotted, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            yield base
            # `from ops import console` imports ops.console.
            yield from ("{}.{}".format(base, alias.name) for alias in node.names)


def allowed(module, rules, own_service):
    root = module.split(".")[0]
    if root not in OWN:
        return True  # the standard library and PyPI packages
    for rule in rules:
        if module == rule or module.startswith(rule + "."):
            return True
        if "." in rule and module == rule.rsplit(".", 1)[0]:
            return True  # `from gateway import entrypoints` names the package first
    return own_service is not None and (module == own_service or module.startswith(own_service + "."))


def test_every_room_it_names_exists():
    named = rooms()
    assert {"backbone", "contracts", "services", "gateway", "ops", "devstack", "deploy"} <= set(named)
    for room in named:
        assert (ROOT / room).is_dir(), room


def test_every_service_folder_has_the_same_files_with_the_same_roles():
    for folder in sorted((ROOT / "services").iterdir()):
        if folder.is_dir() and (folder / "__init__.py").exists():
            for role in ("service.py", "schemas.py", "rules.py", "store.py"):
                assert (folder / role).exists(), "{} has no {}".format(folder.name, role)
            assert not (folder / "storage.py").exists(), folder.name


@pytest.mark.parametrize("room", ["backbone", "contracts", "services", "gateway", "ops", "devstack"])
def test_each_room_imports_only_what_it_may(room):
    rules = rooms()[room]
    broken = []
    for path in sorted((ROOT / room).rglob("*.py")):
        own_service = None
        if room == "services" and len(path.relative_to(ROOT).parts) > 2:
            own_service = "services." + path.relative_to(ROOT).parts[1]
        for module in imports_of(path):
            if module in ("services", ""):  # the namespace package itself names no service
                continue
            if not allowed(module, rules, own_service):
                broken.append("{} imports {}".format(path.relative_to(ROOT), module))
    assert not broken, "\n".join(broken)


def test_the_rules_are_what_the_issue_asked_for():
    """Services import only the platform and contract modules; the gateway no service; the platform
    no service, gateway or ops module."""
    named = rooms()
    assert named["backbone"] == {"backbone"}
    assert not named["services"] & {"gateway", "ops"}
    assert "services" not in named["gateway"]
    assert "services" not in named["ops"]


def test_the_checker_catches_a_service_importing_another():
    """A room rule that could not fail would assert nothing: a service module importing another
    service's code is caught."""
    assert not allowed("services.partners.rules", {"backbone", "contracts"}, "services.scheduling")
    assert allowed("services.scheduling.rules", {"backbone", "contracts"}, "services.scheduling")
    assert not allowed("ops.fleet", {"backbone"}, None)
    assert allowed("gateway.entrypoints", {"backbone", "ops", "gateway.entrypoints"}, None)
    assert not allowed("gateway.service", {"backbone", "ops", "gateway.entrypoints"}, None)
