"""Registration's rules, as plain functions: who may register, who gets a seat and who is promoted,
quotas per unit, what a merge of units does to sessions, cancellations, check-ins and completion,
the keys and tokens derived from ids, and the folded text officials are searched by. No I/O: the
caller reads and writes, and passes the time in."""
import hashlib
import re
import secrets
import unicodedata
from datetime import timedelta

from backbone import auth
from backbone.clock import shown
from backbone.errors import DomainError, forbidden, invalid, rule_broken

# The statuses that hold a seat or a waitlist place.
LIVE = ("confirmed", "waitlisted")
# Check-in opens this long before a session starts (people arrive early) and closes at its end.
CHECKIN_OPENS_BEFORE = timedelta(hours=1)
# A unit without a quota on a session may take every seat.
NO_QUOTA = 10 ** 9


# -- ids, keys and tokens --------------------------------------------------------------------------------

def registration_id(session_id, official_id):
    """The same for the same official and session: a second registration is a duplicate _id."""
    digest = hashlib.sha256("{}\0{}".format(session_id, official_id).encode()).hexdigest()[:20]
    return "registration-" + digest


def qr_token(registration_id, secret):
    """`<id part>.<secret>`: the check-in finds the registration by _id and compares the secret."""
    return "{}.{}".format(registration_id.split("-", 1)[1], secret)


def registration_of_token(token):
    """The id of the registration a QR token was issued for."""
    return "registration-" + token.split(".", 1)[0][:40]


def is_legacy_token(token):
    """A token issued before tokens carried their registration's id (dev data) has no dot: it is
    looked up by itself."""
    return "." not in token


def require_token(registration, session_id, token):
    """`token` must open `registration` (the one it names, or None) for a check-in at `session_id`,
    compared in constant time; 404 otherwise, whatever the reason, so tokens cannot be probed."""
    # A token forgotten after its session (privacy.forget_qr_tokens) opens nothing.
    if registration is None or registration["session_id"] != session_id or not secrets.compare_digest(
            (registration.get("qr_token") or "").encode(), token.encode()):
        raise DomainError("not_found", "No registration with this QR token for this session.", {}, 404)
    return registration


def attendance_id(registration_id, part):
    """One check-in per registration and part: the same check-in twice is the same key."""
    return "{}:{}".format(registration_id, part)


def unit_key(code):
    """A unit code as a key inside the session document (codes may hold dots)."""
    return code.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def unit_code_of(key):
    """The unit code a key of the session document stands for (`unit_key` undone)."""
    return key.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


# -- search ------------------------------------------------------------------------------------------------

def fold(text):
    """Accent- and case-free form for search: "Nguyễn Thị Ánh" → "nguyen thi anh" (đ → d)."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def search_text(official):
    """What an official is found by: name, email and phone, folded."""
    return fold(" ".join([official["full_name"], official["email"], official["phone"]]))


WORD_BREAKS = re.compile(r"[ .@_+-]+")
# The words most Vietnamese names share: a search leads with another word of the query when it has
# one, since the index range of "nguyen" or "thi" holds a third of the city.
COMMON_NAME_WORDS = frozenset(
    "nguyen tran le pham hoang huynh phan vu vo dang bui do ho ngo duong ly thi van huu duc ngoc minh "
    "thanh quoc kim thu xuan gia bao phuong anh hong cong tan".split())
# What marks a query (or a word) as an email or a phone number, whole or in part, rather than a name.
CONTACT_MARKS = re.compile(r"[0-9@._+-]")
# Between a name key's whole words and the word the query's last word begins (`search_keys`): no
# folded word holds a tab (`fold` splits at whitespace), so a key's parts cannot be mistaken.
KEY_MARK = "\t"


def search_words(text):
    """The distinct words of a folded search text, as `words_query` matches their starts."""
    return sorted({word for word in WORD_BREAKS.split(text) if word})


def name_words(full_name):
    """The distinct words of a name, folded, that a name query matches. A word with a digit or one of
    @ . _ + - is left out: a query holding one is a contact's (`is_name_query`), never a name's."""
    return sorted({word for word in fold(full_name).split() if not CONTACT_MARKS.search(word)})


def search_keys(words):
    """The keys a name query reads (`name_key_range`) for a name's `name_words`: each word after one,
    then two, of the other words (sorted, a space between, `KEY_MARK` before the word). "nguyen van
    an" has nine: "nguyen\tan", "van\tan", "nguyen van\tan", "an\tnguyen", ... A name of n words has
    n²(n-1)/2: 9 for three words, 24 for four, 50 for five."""
    keys = []
    for word in words:
        others = [w for w in words if w != word]
        keys += [other + KEY_MARK + word for other in others]
        keys += ["{} {}{}{}".format(a, b, KEY_MARK, word) for i, a in enumerate(others) for b in others[i + 1:]]
    return sorted(keys)


def search_fields(official):
    """What an official is found by, stored with them: the folded text of name, email and phone and
    its words (one-word and contact queries), the name's words and their keys (name queries)."""
    text = search_text(official)
    names = name_words(official["full_name"])
    return {"search": text, "search_words": search_words(text), "name_words": names, "search_keys": search_keys(names)}


