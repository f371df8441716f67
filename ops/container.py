"""The service container every trainops process runs (config.yml: SERVICE_CONTAINER_CLS): the
platform's (`backbone.container`), plus what operations needs in each process without the service
declaring it: the server of its own counters on METRICS_PORT and, for an `Operated` service, the
operations RPCs (`ops/rpcs.py`, added to its class) and the heartbeat file its pod's probe reads."""
from nameko.extensions import iter_extensions

from backbone.container import Container as PlatformContainer
from backbone.operated import Operated
from ops.heartbeat import Heartbeat
from ops.metrics import MetricsServer
from ops.rpcs import OperationsRpcs


def operated(service_cls):
    """Give the service class the operations RPCs it does not define itself (the same class, so that
    whoever holds it, a runner or a test, still finds its container by it)."""
    for name, method in vars(OperationsRpcs).items():
        if hasattr(method, "nameko_entrypoints") and not hasattr(service_cls, name):
            setattr(service_cls, name, method)
    return service_cls


class Container(PlatformContainer):
    def __init__(self, service_cls):
        is_service = issubclass(service_cls, Operated)
        super().__init__(operated(service_cls) if is_service else service_cls)
        extras = {"metrics_server": MetricsServer()}
        if is_service:
            extras["heartbeat"] = Heartbeat()
        for name, extension in extras.items():
            bound = extension.bind(self.interface, name)
            self.dependencies.add(bound)
            self.subextensions.update(iter_extensions(bound))
