"""`make audit`: the locked dependencies (deploy/requirements.lock) against known vulnerabilities.

pip-audit reads the lock (pinned, hashed, no resolution: --require-hashes --disable-pip) and asks PyPI's
JSON API for each pinned version's advisories. A finding fails the audit unless
deploy/audit-allowlist.json accepts it with a reason. A dependency pip-audit could not look up (PyPI's
per-version JSON unreachable, as on the build machine, whose package proxy does not serve it) is
reported as not audited: that fails only with AUDIT_REQUIRED=1 (set it where PyPI is reachable), so a
machine without the data says so instead of passing quietly or failing every build.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ALLOWLIST = Path(__file__).with_name("audit-allowlist.json")


def verdict(report, accepted, required):
    """(exit code, lines) for pip-audit's JSON `report`: 1 on any finding not `accepted`, or on an
    unaudited dependency when `required`."""
    lines, failed = [], False
    unaudited = []
    for dependency in report.get("dependencies", []):
        name, version = dependency["name"], dependency.get("version")
        if "skip_reason" in dependency:
            unaudited.append(name if version is None else "{} {}".format(name, version))
            continue
        for vulnerability in dependency.get("vulns", []):
            ids = [vulnerability["id"]] + vulnerability.get("aliases", [])
            reason = next((accepted[i] for i in ids if i in accepted), None)
            if reason:
                lines.append("accepted {} in {} {}: {}".format(vulnerability["id"], name, version, reason))
            else:
                failed = True
                lines.append("FINDING {} in {} {} (fixed in {}): {}".format(
                    vulnerability["id"], name, version, ", ".join(vulnerability.get("fix_versions", [])) or "no release",
                    vulnerability.get("description", "")[:200]))
    if unaudited:
        lines.append("NOT AUDITED ({}): {} (PyPI's advisory data for these versions was not reachable)".format(
            len(unaudited), ", ".join(unaudited)))
        failed = failed or required
    audited = len(report.get("dependencies", [])) - len(unaudited)
    lines.append("audit: {} dependencies audited, {} not; {}".format(
        audited, len(unaudited), "FAILED" if failed else "no unaccepted finding"))
    return (1 if failed else 0), lines


def main(lock):
    accepted = json.loads(ALLOWLIST.read_text())["accepted"]
    pip_audit = str(Path(sys.executable).with_name("pip-audit"))
    done = subprocess.run([pip_audit, "-r", lock, "--require-hashes", "--disable-pip", "--progress-spinner", "off",
                           "--format", "json"], capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        print(done.stdout + done.stderr, file=sys.stderr)
        return 2
    code, lines = verdict(report, accepted, os.environ.get("AUDIT_REQUIRED") == "1")
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "deploy/requirements.lock"))