def query_words(q):
    """The words of a search query, folded, in the order they were typed."""
    return [word for word in WORD_BREAKS.split(fold(q or "")) if word]


def is_name_query(q):
    """A query of several words, none with a digit or one of @ . _ + -, is a name: every word but the
    last is a whole word of the name, and the last begins another (`name_key_range`). Any other
    query (one word; an email or a phone number, whole or in part) matches the starts of the words of
    name, email and phone, each query word on its own (`leading_word`)."""
    return len(query_words(q)) > 1 and not CONTACT_MARKS.search(fold(q))


def name_key_range(words):
    """For a name query's words (in typed order): the range of `search_keys` that holds exactly the
    officials whose name has the whole words and a word the last one begins, and the whole words
    left to check in `name_words`. The key takes the two least common-looking whole words (a third
    and more are checked on what the range found): "nguyen van an" reads the keys from
    "nguyen van\tan" to "nguyen van\tao", which holds Nguyễn Văn An and Nguyễn Văn Anh, nobody else."""
    whole = sorted(set(words[:-1]), key=lambda w: (w in COMMON_NAME_WORDS, -len(w), w))
    return prefix_range(" ".join(sorted(whole[:2])) + KEY_MARK + words[-1]), sorted(whole[2:])


def leading_word(words):
    """The word of a query (in typed order) whose index range is likely the narrowest: the longest
    uncommon one, else the last (a Vietnamese name ends with the given name)."""
    uncommon = [w for w in words if w not in COMMON_NAME_WORDS]
    return max(uncommon, key=len) if uncommon else words[-1]


def prefix_range(word):
    """Index bounds of the words that begin with `word`: [word, the next string of its length)."""
    return {"$gte": word, "$lt": word[:-1] + chr(ord(word[-1]) + 1)}


# -- units and officials -------------------------------------------------------------------------------------

def new_unit(fields, now):
    """A unit as created: active, its code its key."""
    return dict(fields, _id=fields["code"], status="active", created_at=now)


def require_known_parent(parent_code, parent):
    """A unit's parent must exist (422 `unknown_unit`); none is fine."""
    if parent_code and parent is None:
        raise rule_broken("unknown_unit", "No unit {}.".format(parent_code), {"parent_code": ["Unknown unit."]})


def unit_search_text(unit):
    """What `GET /units?q=` matches: the unit's name and code, folded."""
    return fold("{} {}".format(unit["name"], unit["code"]))


def is_dissolved(unit):
    # `merged` is how units merged before reorganisations existed were marked.
    return unit.get("status") in ("dissolved", "merged")


def successors_of(unit):
    return unit.get("successors") or ([unit["merged_into"]] if unit.get("merged_into") else [])


def unit_problem(unit):
    """Why officials cannot be placed in `unit` (None when they can): unknown, or dissolved."""
    if unit is None:
        return "Unknown unit."
    if is_dissolved(unit):
        return "Dissolved; it became {}.".format(", ".join(successors_of(unit)) or "nothing")
    return None


