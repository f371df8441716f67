"""Partners: institutions, their cooperation agreements with the city, and the course offerings they post.

Publishes partner_onboarded; agreement_signed, agreement_amended, agreement_terminated and
agreement_expired; offering_published, offering_updated and offering_withdrawn. Reacts to nothing:
the other services learn from it, never the other way round. Its records (partners, agreements,
offerings) are kept by `store.py`; the rules below are functions in `rules.py`.

The rules:
- An agreement is valid on the local calendar days (Asia/Ho_Chi_Minh) from valid_from through
  valid_until, both included: `pending` before, `active` during, `expired` after. Termination ends it
  at once: from its termination day it is `expired`, with `terminated_on` set.
- An ended agreement (expired or terminated) is history: it is neither amended nor terminated; the
  parties sign a new one. Amendments and the termination are kept in the agreement's `history`.
- `agreement_expired` is published once per agreement, by the sweep after the local midnight that
  ends it. A terminated agreement publishes `agreement_terminated` when terminated, and never
  `agreement_expired`. Shortening an agreement publishes `agreement_amended`; if that ends it, the
  next sweep announces the expiry.
- An offering is published (and updated) only under an agreement of its partner that is active today
  and covers the offering's whole window and every one of its audience groups (an agreement whose
  scope names no audience group covers them all); otherwise 422 `no_active_agreement`. The one
  exception is the record of the past: the operator may record an offering whose window ended before
  today under the agreement that covered it (active on the window's last day), as when a new
  installation is given the programme's history.
- An offering lives on the longest-running of its partner's agreements that carry it (not ended,
  spanning its window and audiences). So a renewal (`POST /partners/{id}/agreements`) continues the
  offerings it carries, with no re-posting, and an offering outlives an agreement that is shortened,
  terminated or expires when another of its partner's agreements carries it: each move is an
  `offering_updated` with the new agreement_id, written with the change that caused it, and the old
  agreement's history names the offerings it handed on. `agreement_expired` and
  `agreement_terminated` list the offerings the agreement still carried when it ended (`offering_ids`):
  those lose their sessions after the end, and no other does, whatever order events arrive in.
- A partner acts on its own offerings and reads its own agreements; everything else is the operator's.
"""
from pymongo.errors import DuplicateKeyError

import contracts  # noqa: F401  (registers the contracts of the events it publishes and handles)
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
from services.partners import rules, schemas, store
from services.partners.schemas import public_agreement, public_key, public_offering, public_partner


