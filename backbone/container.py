"""nameko's service container with the number of workers set per service (`WORKERS` in config.yml).

`max_workers` is one number for every service, and the services want different ones: notifications
has a round of group-committed writes behind each event and its fan-out needs a few dozen events in
flight to fill those rounds, while the registration burst writes batches of at most its workers and
gathers for that many (and the gateway must keep as many requests open). The container sizes its
worker pool (and with it how many events and calls it takes at once: backbone/subscriber.py,
backbone/rpc.py) from `WORKERS[<service name>]` when set, from `max_workers` otherwise.

Before anything reads the configuration, the container checks it (`backbone/settings.py`): under
`nameko run` every setting arrives as a string and is converted here, or the process stops with the
setting's name.
"""
from eventlet.greenpool import GreenPool
from nameko import config
from nameko.containers import ServiceContainer

from backbone.config import check


class Container(ServiceContainer):
    def __init__(self, service_cls):
        # Before nameko's own __init__, which sizes the worker pool from max_workers.
        check(config)
        super().__init__(service_cls)
        own = (config.get("WORKERS") or {}).get(self.service_name)
        if own:
            self.max_workers = int(own)
            # nameko sizes its pool from config in __init__, before a subclass could say otherwise.
            self._worker_pool = GreenPool(size=self.max_workers)
