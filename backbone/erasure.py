"""The whole of an erasure for a service that keeps nothing about officials of its own (partners,
scheduling): the platform's records of events may still name one (a dead letter's message), so
`official_erased` scrubs them, and "download my data" counts them. Mixed into the service class."""
from backbone import personal
from backbone.clock import utcnow
from backbone.rpc import rpc
from backbone.subscriber import subscribe


class KeepsNoOfficials:
    @subscribe("official_erased")
    def on_official_erased(self, event):
        personal.erase_official_records(self.db, event["payload"]["official_id"], utcnow())

    @rpc
    def personal_data(self, actor, official_id):
        """What this service holds about one official (an admin, or the official themself): nothing of
        its own; how many of its records of events name them."""
        personal.require_subject_or_admin(actor, official_id)
        return {"records": personal.held_in_records(self.db, official_id)}