class PartnersService(erasure.KeepsNoOfficials, Operated):
    name = "partners"

    db = Database(indexes=store.INDEXES)
    tracing = Tracing()

    # -- partners and their API keys --------------------------------------------------------------

    @rpc
    def create_partner(self, actor, data):
        """Onboard an institution (operator only). Returns it with `api_key` and its `key_id`: the key
        is shown this once and stored only as a hash. 409 `partner_exists` for a code already taken."""
        auth.require_operator(actor)
        fields = validated(schemas.PartnerIn(), data)
        api_key = rules.new_api_key()
        key = rules.key_record(api_key, new_id("key"), utcnow())
        partner = store.partner_record(fields, new_id("partner"), key, utcnow())

        def onboard(tx):
            store.insert_partner(tx, partner)
            tx.emit("partner_onboarded", rules.partner_event(partner))

        try:
            self.db.transaction(onboard)
        except DuplicateKeyError:
            raise rules.partner_exists(fields["code"])
        return dict(public_partner(partner), api_key=api_key, key_id=key["id"])

    @rpc
    def issue_api_key(self, actor, partner_id):
        """Give a partner another API key (operator only), to rotate without downtime: issue, let the
        partner switch, revoke the old one. Returns {partner_id, key_id, api_key, ...}, the key shown
        this once. 404 unknown partner; 422 `too_many_api_keys` when it already has MAX_API_KEYS."""
        auth.require_operator(actor)
        api_key = rules.new_api_key()
        key = rules.key_record(api_key, new_id("key"), utcnow())
        if not store.add_api_key(self.db, partner_id, key, most=rules.MAX_API_KEYS):
            store.get_partner(self.db, partner_id)
            raise rules.too_many_api_keys()
        return dict(public_key(key), partner_id=partner_id, api_key=api_key)

    @rpc
    def revoke_api_key(self, actor, partner_id, key_id):
        """Revoke one of a partner's API keys (operator only); it is refused from the next request on.
        Returns the key's record with `revoked_at`; revoking it again returns the same. 404 unknown
        partner or key."""
        auth.require_operator(actor)
        partner = store.get_partner(self.db, partner_id)
        key = rules.key_named(partner["api_keys"], key_id)
        if key is None:
            revoked = rules.key_named(partner.get("revoked_api_keys", []), key_id)
            if revoked is None:
                raise not_found("API key", key_id)
            return public_key(revoked)
        record = rules.revoked_key_record(key, utcnow())
        store.revoke_api_key(self.db, partner_id, key_id, record)
        return public_key(record)

    @rpc
    def authenticate(self, api_key):
        """The partner an API key belongs to, or None (unknown or revoked key). Read from the database
        on every call, never cached, so a revoked key fails at once."""
        doc = store.partner_by_key_hash(self.db, rules.key_hash(api_key or ""))
        return {"role": "partner", "partner_id": doc["id"]} if doc else None

    @rpc
    def get_partner(self, actor, partner_id):
        """One partner (the operator, or the partner itself), with its keys' ids and hints."""
        auth.require_operator_or_partner(actor, partner_id, reading=True)
        return public_partner(store.get_partner(self.db, partner_id))

    @rpc
    def list_partners(self, actor, query):
        """{items, next_cursor} in order of code; a partner sees only itself. `query`: limit, cursor
        (422 naming `cursor` for one this list did not return)."""
        rules.require_caller(actor)
        asked = validated(schemas.PartnerQuery(), query)
        partner_id = rules.listed_partner(actor)
        return listed(store.partners_page(self.db, partner_id, asked["limit"], asked.get("cursor")), public_partner)

    # -- agreements -------------------------------------------------------------------------------

    @rpc
    def create_agreement(self, actor, partner_id, data):
        """Record a signed cooperation agreement (operator only). Returns it with its status, which
        follows from its dates. 404 unknown partner."""
        auth.require_operator(actor)
        fields = validated(schemas.AgreementIn(), data)
        store.get_partner(self.db, partner_id)
        agreement = store.agreement_record(fields, partner_id, new_id("agreement"), utcnow())

        def sign(tx):
            store.insert_agreement(tx, agreement)
            tx.emit("agreement_signed", rules.agreement_event(agreement, signed_on=agreement["signed_on"]))
            self._continue_offerings(tx, partner_id, local_date())

        self.db.transaction(sign)
        return public_agreement(agreement, local_date())

    @rpc
    def list_agreements(self, actor, partner_id, query):
        """{items, next_cursor}: a partner's agreements (the operator, or the partner itself).
        `query`: limit, cursor. 404 unknown partner."""
        auth.require_operator_or_partner(actor, partner_id, reading=True)
        asked = validated(schemas.AgreementQuery(), query)
        store.get_partner(self.db, partner_id)
        today = local_date()
        return listed(store.agreements_page(self.db, partner_id, asked["limit"], asked.get("cursor")),
                      lambda doc: public_agreement(doc, today))

    @rpc
    def get_agreement(self, actor, agreement_id):
        """One agreement with its status and history (the operator, or the partner that is party to it)."""
        agreement = store.get_agreement(self.db, agreement_id)
        auth.require_operator_or_partner(actor, agreement["partner_id"], reading=True)
        return public_agreement(agreement, local_date())

    @rpc
    def amend_agreement(self, actor, agreement_id, data):
        """Extend or shorten an agreement's validity (operator only): new valid_from and/or
        valid_until, and the reason, kept in its history. Returns the amended agreement. 422
        `agreement_ended` when it has expired or was terminated; 409 `agreement_changed` when it
        changed meanwhile (read it again)."""
        auth.require_operator(actor)
        fields = validated(schemas.AgreementAmendment(), data)
        agreement = store.get_agreement(self.db, agreement_id)
        rules.refuse_if_ended(agreement, local_date())
        before, after = rules.amended_validity(agreement, fields.get("valid_from"), fields.get("valid_until"))

        def amend(tx):
            if not store.amend_validity(tx, agreement_id, before, after, fields["reason"], utcnow()):
                raise rules.agreement_changed()
            tx.emit("agreement_amended", rules.agreement_event(
                dict(agreement, **after), reason=fields["reason"],
                previous_valid_from=before["valid_from"], previous_valid_until=before["valid_until"]))
            self._continue_offerings(tx, agreement["partner_id"], local_date())

        self.db.transaction(amend)
        return public_agreement(store.get_agreement(self.db, agreement_id), local_date())

    @rpc
    def terminate_agreement(self, actor, agreement_id, data):
        """End an agreement early, as of today (operator only): from today it is `expired`, and
        `agreement_terminated` tells the other services. Returns the agreement; terminating it again
        returns the same. 422 `agreement_ended` when it had already expired."""
        auth.require_operator(actor)
        fields = validated(schemas.AgreementTermination(), data)
        agreement = store.get_agreement(self.db, agreement_id)
        today = local_date()
        if agreement.get("terminated_on"):
            return public_agreement(agreement, today)
        rules.refuse_if_ended(agreement, today)
        reason = fields.get("reason")

        def terminate(tx):
            if not store.terminate(tx, agreement, today.isoformat(), reason, utcnow()):
                raise rules.agreement_changed()
            self._continue_offerings(tx, agreement["partner_id"], today)
            tx.emit("agreement_terminated", rules.agreement_event(
                agreement, terminated_on=today.isoformat(), reason=reason,
                offering_ids=store.offerings_on(tx, agreement_id)))

        self.db.transaction(terminate)
        return public_agreement(store.get_agreement(self.db, agreement_id), local_date())

    @leased_timer("AGREEMENT_SWEEP_SECONDS", 60, lease="agreement-expiry")
    def expire_agreements(self):
        """Announce `agreement_expired` for every agreement whose last valid local day is before
        today's, with the offerings it still carried (the others moved onto another agreement of the
        partner first). Runs in one replica (the lease) and is safe to run twice at once (the
        conditional update): each agreement is announced exactly once. Returns how many it announced."""
        announced = 0
        today = local_date()
        for agreement in store.agreements_ended_unannounced(self.db, today.isoformat()):
            def expire(tx, agreement=agreement):
                if not store.mark_expired(tx, agreement, utcnow()):
                    return 0
                self._continue_offerings(tx, agreement["partner_id"], today)
                tx.emit("agreement_expired", rules.agreement_event(
                    agreement, offering_ids=store.offerings_on(tx, agreement["_id"])))
                return 1

            announced += self.db.transaction(expire)
        return announced

    # -- offerings --------------------------------------------------------------------------------

    @rpc
    def create_offering(self, actor, data):
        """Publish a course offering. A partner posts its own; an operator names `partner_id`.
        Returns it with status `published` and the `agreement_id` that covers it. 422
        `no_active_agreement` unless an active agreement of that partner covers the whole window and
        every audience group (for the operator's record of an offering that ended before today: the
        agreement that covered it); 403 when a partner names another partner."""
        auth.require_operator_or_partner(actor, auth.partner_id_of(actor))  # who asks, before what is asked
        fields = validated(schemas.OfferingIn(), data)
        partner_id = rules.offering_poster(actor, fields.get("partner_id"))
        store.get_partner(self.db, partner_id)
        offering = store.offering_record(fields, partner_id, new_id("offering"), utcnow())
        rules.require_current_audiences(offering["audience_groups"], rules.as_date(offering["ends_by"]))
        offering["agreement_id"] = self._covering_agreement(offering, actor)

        def publish(tx):
            store.insert_offering(tx, offering)
            tx.emit("offering_published", rules.offering_event(offering))

        self.db.transaction(publish)
        return public_offering(offering)

    @rpc
    def get_offering(self, actor, offering_id):
        """One offering (the operator, or the partner that owns it)."""
        offering = store.get_offering(self.db, offering_id)
        auth.require_operator_or_partner(actor, offering["partner_id"], reading=True)
        return public_offering(offering)

    @rpc
    def update_offering(self, actor, offering_id, data):
        """Change a published offering (its partner or the operator): any of title, title_en,
        audience_groups, modules, starts_from, ends_by. The result must again be covered by an active
        agreement (422 `no_active_agreement`). Returns the offering. 422 `offering_withdrawn` once
        it is withdrawn; 409 `offering_changed` when it changed meanwhile (read it again)."""
        offering = store.get_offering(self.db, offering_id)
        auth.require_operator_or_partner(actor, offering["partner_id"])
        changes = validated(schemas.OfferingUpdate(), data)
        updated = rules.updated_offering(offering, changes)
        rules.require_current_audiences(updated["audience_groups"], rules.as_date(updated["ends_by"]))
        updated["agreement_id"] = self._covering_agreement(updated, actor)
        updated["updated_at"] = utcnow()
        # The update is conditional on the version read, so the revision it makes is this one.
        updated["revision"] = store.next_revision(offering)

        def update(tx):
            if not store.update_offering(tx, offering, updated, (*changes, "agreement_id", "updated_at")):
                raise rules.offering_changed()
            tx.emit("offering_updated", rules.offering_event(updated))

        self.db.transaction(update)
        return public_offering(updated)

    @rpc
    def withdraw_offering(self, actor, offering_id, data):
        """Withdraw an offering (its partner or the operator), with an optional reason:
        `offering_withdrawn` tells scheduling to cancel its future sessions. Returns the offering;
        withdrawing it again returns the same and publishes nothing more."""
        offering = store.get_offering(self.db, offering_id)
        auth.require_operator_or_partner(actor, offering["partner_id"])
        fields = validated(schemas.OfferingWithdrawal(), data)
        if offering["status"] == "withdrawn":
            return public_offering(offering)
        reason = fields.get("reason")

        def withdraw(tx):
            if store.withdraw_offering(tx, offering_id, reason, utcnow()):
                tx.emit("offering_withdrawn", rules.withdrawal_event(offering, reason))

        self.db.transaction(withdraw)
        return public_offering(store.get_offering(self.db, offering_id))

    @rpc
    def list_offerings(self, actor, query):
        """{items, next_cursor}. `query`: partner_id, audience (a group), date (offerings whose window
        contains it), status, limit, cursor. A partner sees its own (403 for another's partner_id)."""
        rules.require_caller(actor)
        asked = validated(schemas.OfferingQuery(), query)
        partner_id = rules.listed_partner(actor, asked.get("partner_id"))
        return listed(store.offerings_page(self.db, asked["limit"], asked.get("cursor"), partner_id=partner_id,
                                           audience=asked.get("audience"), day=asked.get("date"),
                                           status=asked.get("status")), public_offering)

    def _covering_agreement(self, offering, actor):
        """The id of the agreement the offering goes on, or 422 `no_active_agreement` unless one of
        the partner's agreements covers it (active today, or on its last day for the operator's
        record of the past). A running offering goes on the longest-running agreement that carries
        it, which may be a renewal signed ahead (rules.home_of), as a renewal's signing moves it."""
        today = local_date()
        on = rules.coverage_day(offering, today, by_operator=auth.is_operator(actor))
        candidates = store.agreements_spanning(self.db, offering["partner_id"], offering["starts_from"],
                                               offering["ends_by"])
        covering = rules.covering_agreement(candidates, offering, on)
        if on != today:
            return covering["_id"]
        return rules.home_of(offering, candidates, today)["_id"]

    def _continue_offerings(self, tx, partner_id, today):
        """Inside the transaction that signs, amends or ends one of the partner's agreements: move each
        offering whose home changed (rules.continuations) onto its new agreement, with its
        `offering_updated`, and note in the agreement it leaves which offerings went where. That note
        is a write to the old agreement, so a sweep ending it at the same moment conflicts with this
        transaction and one of them runs again, seeing the other's outcome."""
        agreements = store.partner_agreements(tx, partner_id)
        moves = rules.continuations(store.live_offerings(tx, partner_id, today.isoformat()), agreements, today)
        at = utcnow()
        handed_on = {}
        for offering, home in moves:
            store.move_offering(tx, offering["_id"], home["_id"], at)
            tx.emit("offering_updated", rules.offering_event(dict(
                offering, agreement_id=home["_id"], revision=store.next_revision(offering))))
            handed_on.setdefault((offering.get("agreement_id"), home["_id"]), []).append(offering["_id"])
        for (left, to), offering_ids in handed_on.items():
            if left:
                store.note_continued(tx, left, to, offering_ids, at)
        return moves

    # -- the service itself -----------------------------------------------------------------------

    @rpc
    def api_schemas(self):
        """The request bodies and list queries this service accepts, for the gateway's OpenAPI document."""
        return describe(schemas.BODIES, schemas.QUERIES)
