"""The alerts and the dashboard, checked by Prometheus' own promtool (Debian's prometheus package;
`make promtool`, part of `make test`, extracts it into .venv/bin): the rules load, every alert fires on
the failure it names and not on the healthy series beside it (tests/prometheus/alerts_test.yml), and
every expression of the Grafana dashboard parses and names only metrics something exports."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
UNIT_TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "trainops.json"


def promtool():
    found = Path(sys.executable).with_name("promtool")
    if found.exists():
        return str(found)
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is missing: run `make promtool` (make test does)")
    return found


def run(*args, cwd):
    done = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rules():
    return {rule["alert"]: rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}


def rendered(template, labels):
    """A rule's annotation as Prometheus renders it, for the templates these rules use ($labels.x)."""
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def test_the_alert_rules_load():
    assert "SUCCESS" in run("check", "rules", str(ALERTS), cwd=ROOT)


def test_every_alert_fires_on_its_failure_and_not_before(tmp_path):
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    known = rules()
    tested = set()
    for group in tests["tests"]:
        for case in group["alert_rule_test"]:
            tested.add(case["alertname"])
            for alert in case["exp_alerts"]:
                if "exp_annotations" not in alert:
                    assert "$value" not in json.dumps(known[case["alertname"]]["annotations"]), case["alertname"]
                    alert["exp_annotations"] = {key: rendered(text, alert["exp_labels"])
                                                for key, text in known[case["alertname"]]["annotations"].items()}
    assert tested == set(known), "alerts without a unit test: {}".format(set(known) - tested)
    # Every alert is also shown firing at least once, not only staying quiet.
    firing = {case["alertname"] for group in tests["tests"] for case in group["alert_rule_test"] if case["exp_alerts"]}
    assert firing == set(known), set(known) - firing
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    assert "SUCCESS" in run("test", "rules", "alerts_test.yml", cwd=tmp_path)


def exported_metrics():
    """What trainops exports (counters get `_total`, histograms `_bucket`...), read from the code, and the
    exporters' metrics the rules and the dashboard use."""
    names = set()
    for path in list((ROOT / "backbone").glob("*.py")) + list((ROOT / "ops").glob("*.py")) + \
            list((ROOT / "services").rglob("*.py")):
        names |= set(re.findall(r'"(trainops_[a-z_]+)"', path.read_text(encoding="utf-8")))
    counters = set(re.findall(r'Counter\(\s*"(trainops_[a-z_]+)"', (ROOT / "backbone" / "counters.py").read_text()))
    histograms = set(re.findall(r'Histogram\(\s*"(trainops_[a-z_]+)"', (ROOT / "backbone" / "counters.py").read_text()))
    names |= {name + "_total" for name in counters}
    names |= {name + suffix for name in histograms for suffix in ("_bucket", "_sum", "_count")}
    return names


def test_the_dashboard_parses_and_shows_what_the_issue_asked_for(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for subject in ("services", "queue", "outbox", "dead letters", "notices", "registrations", "rabbitmq", "mongodb"):
        assert subject in titles, subject
    # promtool parses each expression, as a recording rule of its own.
    recording = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:panel_{}".format(n), "expr": expr} for n, expr in enumerate(expressions)]}]}
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump(recording))
    assert "SUCCESS" in run("check", "rules", "dashboard-rules.yml", cwd=tmp_path)
    # Every trainops metric it names exists.
    exported = exported_metrics()
    for expr in expressions + [rule["expr"] for rule in rules().values()]:
        for name in re.findall(r"\b(trainops_[a-z_]+)\b", expr):
            assert name in exported, "{} is not exported by trainops".format(name)
    # Every panel with data points at the Prometheus the dashboard is given.
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_scrape_configurations_are_valid_prometheus_configuration(tmp_path):
    for source in (DEPLOY / "prometheus" / "prometheus.yml", DEPLOY / "compose" / "prometheus.yml"):
        config = yaml.safe_load(source.read_text())
        # Debian builds Prometheus without Kubernetes discovery: a static target stands in for it, and the
        # rest of each job (relabeling, paths, timeouts) is checked as written.
        for job in config["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None):
                job["static_configs"] = [{"targets": ["127.0.0.1:9100"]}]
        # The token file each names exists where it runs; here an empty one stands in.
        for job in config["scrape_configs"]:
            if "authorization" in job:
                token = tmp_path / "token"
                token.write_text("x")
                job["authorization"]["credentials_file"] = str(token)
        config["rule_files"] = [str(ALERTS)]
        target = tmp_path / source.parent.name
        target.write_text(yaml.safe_dump(config))
        assert "SUCCESS" in run("check", "config", str(target), cwd=tmp_path)
