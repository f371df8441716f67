"""Scheduling's rules: plain functions, no I/O; the time is passed in (`now`).

- A session is booked for a published offering only, within the offering's dates (whole local days),
  ending before the offering's agreement ended, and for audiences the offering is for.
- Neither a room nor a trainer is ever in two scheduled sessions whose times overlap; one session may
  start as another ends. A trainer is one person however the name is spaced, cased or accented.
- A session seats at most what its room seats; its parts lie within it and do not overlap.
- Partners plan ahead: only the operator schedules, changes or cancels a session that has started.
- Any operator or partner token reads sessions and venues; in lists and feeds the operator sees every
  session, a partner those it delivers or hosts.
- A withdrawn offering, or one whose agreement expired or was terminated, loses its sessions still to
  come; the past stays as it was. An offering partners moved onto another agreement (a renewal) keeps
  them: the end of an agreement names the offerings it still carried.
- Partner and operator are warned 60, 30 and 7 local days before an agreement's last day, once each
  per end (an amended end is warned of again); a warning missed while the service was down goes out
  when it is back, before the end, and only the most urgent one due.
- A calendar feed (a partner's, a venue's, a session's) opens with its own read-only token, which
  opens no other feed; the operator and the partners the feed is about (the partner itself, the
  venue's host, the session's partner and host) hold it and may rotate it, which ends the old one.
"""
import base64
import hashlib
import hmac
import unicodedata
from datetime import date, timedelta, timezone
from urllib.parse import quote, urlencode

from backbone import auth
from backbone.clock import local_date, local_midnight, shown
from backbone.errors import DomainError, conflict, forbidden, invalid, rule_broken
from contracts.common import require_current_audiences  # noqa: F401  (rules of sessions)


# -- who asks -----------------------------------------------------------------------------------------

def require_reader(actor):
    """Any operator or partner token may read sessions, venues and calendars; no token is a 401."""
    auth.require_operator_or_partner(actor, auth.partner_id_of(actor), reading=True)


def coordinator_open_to(actor, unit=None):
    """For a unit coordinator, the units whose sessions it sees (sessions naming one of them, and
    those open to every unit): `unit` when asked for one of its own (403 `unit_not_yours` for
    another), else all of its units. None for anyone else (`whose_sessions` decides)."""
    units = auth.coordinator_units(actor)
    if units is None:
        return None
    if unit is not None:
        if unit not in units:
            raise DomainError("unit_not_yours", "Unit {} is not one of this coordinator's units.".format(unit),
                              {"unit": ["Not a unit of this coordinator."]}, 403)
        return [unit]
    return sorted(units)


def require_open_to(actor, session):
    """A coordinator reads the sessions open to its units only (403 `unit_not_yours`); anyone else
    as `require_reader` says."""
    units = auth.coordinator_units(actor)
    if units is None:
        return require_reader(actor)
    if session["eligible_units"] and not units & set(session["eligible_units"]):
        raise DomainError("unit_not_yours", "This session is open to none of this coordinator's units.", {}, 403)


def whose_sessions(actor):
    """Whose sessions `actor` sees in lists and feeds: None for the operator (everyone's), otherwise
    the partner's id (the sessions it delivers or hosts). 401 without a token."""
    require_reader(actor)
    return auth.partner_id_of(actor)


def require_future_unless_operator(actor, moment, now):
    """Partners plan ahead; only the operator lays out or corrects sessions that have started at
    `moment` (the 2025 programme began before this system did). 422 `in_the_past`."""
    if not auth.is_operator(actor) and moment <= now:
        raise rule_broken("in_the_past", "Only the operator may schedule or change a session that has started.",
                          {"starts_at": ["In the past."]})


def require_scheduled(session):
    """The session, unless it was cancelled (422 `session_cancelled`: a cancelled session stays so)."""
    if session["status"] != "scheduled":
        raise rule_broken("session_cancelled", "The session was cancelled.")
    return session


def require_changeable(actor, session, now):
    """`actor` may change `session`: the operator, or the session's partner (403 otherwise) while the
    session is scheduled (422 `session_cancelled`) and, for a partner, still to come (422
    `in_the_past`)."""
    auth.require_operator_or_partner(actor, session["partner_id"])
    require_scheduled(session)
    require_future_unless_operator(actor, session["starts_at"], now)


# -- calendar feeds --------------------------------------------------------------------------------------

