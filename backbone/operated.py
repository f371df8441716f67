"""The one hook operations needs in a service: `class PartnersService(Operated)`.

Operations (`ops/`) gives every `Operated` service, through its container (config.yml's
SERVICE_CONTAINER_CLS), the RPCs it asks of each service (health, metrics, dead letters and their
replay, the audit trail of a correlation id) and the heartbeat file its pod's probe reads. They work
on the platform's own records (outbox, handled events, dead letters) in the database the service
declares as `db = Database(...)`. A service may add its own figures and records below.
"""


class Operated:
    def domain_gauges(self):
        """Gauges about the service's own data, each {"name", "help", "labels": [...], "rows":
        [[label values..., value], ...]}; none by default."""
        return []

    def audit_records(self, correlation_id):
        """The service's own audit-trail entries for a correlation id (dicts with at least `at` and
        `kind`); none by default."""
        return []