def require_active_unit(unit, code, field="unit_code"):
    """422 `unknown_unit` or `unit_dissolved` unless `unit` (found for `code`) takes officials."""
    problem = unit_problem(unit)
    if problem is None:
        return unit
    if unit is None:
        raise rule_broken("unknown_unit", "No unit {}.".format(code), {field: [problem]})
    raise rule_broken("unit_dissolved", "Unit {}: {}".format(code, problem), {field: [problem]})


def new_official(fields, official_id, now):
    """An official as stored: email in lower case (it is compared that way), with its search text."""
    official = dict(fields, email=fields["email"].lower(), id=official_id, _id=official_id, created_at=now)
    official.update(search_fields(official))
    # Coverage's read model counts it at its next fold (store.refresh_stale_coverage).
    official["coverage_stale"] = 1
    return official


def current_codes(codes, successors):
    """`codes` with every dissolved unit replaced by what it became, transitively, without repeats.
    `successors` maps a dissolved unit's code to its successors' codes. A cycle stops where it closes,
    so an eligible list never ends up empty (empty means every unit)."""
    def resolve(code, path):
        if code in path or not successors.get(code):
            return [code]
        return [found for successor in successors[code] for found in resolve(successor, path | {code})]

    return list(dict.fromkeys(found for code in codes for found in resolve(code, frozenset())))


# -- coordinators -------------------------------------------------------------------------------------------

# What a coordinator's API token starts with: the gateway sends it here to be authenticated, and
# nowhere else.
COORDINATOR_TOKEN_PREFIX = "co_"


def coordinator_token():
    """(raw token, SHA-256 digest): the raw one is shown once, only the digest is stored."""
    token = COORDINATOR_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_coordinator(fields, unit_codes, coordinator_id, digest, created_by, now):
    """A coordinator as stored: its units as given (their successors are followed when its token is
    authenticated), the digest of its token, who created it."""
    return {"_id": coordinator_id, "id": coordinator_id, "full_name": fields["full_name"],
            "email": fields["email"].lower(), "phone": fields.get("phone"), "unit_codes": unit_codes,
            "token_digest": digest, "status": "active", "created_at": now, "created_by": created_by}


def coordinator_unit_problems(codes, found):
    """{index: [message]} for each of `codes` that is no unit (`found`: {code: unit}); a coordinator
    of a dissolved unit is no coordinator of anything."""
    problems = {}
    for index, code in enumerate(codes):
        problem = unit_problem(found.get(code))
        if problem:
            problems[str(index)] = ["{}: {}".format(code, problem)]
    return problems


# -- who may read and register ------------------------------------------------------------------------------

def not_yours(code, field="unit_code"):
    """403 `unit_not_yours`: a coordinator asked about a unit (or its officials) it does not act for."""
    return DomainError("unit_not_yours", "Unit {} is not one of this coordinator's units.".format(code),
                       {field: ["Not a unit of this coordinator."]}, 403)


def units_with_successors(codes, successors):
    """The units a coordinator acts for: its own `codes` and, transitively, every unit they became
    through merges and splits (`successors`: {dissolved code: successors' codes}). The dissolved ones
    stay in: registrations made under them still name them (`unit_code_then`)."""
    out, todo = [], list(codes)
    while todo:
        code = todo.pop(0)
        if code in out:
            continue  # a cycle, or a unit reached twice
        out.append(code)
        todo.extend(successors.get(code) or ())
    return out


def units_in_scope(actor):
    """The unit codes `actor` sees (a set), or None for operators (every unit). 401 without a token;
    403 for anyone else (partners, officials)."""
    units = auth.coordinator_units(actor)
    if units is not None:
        return units
    auth.require_operator(actor, reading=True)
    return None


def require_acts_for(actor, code, field="unit_code", reading=False):
    """`actor` may act for unit `code`: an operator (a viewer when `reading`), or a coordinator of
    that unit (403 `unit_not_yours` for another unit). 401 without a token; 403 for anyone else."""
    units = auth.coordinator_units(actor)
    if units is None:
        auth.require_operator(actor, reading=reading)
    elif code not in units:
        raise not_yours(code, field)