# Where each kind of feed is served, by the id of what it is about.
FEED_PATHS = {"partner": "/partners/{}/calendar.ics", "venue": "/venues/{}/calendar.ics",
              "session": "/sessions/{}/calendar.ics"}


def feed_token(secret, kind, target_id, generation):
    """`feed_` and 32 characters: an HMAC-SHA256, keyed with FEED_SECRET, of the feed's kind, the id of
    what it is about and the feed's generation. It opens that feed only; rotating the feed (its
    generation + 1) ends it at once; nothing secret is stored (the generation is no secret)."""
    message = "\0".join(("trainops-feed", kind, target_id, str(generation))).encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()[:24]  # 192 bits
    return auth.FEED_TOKEN_PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")


def feed_token_opens(secret, kind, target_id, generation, token):
    """Whether `token` is the current token of that feed (compared in constant time)."""
    expected = feed_token(secret, kind, target_id, generation)
    return hmac.compare_digest(expected.encode("utf-8"), (token or "").encode("utf-8"))


def feed_url(public_url, kind, target_id, token):
    """The absolute URL a calendar app subscribes to: the feed's path with its token."""
    path = FEED_PATHS[kind].format(quote(target_id, safe=""))
    return "{}{}?{}".format(public_url.rstrip("/"), path, urlencode({"token": token}))


def holds_feed(actor, kind, target):
    """Whether `actor` holds the feed of `kind` about `target` (`{"id": ...}` for a partner, the venue,
    the session): the operator; a partner for itself, the venue it hosts, a session it delivers or
    hosts. Other readers of a venue or session get no URL: a venue's feed shows every partner's
    sessions there."""
    if auth.is_operator(actor):
        return True
    partner_id = auth.partner_id_of(actor)
    if partner_id is None:
        return False
    if kind == "partner":
        return target["id"] == partner_id
    if kind == "venue":
        return target.get("host_partner_id") == partner_id
    return partner_id in (target.get("partner_id"), target.get("host_partner_id"))


def require_feed_holder(actor, kind, target):
    """401 without a token; 403 for a caller who does not hold the feed (`holds_feed`)."""
    require_reader(actor)
    if not holds_feed(actor, kind, target):
        raise forbidden("Only the operator and the partners this calendar is about may rotate its URL.")


def not_this_feed():
    """The 401 for a `?token=` that is not this feed's current token, whatever it is."""
    return DomainError("unauthenticated",
                       "This calendar URL is not valid (any more): take the calendar_url of the partner, venue or "
                       "session again.", {}, 401)


# -- rooms and trainers --------------------------------------------------------------------------------

def room_of(venue, name):
    """The venue's room called `name`; 422 `unknown_room` if it has none."""
    room = next((r for r in venue["rooms"] if r["name"] == name), None)
    if room is None:
        raise rule_broken("unknown_room", "{} has no room {}.".format(venue["name"], name),
                          {"room": ["Unknown room."]})
    return room


def require_room_seats(room, capacity):
    """A session seats at most what its room seats: 422 `capacity_exceeds_room` otherwise."""
    if capacity > room["capacity"]:
        raise rule_broken("capacity_exceeds_room", "Room {} seats {}.".format(room["name"], room["capacity"]),
                          {"capacity": ["At most {}.".format(room["capacity"])]})


def room_key(venue_id, room):
    """One room of one venue, as bookings claim it."""
    return "{}/{}".format(venue_id, room)


