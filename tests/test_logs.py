"""Logs are JSON lines carrying the correlation id, and never show a phone number or an email."""
import json
import logging

import pytest

from backbone.logs import JsonFormatter, bind, clear, mask


@pytest.mark.parametrize("text, expected", [
    ("gửi tới anh.nguyen@q1.hochiminhcity.gov.vn xong", "gửi tới a***@q1.hochiminhcity.gov.vn xong"),
    ("SMS +84903123456 ok", "SMS +8490***456 ok"),
    ("gọi 0903 123 456 hoặc 028.3829.1234", "gọi 090***456 hoặc 028***234"),
    ("event 6f1c2b3a9d8e7f60 at 2025-03-22T08:00:00+07:00", "event 6f1c2b3a9d8e7f60 at 2025-03-22T08:00:00+07:00"),
    ("GET /venues/v-1/calendar.ics?token=tok_abc-123&x=1 HTTP/1.1", "GET /venues/v-1/calendar.ics?token=***&x=1 HTTP/1.1"),
    ("Authorization: Bearer tok_Zx9", "Authorization: Bearer ***"),
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
