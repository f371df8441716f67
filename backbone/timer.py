"""A timer that fires in one replica only.

nameko's `@timer` fires in every replica, and takes its interval when the module is imported, before
the configuration is loaded. `@leased_timer("AGREEMENT_SWEEP_SECONDS", 60, lease="agreement-expiry")`
reads the interval from the configuration when the container starts, and starts a worker only in the
replica that holds the MongoDB lease of that name. The holder keeps it from tick to tick; when it
stops or dies, another replica takes over within a few intervals.

The lease makes the work run once in the normal case. It is not a lock (a paused holder may wake
after its lease ran out), so the work itself must still be safe to run twice.

`@replica_timer(setting, default)` is the same timer without the lease, in every replica: for work
that replicas share by claiming a batch each (the notifications sweep).
"""
import logging

from nameko import config
from nameko.timer import Timer

from backbone.lease import Lease, holder_id
from backbone.database import database_of

log = logging.getLogger(__name__)


class ReplicaTimer(Timer):
    """`@replica_timer("NOTIFICATIONS_SWEEP_SECONDS", 10)`: fires in every replica, its interval read
    from the configuration when the container starts. For work that replicas share by claiming it
    (a batch each), so more replicas do more of it."""

    def __init__(self, setting, default, **kwargs):
        self.setting = setting
        self.default = default
        # Eager: a replica that starts after a missed midnight catches up at once.
        super().__init__(interval=default, eager=True, **kwargs)

    def setup(self):
        self.interval = float(config.get(self.setting, self.default))


class LeasedTimer(ReplicaTimer):
    def __init__(self, setting, default, lease, **kwargs):
        self.lease_name = lease
        self.lease = None
        super().__init__(setting, default, **kwargs)

    def start(self):
        self.lease = Lease(database_of(self.container).db.leases, self.lease_name, holder_id(), seconds=max(3 * self.interval, 5))
        super().start()

    def stop(self):
        super().stop()
        self._release()

    def kill(self):
        super().kill()
        self._release()

    def handle_timer_tick(self):
        try:
            held = self.lease.acquire()
        except Exception as exc:
            # The database is away: skip this tick rather than end the timer's thread (and the container).
            log.warning("%s: lease not checked (%s); skipping this tick", self.lease_name, exc)
            held = False
        if held:
            super().handle_timer_tick()
        else:
            self.worker_complete.send()

    def _release(self):
        try:
            self.lease.release()
        except Exception:  # stopping anyway; the lease then runs out on its own
            pass


leased_timer = LeasedTimer.decorator
replica_timer = ReplicaTimer.decorator