def trainer_key(name):
    """One trainer however the name is spaced, cased or its Vietnamese accents encoded (composed or
    not), so a double booking is not missed by a typing difference."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def double_booking(field, session, other):
    """The 409 for `session` wanting the `field` ("room" or "trainer") that `other` holds at an
    overlapping time, naming the other session."""
    booked = "Booked by session {} ({}), {} to {}.".format(
        other["_id"], other["title"], shown(other["starts_at"]), shown(other["ends_at"]))
    return conflict("{}_conflict".format(field), "The {} {} is taken. {}".format(field, session[field], booked),
                    {field: [booked], "other_session_id": [other["_id"]]})


# -- offerings and agreements ---------------------------------------------------------------------------

def not_published():
    """The refusal for an offering that is unknown here or not (any more) published."""
    return rule_broken("offering_not_published", "The offering is not published.",
                       {"offering_id": ["Unknown or not published."]})


def offering_refusal(offering, session):
    """Why `offering` cannot have `session`, as the error to raise, or None. The offering runs from
    the start of its first local day to the end of its last; its agreement covers sessions that end
    by `covered_until`."""
    if offering is None or offering["status"] != "published":
        return not_published()
    opens = local_midnight(date.fromisoformat(offering["starts_from"]))
    closes = local_midnight(date.fromisoformat(offering["ends_by"]) + timedelta(days=1))
    if session["starts_at"] < opens or session["ends_at"] > closes:
        return rule_broken(
            "outside_offering_dates",
            "The offering runs from {} to {}.".format(offering["starts_from"], offering["ends_by"]),
            {"starts_at": ["Outside the offering's dates."]})
    covered_until = offering.get("covered_until")
    if covered_until and session["ends_at"] > covered_until:
        return rule_broken(
            "no_active_agreement",
            "The agreement covering this offering ended at {}.".format(shown(covered_until)),
            {"starts_at": ["After the offering's agreement ended."]})
    if not set(session["audience_groups"]) <= set(offering["audience_groups"]):
        return rule_broken(
            "audience_not_offered", "The offering is for {}.".format(", ".join(offering["audience_groups"])),
            {"audience_groups": ["Not an audience of the offering."]})
    return None


def withdrawal_is_final(status):
    """A withdrawn offering stays withdrawn: a late published or updated event must not revive it."""
    return status == "withdrawn"


def agreement_ends_at(valid_until, terminated_on=None):
    """The instant (UTC) an agreement stops covering anything: the local midnight after its last valid
    day or, when it was terminated, the start of its termination day if that comes first (partners'
    rule: a terminated agreement is over from the start of its termination day)."""
    first_day_without = valid_until + timedelta(days=1)
    if terminated_on is not None:
        first_day_without = min(terminated_on, first_day_without)
    return local_midnight(first_day_without)


def first_lost_start(ends_at, now):
    """The earliest start of the sessions an agreement ending at `ends_at` cancels: those from its
    end on, and only those still to come (the past stays as it was)."""
    return max(now, ends_at)


def last_day(valid_until, terminated_on=None):
    """The last local day an agreement covers: its valid_until, or the day before its termination day."""
    if terminated_on is not None:
        return min(valid_until, terminated_on - timedelta(days=1))
    return valid_until


# Days before an agreement's last day that partner and operator are warned, least urgent first.
WARNING_DAYS = (60, 30, 7)


def warning_due(last, today, warned):
    """The warning due on the local day `today` for an agreement whose last day is `last`, as its
    threshold (60, 30 or 7), or None. `warned`: the thresholds already warned of for this last day.
    The most urgent threshold reached is the one due: a day missed (the service was down) is caught
    up the next day, but never two warnings at once; after the last day, nothing."""
    left = (last - today).days
    reached = [days for days in WARNING_DAYS if 0 <= left <= days]
    if not reached:
        return None
    due = min(reached)
    return None if due in warned else due


def renewal_of(agreement, others):
    """Of the partner's `others` (our copies, dates as ISO days), the agreement that takes over from
    `agreement` without a gap: not ended, starting by the day after its last day and running past
    it (the latest-running if several), or None."""
    after = (date.fromisoformat(agreement["last_day"]) + timedelta(days=1)).isoformat()
    following = [a for a in others if a["_id"] != agreement["_id"] and not a.get("ended")
                 and a.get("valid_from") and a["valid_from"] <= after and a["last_day"] > agreement["last_day"]]
    return max(following, key=lambda a: a["last_day"], default=None)


def cancel_reason(what, detail=None):
    """`Offering withdrawn: Đổi chương trình`, or `Offering withdrawn.` when no reason was given."""
    return what + (": " + detail if detail else ".")


# -- times -------------------------------------------------------------------------------------------

def month_span(month):
    """`2025-03` → the instants (UTC) that month begins and ends in Ho Chi Minh City."""
    year, number = (int(part) for part in month.split("-"))
    return local_midnight(date(year, number, 1)), local_midnight(date(year + number // 12, number % 12 + 1, 1))


def months_of(starts_at, ends_at):
    """The months (`2025-03`, Ho Chi Minh City time) a session takes place in, first to last: what
    the calendar of a month finds it by (an index of them, not a range over every earlier session)."""
    first, last = local_date(starts_at), local_date(ends_at - timedelta(microseconds=1))
    out, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        out.append("{:04d}-{:02d}".format(year, month))
        year, month = year + month // 12, month % 12 + 1
    return out


def calendar_keys(months, eligible_units):
    """`month|unit` for every month the session takes place in and every unit it is open to
    (`month|*` when open to every unit): a unit's month is then an index lookup of two keys, where
    SecantusDB scans the whole collection for the `$or` of "names the unit or names none"."""
    return [open_to_key(month, unit) for month in months for unit in (eligible_units or [None])]


def calendar_fields(starts_at, ends_at, eligible_units):
    """What the calendars find a session by: its months and its calendar keys."""
    months = months_of(starts_at, ends_at)
    return {"months": months, "calendar_keys": calendar_keys(months, eligible_units)}


def open_to_key(month, unit=None):
    """The calendar key of `month` for `unit`, or for the sessions open to every unit (None)."""
    return "{}|{}".format(month, unit or "*")


def in_utc(moment):
    """An aware instant in UTC, as sessions are stored."""
    return moment.astimezone(timezone.utc)


def utc_parts(parts):
    """A session's parts with their instants in UTC."""
    return [{"starts_at": in_utc(part["starts_at"]), "ends_at": in_utc(part["ends_at"])} for part in parts]


