"""The service container every trainops process runs (config.yml: SERVICE_CONTAINER_CLS): the
platform's (`backbone.container`), plus what operations needs in each process without the service
declaring it: the server of its own counters on METRICS_PORT, and for services (`Exposed`) the
heartbeat file its pod's probe reads."""
from nameko.extensions import iter_extensions

from backbone.container import Container as PlatformContainer
from backbone.exposed import Exposed
from ops.heartbeat import Heartbeat
from ops.metrics import MetricsServer


class Container(PlatformContainer):
    def __init__(self, service_cls):
        super().__init__(service_cls)
        extras = {"metrics_server": MetricsServer()}
        if issubclass(service_cls, Exposed):
            extras["heartbeat"] = Heartbeat()
        for name, extension in extras.items():
            bound = extension.bind(self.interface, name)
            self.dependencies.add(bound)
            self.subextensions.update(iter_extensions(bound))
