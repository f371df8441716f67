"""Scheduling: venues and their rooms, and class sessions (an offering delivered in a room by a
trainer), served as the programme calendar (a list, and ICS files and feeds, each feed with its own
read-only token: feeds.py).

Owns venues, sessions, the calendar feeds' generations, its copy of what partners said about
offerings and agreements, and the record of the warnings sent before agreements end.
Publishes session_scheduled, session_rescheduled, session_capacity_changed, session_cancelled and
agreement_ending (60, 30 and 7 days before an agreement's last day, with its offerings and the
sessions that fall after it: notifications writes to partner and operators).
Reacts to offering_published / offering_updated (which offerings may have sessions, on which
agreement), agreement_signed / agreement_amended (each agreement's last day), offering_withdrawn,
agreement_expired and agreement_terminated (the sessions still to come of the offerings the agreement
still carried are cancelled with that reason).

Rules (rules.py): no room or trainer is ever booked twice for overlapping times; a session belongs to
a published offering, within its dates and its agreement, and seats at most what its room seats;
only the operator schedules or changes what has started. Times are accepted only with an offset and
stored in UTC.
"""
from datetime import date, timedelta

from pymongo.errors import DuplicateKeyError

from backbone import auth
from backbone.clock import local_date, utcnow
from backbone.database import Database, new_id
from backbone import erasure  # the module: `nameko run` takes any class with entrypoints here for a service
from backbone.errors import not_found, validated
from backbone.logs import Tracing
from backbone.openapi import describe
from backbone.operated import Operated
from backbone.paging import listed
from backbone.rpc import rpc
from backbone.subscriber import subscribe
from backbone.timer import leased_timer
import contracts  # noqa: F401  (registers the contracts of the events it publishes and handles)
from services.scheduling import calendars, rules, schemas, store
from services.scheduling.feeds import Feeds
from services.scheduling.schemas import public_session, public_venue