def parts_problem(starts_at, ends_at, parts):
    """Why `parts` do not fit a session from `starts_at` to `ends_at`, or None. Each part lies within
    the session and no two overlap (one may end as the next begins)."""
    ordered = sorted(parts, key=lambda part: part["starts_at"])
    if any(part["starts_at"] < starts_at or part["ends_at"] > ends_at for part in ordered):
        return "Each part must lie within starts_at and ends_at."
    if any(later["starts_at"] < earlier["ends_at"] for earlier, later in zip(ordered, ordered[1:])):
        return "Parts must not overlap."
    return None


# -- sessions -----------------------------------------------------------------------------------------

def new_session(session_id, fields, offering, venue, room, now):
    """The session a booking of `fields` makes: the offering's title and partner, the venue's place
    and host, its times in UTC and a registration cut-off at its start unless one is given."""
    return {
        "_id": session_id, "id": session_id, "offering_id": offering["_id"], "partner_id": offering["partner_id"],
        "host_partner_id": venue["host_partner_id"], "title": offering["title"],
        "venue_id": venue["_id"], "venue_name": venue["name"], "address": venue["address"],
        "room": room["name"], "room_key": room_key(venue["_id"], room["name"]),
        "trainer": fields["trainer"], "trainer_key": trainer_key(fields["trainer"]),
        "starts_at": in_utc(fields["starts_at"]), "ends_at": in_utc(fields["ends_at"]),
        "parts": utc_parts(fields["parts"]),
        **calendar_fields(fields["starts_at"], fields["ends_at"], fields["eligible_units"]),
        "capacity": fields["capacity"], "eligible_units": fields["eligible_units"],
        "audience_groups": fields["audience_groups"],
        "registration_closes_at": in_utc(fields.get("registration_closes_at") or fields["starts_at"]),
        "status": "scheduled", "sequence": 0, "revision": 1, "created_at": now, "updated_at": now,
    }


def moved(session, room, fields):
    """Where and when `session` is after a move to `fields`' times in `room` of its venue. Without new
    `parts` its parts move with its start and must still fit (422 naming `parts` otherwise); without
    a new `registration_closes_at` the cut-off keeps its lead time."""
    starts_at, ends_at = in_utc(fields["starts_at"]), in_utc(fields["ends_at"])
    shift = starts_at - session["starts_at"]
    if "parts" in fields:
        parts = utc_parts(fields["parts"])
    else:
        parts = [{edge: moment + shift for edge, moment in part.items()} for part in session["parts"]]
        problem = parts_problem(starts_at, ends_at, parts)
        if problem:
            raise invalid({"parts": ["The session's parts, moved with it, do not fit: {} Send its new parts."
                                     .format(problem)]})
    closes = fields.get("registration_closes_at")
    return {
        "room": room["name"], "room_key": room_key(session["venue_id"], room["name"]),
        "starts_at": starts_at, "ends_at": ends_at, "parts": parts,
        **calendar_fields(starts_at, ends_at, session.get("eligible_units")),
        "registration_closes_at": in_utc(closes) if closes else session["registration_closes_at"] + shift,
    }


def changes_anything(session, change):
    """Whether `change` differs from `session`: a move to where it already is changes nothing and
    publishes nothing."""
    return any(session[key] != value for key, value in change.items())
