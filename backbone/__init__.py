"""The trainops platform: what every service uses the same way.

- `config`: the one YAML configuration (with `${VAR:default}`), loaded the way `nameko run` loads it.
- `logs`: JSON log lines carrying the correlation id, with phones and emails masked.
- `errors`: domain errors that cross RPC intact and become the HTTP error shape at the gateway.
- `contracts`: the event envelope and a marshmallow schema per event type, shared by producer and consumers.
- `topology`: the exchange, every consumer's durable queue, its retry (delay) queues and bindings.
- `store`: the MongoDB dependency: one client per container, indexes at start, transactions that write
  the outbox with the state change, and the relay that publishes the outbox with batched confirms.
- `subscriber`: the event-handler entrypoint: idempotent, retried with backoff, dead-lettered at the limit.
- `lease`: a MongoDB lease so relays and timers run once across replicas.
- `timer`: `@leased_timer(...)`, a nameko timer that fires in the one replica holding its lease.
- `heartbeat`, `probe`: each service process writes its health to a file; `python -m backbone.probe
  <service>`, the container's probe, reads it (this very pod, not any replica).
"""
