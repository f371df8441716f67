"""Events carry what their consumers need and no more (Decree 13/2023/ND-CP: minimisation): every
personal field of every event contract says, in its `personal` metadata, which consumer reads it and
for what, and that consumer subscribes to the event; a field no consumer reads says so and is not sent."""
import re

import nameko
from marshmallow import fields

import contracts  # noqa: F401  (registers every contract)
from backbone import events, topology
from backbone.config import load

# Field names that hold something about a person: a name, a contact, a credential of theirs.
PERSONAL = re.compile(r"full_name|email|phone|trainer|qr_token|contact|birth|identity|citizen")


def personal_fields(schema, path=()):
    """(dotted path, field) of every personal field of a schema, nested ones included."""
    for name, field in schema.fields.items():
        inner = field.inner if isinstance(field, fields.List) else field
        if isinstance(inner, fields.Nested):
            yield from personal_fields(inner.schema, path + (name,))
        elif PERSONAL.search(name):
            yield ".".join(path + (name,)), field


def test_every_personal_field_of_an_event_says_which_consumer_reads_it_and_that_consumer_subscribes():
    with nameko.config.patch(load(), clear=True):
        subscribed = topology.subscriptions()
    found = 0
    for type_ in events.known_types():
        for path, field in personal_fields(events.schema_for(type_)):
            found += 1
            reason = field.metadata.get("personal")
            assert reason, "{}.{} is personal data: say who reads it and why (metadata personal)".format(type_, path)
            consumer = reason.split(":", 1)[0]
            if consumer != "none":
                assert type_ in subscribed.get(consumer, ()), (type_, path, consumer)
    assert found >= 5  # the official's name, email, phone, QR token, the partner's contact


def test_scheduling_sends_no_trainers_name_as_no_consumer_reads_it():
    from services.scheduling.schemas import scheduled_payload
    session = {"id": "session-1", "offering_id": "o", "partner_id": "p", "title": "t", "venue_id": "v",
               "venue_name": "n", "address": "a", "room": "r", "trainer": "TS. Nguyễn Văn A",
               "starts_at": "2026-01-01T01:00:00+00:00", "ends_at": "2026-01-01T04:00:00+00:00", "parts": [],
               "capacity": 10, "eligible_units": [], "audience_groups": ["ward_commune"],
               "registration_closes_at": None}
    envelope = events.make_envelope("session_scheduled", scheduled_payload(session), "scheduling", "c")
    assert "trainer" not in envelope["payload"] and "Nguyễn Văn A" not in str(envelope)