class SchedulingService(erasure.KeepsNoOfficials, Operated):
    name = "scheduling"

    db = Database(indexes=store.INDEXES, migrations=store.MIGRATIONS)
    tracing = Tracing()
    feeds = Feeds()

    # -- what partners tell us -----------------------------------------------------------------------
    # Grouped (backbone/grouped.py): a partner's burst of events shares transactions; these hold no lock.

    @subscribe("offering_published", grouped=True)
    def on_offering_published(self, event):
        """The offering may have sessions (a withdrawn one stays withdrawn)."""
        self.db.transaction(lambda tx: store.remember_offering(tx, event["payload"]))

    @subscribe("offering_updated", grouped=True)
    def on_offering_updated(self, event):
        """Its title, audiences and dates as they are now."""
        self.db.transaction(lambda tx: store.remember_offering(tx, event["payload"]))

    @subscribe("offering_withdrawn", grouped=True)
    def on_offering_withdrawn(self, event):
        """No more sessions; those still to come are cancelled with the partner's reason."""
        payload = event["payload"]
        reason = rules.cancel_reason("Offering withdrawn", payload.get("reason"))
        self.db.transaction(lambda tx: store.withdraw_offering(
            tx, payload["offering_id"], payload["partner_id"], reason, utcnow()))

    @subscribe("agreement_signed", grouped=True)
    def on_agreement_signed(self, event):
        """Its dates: its last day is what the warnings count down to."""
        self.db.transaction(lambda tx: store.remember_agreement(tx, event["payload"], event["occurred_at"]))

    @subscribe("agreement_amended", grouped=True)
    def on_agreement_amended(self, event):
        """Its new dates: an amended last day is warned of again. Its sessions stay until it ends."""
        self.db.transaction(lambda tx: store.remember_agreement(tx, event["payload"], event["occurred_at"]))

    @subscribe("agreement_expired", grouped=True)
    def on_agreement_expired(self, event):
        """The offerings it still carried are covered through its last day; their later sessions are
        cancelled (an offering a renewal took on keeps its sessions)."""
        payload = event["payload"]
        ends_at = rules.agreement_ends_at(payload["valid_until"])

        def expire(tx):
            store.remember_agreement(tx, payload, event["occurred_at"])
            return store.end_agreement(tx, payload["agreement_id"], payload["partner_id"], ends_at,
                                       "Agreement expired.", "agreement_expired", utcnow(), payload.get("offering_ids"))

        self.db.transaction(expire)

    @subscribe("agreement_terminated", grouped=True)
    def on_agreement_terminated(self, event):
        """The offerings it still carried are covered until its termination day begins; their later
        sessions are cancelled."""
        payload = event["payload"]
        ends_at = rules.agreement_ends_at(payload["valid_until"], payload["terminated_on"])
        reason = rules.cancel_reason("Agreement terminated", payload.get("reason"))

        def terminate(tx):
            store.remember_agreement(tx, payload, event["occurred_at"], terminated_on=payload["terminated_on"])
            return store.end_agreement(tx, payload["agreement_id"], payload["partner_id"], ends_at, reason,
                                       "agreement_terminated", utcnow(), payload.get("offering_ids"))

        self.db.transaction(terminate)

    # -- agreements about to end ----------------------------------------------------------------------

    @leased_timer("AGREEMENT_WARNING_SECONDS", 60, lease="agreement-warnings")
    def warn_of_ending_agreements(self, today=None):
        """Publish `agreement_ending` for each agreement that reached a warning day (60, 30 or 7
        days before its last day, in local days) and was not warned of it for that end. `today`: the
        local day to judge (by default today's in Ho Chi Minh City). Runs in one replica (the lease)
        and is safe to run twice at once: the warning's record has a unique key and is written with
        the event. Returns how many warnings it published."""
        today = today or local_date()
        published = 0
        horizon = today + timedelta(days=max(rules.WARNING_DAYS))
        for agreement in store.agreements_ending(self.db, today, horizon):
            if rules.warning_due(self._last_day(agreement), today,
                                 store.warned(self.db, agreement["_id"], agreement["last_day"])) is None:
                continue
            try:
                published += self.db.transaction(lambda tx, agreement=agreement: self._warn(tx, agreement, today))
            except DuplicateKeyError:
                pass  # another sweep recorded it first: it published the warning
        store.note_swept(self.db, today, utcnow())
        return published

    def _warn(self, tx, agreement, today):
        """Inside a transaction: the agreement as it is now, its warning recorded once and published."""
        current = tx.agreements.find_one({"_id": agreement["_id"]})
        if current.get("ended") or current.get("last_day") != agreement["last_day"]:
            return 0  # it ended or changed since the sweep read it: the next sweep judges it afresh
        threshold = rules.warning_due(self._last_day(current), today, store.warned(tx, current["_id"], current["last_day"]))
        if threshold is None:
            return 0
        store.record_warning(tx, current, threshold, today, utcnow())
        offerings = store.carried_offerings(tx, current["_id"], today)
        sessions = store.sessions_after(tx, [o["_id"] for o in offerings], self._last_day(current))
        renewal = rules.renewal_of(current, store.partner_agreements(tx, current["partner_id"]))
        tx.emit("agreement_ending", schemas.ending_payload(current, threshold, today, offerings, sessions, renewal))
        return 1

    @staticmethod
    def _last_day(agreement):
        return date.fromisoformat(agreement["last_day"])

    @rpc
    def ending_agreements(self, actor, query):
        """The agreements whose last day is at most `within_days` (default 60) local days away and
        that have not ended, soonest first, with the warnings sent for that end and the renewal that
        follows, if any: {"items": [...]} (operator only; the console's list)."""
        auth.require_operator(actor, reading=True)
        asked = validated(schemas.EndingQuery(), query or {})
        today = local_date()
        items = []
        for agreement in store.agreements_ending(self.db, today, today + timedelta(days=asked["within_days"])):
            renewal = rules.renewal_of(agreement, store.partner_agreements(self.db, agreement["partner_id"]))
            items.append(schemas.public_ending(
                agreement, today, store.warned(self.db, agreement["_id"], agreement["last_day"]), renewal))
        return {"items": items, "swept_through": store.last_swept(self.db)}

    # -- venues -----------------------------------------------------------------------------------

    @rpc
    def create_venue(self, actor, data):
        """A venue with its rooms, each with its seats and equipment (operator only). Returns it."""
        auth.require_operator(actor)
        fields = validated(schemas.VenueIn(), data)
        return public_venue(store.add_venue(self.db, fields, utcnow()))

    @rpc
    def list_venues(self, actor, query):
        """Venues by name, paged with `limit` and `cursor`: {"items", "next_cursor"}."""
        rules.require_reader(actor)
        paging = validated(schemas.VenueQuery(), query)
        return listed(store.venue_page(self.db, paging["limit"], paging.get("cursor")), public_venue)

    @rpc
    def get_venue(self, actor, venue_id):
        """A venue and its rooms, and the `calendar_url` of its feed for the operator and its host
        (null for other partners: the feed shows every partner's sessions there). 404 for an unknown id."""
        rules.require_reader(actor)
        venue = store.venue(self.db, venue_id)
        return dict(public_venue(venue), calendar_url=self._calendar_url(actor, "venue", venue))

    # -- sessions ---------------------------------------------------------------------------------

    @rpc
    def create_session(self, actor, data):
        """Schedule a session of a published offering in a room (the operator, or the offering's
        partner). Returns the session, its registration cut-off defaulting to its start.
        409 `room_conflict` / `trainer_conflict` naming the other session. 422: `capacity_exceeds_room`;
        `offering_not_published`; `outside_offering_dates`; `audience_not_offered`;
        `no_active_agreement` (the offering's agreement has ended); `unknown_venue` / `unknown_room`;
        `in_the_past` (only the operator schedules sessions that have started)."""
        auth.require_operator_or_partner(actor, auth.partner_id_of(actor))  # who asks, before what is asked
        fields = validated(schemas.SessionIn(), data)
        offering = store.offering(self.db, fields["offering_id"])
        if offering is None:
            raise rules.not_published()
        auth.require_operator_or_partner(actor, offering["partner_id"])
        rules.require_current_audiences(fields["audience_groups"], local_date(fields["ends_at"]))
        venue = store.named_venue(self.db, fields["venue_id"])
        room = rules.room_of(venue, fields["room"])
        rules.require_room_seats(room, fields["capacity"])
        now = utcnow()
        rules.require_future_unless_operator(actor, fields["starts_at"], now)
        session = rules.new_session(new_id("session"), fields, offering, venue, room, now)

        def book(tx):
            store.claim(tx, session)
            store.add_session(tx, session)
            tx.emit("session_scheduled", schemas.scheduled_payload(session))

        self.db.transaction(book)
        return public_session(session)

    @rpc
    def reschedule_session(self, actor, session_id, data):
        """Move a session to new times, optionally to another room of its venue or with new parts
        (the operator, or the session's partner). Without `parts`, its parts move with its start; without
        `registration_closes_at`, the cut-off keeps its lead time. Returns the session. The same
        refusals as scheduling it, and 422 `session_cancelled`. A move to where it already is changes
        nothing and publishes nothing."""
        current = store.session(self.db, session_id)
        auth.require_operator_or_partner(actor, current["partner_id"])  # who asks, before what is asked
        fields = validated(schemas.RescheduleIn(), data)
        now = utcnow()
        rules.require_changeable(actor, current, now)
        room = rules.room_of(store.venue(self.db, current["venue_id"]), fields.get("room", current["room"]))
        rules.require_room_seats(room, current["capacity"])
        rules.require_future_unless_operator(actor, fields["starts_at"], now)
        change = rules.moved(current, room, fields)
        if not rules.changes_anything(current, change):
            return public_session(current)

        def move(tx):
            latest = rules.require_scheduled(store.session_in(tx, session_id))
            session = store.move_session(tx, latest, change, utcnow())
            tx.emit("session_rescheduled", schemas.rescheduled_payload(session, latest))
            return session

        return public_session(self.db.transaction(move))

    @rpc
    def change_capacity(self, actor, session_id, data):
        """Set how many officials a session seats, at most what its room seats (the operator, or the
        session's partner). Returns the session. 422 `capacity_exceeds_room` / `session_cancelled`.
        What happens to seats already taken is registration's to decide: it hears
        session_capacity_changed."""
        current = store.session(self.db, session_id)
        auth.require_operator_or_partner(actor, current["partner_id"])
        fields = validated(schemas.CapacityIn(), data)
        rules.require_changeable(actor, current, utcnow())
        room = rules.room_of(store.venue(self.db, current["venue_id"]), current["room"])
        rules.require_room_seats(room, fields["capacity"])
        if fields["capacity"] == current["capacity"]:
            return public_session(current)

        def resize(tx):
            latest = rules.require_scheduled(store.session_in(tx, session_id))
            session = store.resize_session(tx, latest, fields["capacity"], utcnow())
            tx.emit("session_capacity_changed", schemas.capacity_changed_payload(session, latest))
            return session

        return public_session(self.db.transaction(resize))

    @rpc
    def cancel_session(self, actor, session_id, data):
        """Cancel a session with a reason (the operator, or the session's partner); its room and
        trainer are free again. Returns the session; cancelling a cancelled session changes nothing.
        422 `in_the_past` for a partner once the session has started."""
        current = store.session(self.db, session_id)
        auth.require_operator_or_partner(actor, current["partner_id"])
        fields = validated(schemas.CancelIn(), data)
        if current["status"] == "cancelled":
            return public_session(current)
        rules.require_future_unless_operator(actor, current["starts_at"], utcnow())
        self.db.transaction(lambda tx: store.cancel_session(tx, session_id, fields["reason"]))
        return public_session(store.session(self.db, session_id))

    @rpc
    def get_session(self, actor, session_id):
        """A session (any operator or partner token), with the `calendar_url` of its feed for the
        operator and the partners that deliver or host it (null for others). 404 for an unknown id."""
        if auth.coordinator_units(actor) is None:
            rules.require_reader(actor)  # who asks, before whether the id exists
        session = store.session(self.db, session_id)
        rules.require_open_to(actor, session)
        return dict(public_session(session), calendar_url=self._calendar_url(actor, "session", session))

    @rpc
    def list_sessions(self, actor, query):
        """The programme calendar, by start time: {"items", "next_cursor"}. Filters: `month`
        (YYYY-MM in Ho Chi Minh City time: sessions taking place in it), `unit` (sessions its officials
        may attend: those naming it and those open to every unit), `partner_id`, `venue_id`, `status`;
        paged with `limit` and `cursor`. A partner sees the sessions it delivers or hosts; a unit
        coordinator those open to its units (`unit` one of them, else 403 `unit_not_yours`)."""
        filters = validated(schemas.SessionQuery(), query)
        open_to = rules.coordinator_open_to(actor, filters.get("unit"))
        seen_by = rules.whose_sessions(actor) if open_to is None else None
        during = rules.month_span(filters["month"]) if "month" in filters else None
        return listed(store.session_page(self.db, seen_by, filters, during, open_to), public_session)

    # -- calendars (ICS text) and their feeds -----------------------------------------------------------

    @rpc
    def session_calendar(self, actor, session_id, query=None):
        """One session as an iCalendar file: for its feed token (`?token=`), or any operator or
        partner token. 401 for a token that is not this feed's; 404 for an unknown id."""
        self._open_feed(actor, "session", session_id, query, rules.require_reader)
        session = store.session(self.db, session_id)
        return calendars.calendar(calendars.session_uid(session), session["title"], [session])

    @rpc
    def venue_calendar(self, actor, venue_id, query=None):
        """The feed of a venue's sessions, cancelled ones marked so: every session there for its feed
        token (`?token=`), else those the caller sees. 401 for a token that is not this feed's; 404 for
        an unknown venue."""
        by_token = self._open_feed(actor, "venue", venue_id, query, rules.require_reader)
        seen_by = None if by_token else rules.whose_sessions(actor)
        venue = store.venue(self.db, venue_id)
        sessions = store.venue_sessions(self.db, venue_id, seen_by)
        return calendars.calendar("{}@trainops".format(venue_id), "Lớp bồi dưỡng AI — {}".format(venue["name"]),
                                  sessions)

    @rpc
    def partner_calendar(self, actor, partner_id, query=None):
        """The feed of the sessions a partner delivers or hosts: for its feed token (`?token=`), the
        operator or that partner. 401 for a token that is not this feed's."""
        self._open_feed(actor, "partner", partner_id, query,
                        lambda caller: auth.require_operator_or_partner(caller, partner_id, reading=True))
        return calendars.calendar("{}@trainops".format(partner_id),
                                  "Lớp bồi dưỡng AI — đối tác {}".format(partner_id),
                                  store.partner_sessions(self.db, partner_id))

    @rpc
    def calendar_url(self, actor, kind, target_id):
        """The `calendar_url` of a partner's feed (the gateway adds it to GET /partners/{id}, whose
        partner partners has checked): for the operator and that partner, else None."""
        rules.require_reader(actor)
        return self._calendar_url(actor, kind, {"id": target_id})

    @rpc
    def rotate_feed(self, actor, kind, target_id):
        """A new token for a feed (`partner`, `venue` or `session`): {"calendar_url"}; the old URL is
        refused from now on. The operator, or a partner the feed is about (itself, the venue it hosts,
        a session it delivers or hosts); 403 otherwise. 404 for an unknown venue or session (a
        partner's is the gateway's to check)."""
        if kind == "venue":
            target = store.venue(self.db, target_id)
        elif kind == "session":
            target = store.session(self.db, target_id)
        elif kind == "partner":
            target = {"id": target_id}
        else:
            raise not_found("calendar", kind)
        rules.require_feed_holder(actor, kind, target)
        generation = store.rotate_feed(self.db, kind, target_id, utcnow())
        return {"calendar_url": self.feeds.url(kind, target_id, generation)}

    def _calendar_url(self, actor, kind, target):
        if not rules.holds_feed(actor, kind, target):
            return None
        return self.feeds.url(kind, target["id"], store.feed_generation(self.db, kind, target["id"]))

    def _open_feed(self, actor, kind, target_id, query, check_caller):
        """True when the feed is opened by its own token (`?token=`; 401 for any other token), False
        when by the caller's, once `check_caller(actor)` let it. Then 422 for another parameter."""
        query = dict(query or {})
        token = query.get("token")
        if token is None:
            check_caller(actor)
        elif not self.feeds.opens(kind, target_id, store.feed_generation(self.db, kind, target_id), token):
            raise rules.not_this_feed()
        validated(schemas.FeedQuery(), query)
        return token is not None

    @rpc
    def api_schemas(self):
        """The request bodies and list queries this service accepts, for the gateway's OpenAPI document."""
        return describe(schemas.BODIES, schemas.QUERIES)