def require_session_reader(actor, session, reading=False):
    """The operator, or the partner that delivers the session (401 / 403 otherwise); for a read
    (`reading=True`) a viewer too."""
    auth.require_operator_or_partner(actor, session.get("partner_id"), reading=reading)


def sees_personal_data(actor):
    """Whether `actor` sees officials' contacts and QR tokens: the operator only. The partner that
    delivers a session sees who registered (name, unit, audience group), their status and attendance,
    never an email, a phone or a QR token (Decree 13/2023/ND-CP: only what the purpose needs; with the
    tokens it could check in people who never came). A viewer at the centre reads what operators read."""
    return auth.is_staff(actor)


def require_registrable(session, official, after_cutoff, now):
    """An official may register for a scheduled session before its cut-off (the operator may record
    one after it, when asked explicitly), if their audience group and unit are invited. 422
    `unknown_official` / `registration_closed` / `not_eligible`."""
    if official is None:
        raise rule_broken("unknown_official", "No such official.", {"official_id": ["Unknown official."]})
    closes_at = session.get("registration_closes_at")
    late = closes_at is not None and now > closes_at
    if session["status"] != "scheduled" or (late and not after_cutoff):
        raise rule_broken("registration_closed", "Registration for this session is closed.")
    if official["audience_group"] not in session["audience_groups"] or (
            session["eligible_units"] and official["unit_code"] not in session["eligible_units"]):
        raise rule_broken("not_eligible", "This official's unit or audience group is not invited.",
                          {"official_id": ["Not eligible for this session."]})


# -- seats, quotas and the waitlist ---------------------------------------------------------------------------

def seat_free(capacity, seats_taken, unit_taken, quota=None):
    """A seat is free for an official of a unit while the session has one and the unit has taken
    fewer than its quota (None: no quota)."""
    return seats_taken < capacity and unit_taken < (NO_QUOTA if quota is None else quota)


def has_open_seat(session):
    """A scheduled session with fewer seats taken than it has."""
    return session["status"] == "scheduled" and session["seats_taken"] < session["capacity"]


def full_units(session):
    """The units whose quota on `session` is used up (their waitlisted officials must wait)."""
    quotas, taken = session.get("quotas") or {}, session.get("unit_seats") or {}
    return [unit_code_of(key) for key, seats in quotas.items() if taken.get(key, 0) >= seats]


def promoted_next(session, waitlisted):
    """Who takes a free seat: of the `waitlisted` registrations, the lowest position whose unit is
    under its quota; None when nobody fits or the session has no open seat."""
    if not has_open_seat(session):
        return None
    blocked = set(full_units(session))
    fits = [r for r in waitlisted if r["unit_code"] not in blocked]
    return min(fits, key=lambda r: r["waitlist_position"], default=None)


def require_quota_unit(session, code, unit):
    """A quota is set for an active unit invited to the session. 422 `unknown_unit` / `unit_merged`
    / `invalid_fields`."""
    require_active_unit(unit, code, "quotas")
    if session["eligible_units"] and code not in session["eligible_units"]:
        raise invalid({"quotas": {code: ["Not an eligible unit of this session."]}})


def over_capacity(seats_taken, capacity):
    """How many confirmed officials a session has beyond its capacity: nobody is dropped, an
    operator decides."""
    return max(0, seats_taken - capacity)


# -- cancellation ---------------------------------------------------------------------------------------------

def must_cancel(registration):
    """True for a live registration; False for one already cancelled (cancelling twice changes
    nothing); 422 `registration_completed` once the course is completed."""
    if registration["status"] == "cancelled":
        return False
    if registration["status"] not in LIVE:
        raise rule_broken("registration_completed", "A completed course cannot be cancelled.")
    return True


def cancellation(status, reason, cause, now):
    """The change that cancels a registration whose status was `status`, and says who or what ended it."""
    return {"status": "cancelled", "cancelled_at": now, "cancel_reason": reason, "cancel_cause": cause,
            "status_before_cancel": status}


# -- check-in and completion ------------------------------------------------------------------------------------

def parts_of(session):
    """A session without parts has one part: itself."""
    return session.get("parts") or [{"starts_at": session["starts_at"], "ends_at": session["ends_at"]}]


