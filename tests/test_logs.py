"""Logs are JSON lines carrying the correlation id, and never show a phone number or an email."""
import json
import logging

import pytest

from backbone.errors import DomainError, conflict, not_found
from backbone.logs import JsonFormatter, Refusals, bind, clear, mask


@pytest.mark.parametrize("text, expected", [
    ("gửi tới anh.nguyen@q1.hochiminhcity.gov.vn xong", "gửi tới a***@q1.hochiminhcity.gov.vn xong"),
    ("SMS +84903123456 ok", "SMS +8490***456 ok"),
    ("gọi 0903 123 456 hoặc 028.3829.1234", "gọi 090***456 hoặc 028***234"),
    ("event 6f1c2b3a9d8e7f60 at 2025-03-22T08:00:00+07:00", "event 6f1c2b3a9d8e7f60 at 2025-03-22T08:00:00+07:00"),
    ("GET /venues/v-1/calendar.ics?token=tok_abc-123&x=1 HTTP/1.1", "GET /venues/v-1/calendar.ics?token=***&x=1 HTTP/1.1"),
    ("Authorization: Bearer tok_Zx9", "Authorization: Bearer ***"),
    # Vietnamese addresses, phones as people write them, secrets in JSON and by their prefix.
    ("to nguyễn.ánh@x.vn", "to n***@x.vn"),
    ("to a@bộnội.vn.", "to a***@bộnội.vn."),
    ("call (+84) 903123456 now", "call +8490***456 now"),
    ("call 84 903 123 456", "call 8490***456"),
    ('{"api_key": "tok_AbCdEfGh123456", "name": "SIU"}', '{"api_key": "***", "name": "SIU"}'),
    ("issued tok_AbCdEfGh123456 to SIU", "issued tok_*** to SIU"),
    ("SMTP 550 5.1.1 <cuc.le@q3.gov.vn>: Recipient address rejected", "SMTP 550 5.1.1 <c***@q3.gov.vn>: Recipient address rejected"),
    # More ways addresses and numbers are written here: accents and capitals on both sides, a landline's
    # area code in brackets, the trunk 0 kept after +84, dashes, and what must stay (dates, times, ids).
    ("<Trần.Văn.Bình@sở-nội-vụ.hochiminhcity.gov.vn>", "<T***@sở-nội-vụ.hochiminhcity.gov.vn>"),
    ("ĐỖ.THỊ@HCM.GOV.VN rejected", "Đ***@HCM.GOV.VN rejected"),
    ("văn phòng (028) 3829 1234", "văn phòng 028***234"),
    ("gọi +84 (0) 903 123 456", "gọi +8490***456"),
    ("+84-903-123-456; 0903-123-456", "+8490***456; 090***456"),
    ("SĐT:0903123456.", "SĐT:090***456."),
    ("HTTP 400: invalid phone number +84903123456", "HTTP 400: invalid phone number +8490***456"),
    ("lớp 22/03/2025 08:00 (07:00 UTC), mã 84903123456789", "lớp 22/03/2025 08:00 (07:00 UTC), mã 84903123456789"),
])
def test_mask_hides_contacts_and_leaves_ids_and_times_alone(text, expected):
    assert mask(text) == expected


def test_a_log_line_is_json_with_the_correlation_id_and_masked_fields():
    record = logging.LogRecord("trainops", logging.INFO, __file__, 1, "sent to %s", ("+84903123456",), None)
    record.fields = {"to": "anh.nguyen@q1.gov.vn"}
    bind(correlation_id="c-123", service="notifications")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        clear()
    assert line["correlation_id"] == "c-123"
    assert line["service"] == "notifications"
    assert line["msg"] == "sent to +8490***456"
    assert line["to"] == "a***@q1.gov.vn"


def _worker_error(error):
    """The record nameko's container logs when a worker raises (`error handling worker ...`)."""
    try:
        raise error
    except Exception:
        import sys
        return logging.LogRecord("nameko.containers", logging.ERROR, __file__, 1, "error handling worker %s: %s",
                                 ("<WorkerContext>", error), sys.exc_info())


def test_a_refused_request_is_no_error_line_and_a_failure_still_is():
    import nameko.containers
    from backbone.config import load
    # config.yml puts the filter on the logger nameko's container logs worker errors with.
    logging_config = load()["LOGGING"]
    assert logging_config["filters"]["refusals"]["()"] == "backbone.logs.Refusals"
    assert logging_config["loggers"][nameko.containers._log.name]["filters"] == ["refusals"]

    refusals = Refusals()
    assert not refusals.filter(_worker_error(conflict("already_registered", "Already registered.")))
    assert not refusals.filter(_worker_error(not_found("session", "s-1")))
    assert refusals.filter(_worker_error(DomainError("service_unavailable", "Try again.", {}, 503)))
    assert refusals.filter(_worker_error(RuntimeError("database away")))
    # As the gateway gets it back from an RPC: nameko sends exception arguments as text.
    from nameko.exceptions import deserialize, serialize
    across = deserialize(serialize(conflict("already_registered", "Already registered.")))
    assert isinstance(across, DomainError) and across.status == 409
    assert not refusals.filter(_worker_error(across))
    odd = DomainError("odd", "A status that is no number.")
    odd.status = "teapot"
    assert refusals.filter(_worker_error(odd))
    assert refusals.filter(logging.LogRecord("nameko.containers", logging.INFO, __file__, 1, "started", (), None))
