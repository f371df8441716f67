"""What partners publishes: partners onboarded, agreements signed, amended, terminated and expired,
offerings published, updated (also when a renewal or another agreement takes them on) and withdrawn.
Consumers: scheduling (offerings, agreements and their ends), notifications (partners' contacts,
offerings, expiry).

Personal data: only a partner's institutional contact address (`contact_email`), which notifications
needs to write to the partner.

State-carrying: offering_published and offering_updated (the offering as it is now, with its
`revision`; a consumer ignores one older than the copy it has). The agreement events carry the
agreement's dates and a consumer keeps the newest by `occurred_at` (one producer writes them, in
transactions that conflict on the agreement). Facts: partner_onboarded, agreement_terminated,
agreement_expired, offering_withdrawn (final: a withdrawn offering stays withdrawn)."""
from marshmallow import Schema, fields

from backbone.events import Revision, contract
from backbone.fields import Id
from contracts.common import Audience, Module


@contract("partner_onboarded")
class PartnerOnboarded(Schema):
    partner_id = Id(required=True)
    code = fields.Str(required=True)
    name = fields.Str(required=True)
    kind = fields.Str(required=True)
    contact_email = fields.Str(allow_none=True, metadata={
        "personal": "notifications: where the partner's notices go (an institutional address, maybe a person's)."})


class _Agreement(Schema):
    agreement_id = Id(required=True)
    partner_id = Id(required=True)
    title = fields.Str(required=True)
    valid_from = fields.Date(required=True)
    valid_until = fields.Date(required=True)
    scope = fields.List(fields.Str(), load_default=list)


@contract("agreement_signed")
class AgreementSigned(_Agreement):
    signed_on = fields.Date(required=True)


@contract("agreement_amended")
class AgreementAmended(_Agreement):
    reason = fields.Str(allow_none=True)
    # The validity before the amendment: a consumer can tell an extension from a shortening.
    previous_valid_from = fields.Date(allow_none=True, load_default=None)
    previous_valid_until = fields.Date(allow_none=True, load_default=None)


class _AgreementEnd(_Agreement):
    # The offerings the agreement still carried when it ended: they lose their sessions after the
    # end. An offering another agreement of the partner carries had moved onto it first (its
    # offering_updated says so) and is not listed, whichever of the two events a consumer hears first.
    # None: not said (an event written before partners said it); the consumer's own copy decides.
    offering_ids = fields.List(Id(), allow_none=True, load_default=None)


@contract("agreement_terminated")
class AgreementTerminated(_AgreementEnd):
    terminated_on = fields.Date(required=True)
    reason = fields.Str(allow_none=True)


@contract("agreement_expired")
class AgreementExpired(_AgreementEnd):
    pass


class _Offering(Schema):
    offering_id = Id(required=True)
    partner_id = Id(required=True)
    # The agreement that covers it: when that agreement ends, the offering's future sessions end too.
    agreement_id = Id(allow_none=True, load_default=None)
    title = fields.Str(required=True)
    title_en = fields.Str(allow_none=True)
    audience_groups = Audience(required=True)
    modules = fields.List(fields.Nested(Module), load_default=list)
    starts_from = fields.Date(required=True)
    ends_by = fields.Date(required=True)
    # The offering's version after this change (1 when published; each update and each move onto
    # another agreement counts it up).
    revision = Revision()


@contract("offering_published")
class OfferingPublished(_Offering):
    pass


@contract("offering_updated")
class OfferingUpdated(_Offering):
    pass


@contract("offering_withdrawn")
class OfferingWithdrawn(Schema):
    offering_id = Id(required=True)
    partner_id = Id(required=True)
    reason = fields.Str(allow_none=True)
