"""Fuzzing the published API with schemathesis: every route of `GET /openapi.json`, with generated
paths, queries and bodies, as the operator and as a partner. Whatever is sent, no answer is a server
error, every status and content type is one the document states, and every error is in its shape.

A bounded number of examples per route keeps it to a few minutes (FUZZ_EXAMPLES, 12 by default;
more by hand: `FUZZ_EXAMPLES=200 make test PYTEST_ARGS=tests/test_fuzz.py`)."""
import os
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 12))
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]


@pytest.fixture(scope="module")
def api(module_system):
    base = module_system["GATEWAY_URL"]
    operator = {"Authorization": "Bearer " + module_system["OPERATOR_TOKEN"]}
    partner = requests.post(base + "/partners", json={
        "code": "FUZZ-UNI", "name": "Trường Đại học Thử nghiệm", "kind": "university",
        "contact_email": "daotao@fuzz.example.edu.vn"}, headers=operator, timeout=30).json()
    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    return {"base": base, "schema": schema, "credentials": {
        "operator": operator, "partner": {"Authorization": "Bearer " + partner["api_key"]}}}


def fuzz(api, who):
    """Run every operation; returns (requests sent, statuses seen, failures as text)."""
    sent, statuses, failures = [0], Counter(), []
    session = requests.Session()
    for result in api["schema"].get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            response = case.call(base_url=api["base"], session=session, headers=api["credentials"][who], timeout=30)
            sent[0] += 1
            statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except BaseException as failure:  # every operation runs; the failures are reported together
            failures.append("{} {}: {}".format(operation.method.upper(), operation.path, str(failure)[:2000]))
    return sent[0], statuses, failures


@pytest.mark.parametrize("who", ["operator", "partner"])
def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(api, who):
    sent, statuses, failures = fuzz(api, who)
    summary = "fuzz as {}: {} requests, statuses {}".format(who, sent, dict(sorted(statuses.items())))
    print(summary)
    if os.environ.get("FUZZ_REPORT"):
        with open(os.environ["FUZZ_REPORT"], "a", encoding="utf-8") as report:
            report.write(summary + "\n" + "\n\n".join(failures) + "\n")
    assert sent >= EXAMPLES * 20
    assert not failures, "\n\n".join(failures)
    assert 500 not in statuses
