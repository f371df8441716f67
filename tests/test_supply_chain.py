"""The supply chain, offline: the lock the image installs pins every runtime dependency (and every one they
pull in) with hashes, agrees with pyproject.toml and with what the tests ran on; the SBOM the image
build writes is made here by the same command and lists exactly the lock; the audit's verdict rule
fails on a finding nobody accepted and says when it could not look."""
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "deploy" / "requirements.lock"
TOOLS_LOCK = ROOT / "deploy" / "sbom-tools.lock"
sys.path.insert(0, str(ROOT / "deploy"))
import audit  # noqa: E402  (deploy/audit.py)


def locked(path):
    """{name: (version, [hashes])} of a pip-compile lock."""
    text = path.read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split(" --hash=")
        name, version = requirement.strip().split("==")
        found[canonicalize_name(name)] = (version, [o.strip() for o in options])
    return found


def test_the_lock_pins_every_runtime_dependency_with_hashes_as_pyproject_does():
    lock = locked(LOCK)
    for name, (version, hashes) in lock.items():
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name
    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for line in pinned:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in lock, "{} is not in the lock: run `make lock`".format(name)
        assert requirement.specifier.contains(lock[name][0]), (name, lock[name][0], str(requirement.specifier))
    # Closed: every locked package's own requirements are locked too (nothing left to resolve in the image).
    for name, (version, _) in lock.items():
        for needed in importlib.metadata.requires(name) or []:
            requirement = Requirement(needed)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            assert canonicalize_name(requirement.name) in lock, "{} needs {}".format(name, requirement.name)


def test_the_tests_ran_on_the_versions_the_image_installs():
    for name, (version, _) in locked(LOCK).items():
        assert importlib.metadata.version(name) == version, "{}: .venv has {}, the lock {}".format(
            name, importlib.metadata.version(name), version)


def test_the_sbom_lists_exactly_what_the_image_installs(tmp_path):
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    command = re.search(r"/opt/sbom/bin/(cyclonedx-py requirements .*)$", dockerfile, re.M).group(1).split()
    assert "--require-hashes --no-deps -r /src/sbom-tools.lock" in dockerfile
    assert "COPY --from=sbom /src/sbom.cdx.json ./sbom.cdx.json" in dockerfile
    # The image's command, with this repository's paths and this virtualenv's generator.
    command = [str(Path(sys.executable).with_name(command[0]))] + [
        {"/src/requirements.lock": str(LOCK), "/src/sbom.cdx.json": str(tmp_path / "sbom.json")}.get(a, a)
        for a in command[1:]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sbom = json.loads((tmp_path / "sbom.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"].startswith("1.")
    listed = {canonicalize_name(c["name"]): c["version"] for c in sbom["components"]}
    assert listed == {name: version for name, (version, _) in locked(LOCK).items()}
    assert all(c["purl"] == "pkg:pypi/{}@{}".format(c["name"], c["version"]) for c in sbom["components"])
    # The generator is locked with hashes too, at the version the tests ran.
    tools = locked(TOOLS_LOCK)
    assert tools["cyclonedx-bom"][0] == importlib.metadata.version("cyclonedx-bom")
    assert all(hashes for _, hashes in tools.values())


@pytest.mark.parametrize("report, accepted, required, code, says", [
    ({"dependencies": [{"name": "jinja2", "version": "3.1.6", "vulns": []}]}, {}, True, 0, "1 dependencies audited, 0 not"),
    ({"dependencies": [{"name": "jinja2", "version": "3.1.6", "vulns": [
        {"id": "GHSA-xxxx", "aliases": ["CVE-2099-1"], "fix_versions": ["3.1.7"], "description": "sandbox escape"}]}]},
     {}, False, 1, "FINDING GHSA-xxxx in jinja2 3.1.6 (fixed in 3.1.7)"),
    ({"dependencies": [{"name": "jinja2", "version": "3.1.6", "vulns": [
        {"id": "GHSA-xxxx", "aliases": ["CVE-2099-1"], "fix_versions": [], "description": "sandbox escape"}]}]},
     {"CVE-2099-1": "no untrusted templates: ours ship in the image"}, True, 0,
     "accepted GHSA-xxxx in jinja2 3.1.6: no untrusted templates"),
    ({"dependencies": [{"name": "amqp", "skip_reason": "not found on PyPI"}]}, {}, False, 0, "NOT AUDITED (1): amqp"),
    ({"dependencies": [{"name": "amqp", "skip_reason": "not found on PyPI"}]}, {}, True, 1, "FAILED"),
])
def test_the_audit_fails_on_a_finding_nobody_accepted_and_says_what_it_could_not_look_up(
        report, accepted, required, code, says):
    got, lines = audit.verdict(report, accepted, required)
    assert got == code and says in "\n".join(lines)


def test_every_accepted_finding_has_a_reason():
    accepted = json.loads((ROOT / "deploy" / "audit-allowlist.json").read_text())["accepted"]
    assert all(isinstance(reason, str) and len(reason.split()) >= 5 for reason in accepted.values())
