"""Operations: what the Digital Transformation Centre's operators use to watch and mend trainops.

- In each service process (through `container.Container`, config.yml's SERVICE_CONTAINER_CLS): the
  heartbeat file (`heartbeat`) that the pod's probe reads (`python -m ops.probe <service>`), and the
  process's own counters on METRICS_PORT (`metrics.MetricsServer`).
- In the gateway, which mounts `routes.OperationsRoutes`: health, Prometheus metrics, dead letters and
  replay, the audit trail of a correlation id (`fleet` asks every service), and the console.

Services expose what this needs through one hook, `backbone.operated.Operated`. This package imports
nothing heavy here: the probe runs in every pod every few seconds.
"""