def checkin_window(session):
    """(opens, closes): check-in runs at the door, from an hour before the session starts to its end."""
    return session["starts_at"] - CHECKIN_OPENS_BEFORE, session["ends_at"]


def require_checkin_open(session, now, actor, after_session=False):
    """A check-in is taken at the door during `checkin_window`: 422 `checkin_not_open` before it,
    `checkin_closed` after it. Once the session is over only the operator records attendance (from
    the sign-in sheet; the 2025 classes held before this system too), and only when it says so with
    `after_session` (403 for anyone else who does)."""
    if after_session and not auth.is_operator(actor):
        raise forbidden("Only the operator records attendance after the session.")
    opens, closes = checkin_window(session)
    if now < opens:
        raise rule_broken("checkin_not_open", "Check-in opens at {}, an hour before the session starts.".format(
            shown(opens)), {"qr_token": ["Check-in has not opened."]})
    if now > closes and not after_session:
        raise rule_broken(
            "checkin_closed", "Check-in closed at {}, when the session ended; the operator records attendance "
            "afterwards with after_session: true.".format(shown(closes)), {"qr_token": ["Check-in has closed."]})


def require_confirmed(registration):
    """Only a confirmed (or already completed) registration is checked in: 422 `not_confirmed`."""
    if registration["status"] not in ("confirmed", "completed"):
        raise rule_broken("not_confirmed", "This registration is {}, not confirmed.".format(registration["status"]),
                          {"qr_token": ["Not a confirmed registration."]})


def part_now(parts, now):
    """The 1-based number of the part running at `now`, else the first."""
    for number, part in enumerate(parts, start=1):
        if part["starts_at"] <= now < part["ends_at"]:
            return number
    return 1


def part_to_check_in(parts, asked, now):
    """The part a check-in records: the one asked for, else the one running now. 422 `unknown_part`
    beyond the session's parts."""
    part = asked or part_now(parts, now)
    if part > len(parts):
        raise rule_broken("unknown_part", "The session has {} part(s).".format(len(parts)),
                          {"part": ["At most {}.".format(len(parts))]})
    return part


def completes_course(status, attended_parts, parts):
    """A confirmed registration whose official attended every part completes the course."""
    return status == "confirmed" and set(attended_parts or ()) >= set(range(1, len(parts) + 1))


def attended_at(parts, part, now):
    """When the attendance of `part` (1-based) took place: now, or, for a part already over (the
    operator recording a sign-in sheet), when that part began."""
    held = parts[part - 1]
    return now if now < held["ends_at"] else held["starts_at"]


# -- officials acting for themselves (self-service at /me) -----------------------------------------------------

def require_registrant(actor, official_id):
    """Who may register `official_id`: an operator, or that official themself (an official registers
    nobody else: 403)."""
    own = auth.official_id_of(actor)
    if own is not None:
        if own != official_id:
            raise forbidden("An official registers only themself.")
        return
    auth.require_operator(actor)


def require_own_registration(actor, registration, reading=False):
    """An operator (for a read, a viewer too), or the official the registration is for. Another
    official's registration is answered as unknown (404): its id says nothing to someone who does not
    hold it."""
    own = auth.official_id_of(actor)
    if own is not None:
        if registration.get("official_id") != own:
            raise DomainError("not_found", "No registration with id {}.".format(registration["_id"]), {}, 404)
        return
    auth.require_operator(actor, reading=reading)


def open_to(session, official, now):
    """Whether an official could register for this session now: scheduled, not started, before its
    cut-off, their audience group and unit invited (`require_registrable` says why not, this only
    whether)."""
    closes_at = session.get("registration_closes_at")
    return (session.get("status") == "scheduled" and session["starts_at"] > now
            and (closes_at is None or now <= closes_at)
            and official["audience_group"] in session.get("audience_groups", [])
            and (not session.get("eligible_units") or official["unit_code"] in session["eligible_units"]))


def require_revocable(certificate):
    """A certificate is revoked once; 409 `certificate_revoked` the second time."""
    if certificate.get("revoked_at"):
        raise DomainError("certificate_revoked", "This certificate was revoked already.", {}, 409)
