"""The scale bench's city (bench/city.py): the same data set for the same seed whether it is made in
one go or grown size by size, and a coherent one (registrations only where the unit may register,
seat counters that count them)."""
from datetime import datetime, timezone

from bench import city
from backbone.database import mongo_client

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)


def test_the_city_is_the_same_grown_in_steps_or_made_at_once_and_seats_only_whom_a_session_is_open_to(
        app_config, monkeypatch):
    monkeypatch.setattr(city, "SESSIONS", 40)
    client = mongo_client(app_config["MONGO_URI"])
    prefix = app_config["DATABASE_PREFIX"] + "_city"
    once, steps = (client[prefix + "_once_registration"], client[prefix + "_once_scheduling"]), \
        (client[prefix + "_steps_registration"], client[prefix + "_steps_scheduling"])
    try:
        city.extend(*once, 0, 300, "partner-city", city.VENUE, now=NOW)
        city.extend(*steps, 0, 100, "partner-city", city.VENUE, now=NOW)
        city.extend(*steps, 100, 300, "partner-city", city.VENUE, now=NOW)
        for i, name in ((0, "officials"), (0, "registrations"), (0, "sessions"), (0, "certificates"), (1, "sessions")):
            assert list(once[i][name].find().sort("_id")) == list(steps[i][name].find().sort("_id")), name
        registration_db = once[0]
        assert registration_db.officials.count_documents({}) == 300 and registration_db.sessions.count_documents({}) == 40
        sessions = {s["_id"]: s for s in registration_db.sessions.find()}
        assert any(s["eligible_units"] for s in sessions.values()) and any(not s["eligible_units"] for s in sessions.values())
        seated = {}
        for registration in registration_db.registrations.find():
            session = sessions[registration["session_id"]]
            assert not session["eligible_units"] or registration["unit_code"] in session["eligible_units"]
            if registration["status"] in ("confirmed", "completed"):
                seated[session["_id"]] = seated.get(session["_id"], 0) + 1
        assert {k: s.get("seats_taken", 0) for k, s in sessions.items() if s.get("seats_taken")} == seated
        # The sessions the bench registers for (the scale step's, the campaign's) are open to every unit.
        restricted = next(k for k in range(city.SESSIONS)
                          if city.session(city.SEED, k, "p", city.VENUE, NOW)[1]["eligible_units"])
        opened = city.session(city.SEED, restricted, "p", city.VENUE, NOW, open_to_every_unit=True)
        assert not opened[1]["eligible_units"] and opened[0]["calendar_keys"][0].endswith("|*")
    finally:
        for database in once + steps:
            client.drop_database(database.name)
        client.close()
