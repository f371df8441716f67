"""The trainops platform: mechanism every service uses the same way, and nothing about the programme.

- `config`: the one YAML configuration (`${VAR:default}`), loaded as `nameko run` loads it; SERVICES.
- `container`: nameko's container with workers per service.
- `errors`, `auth`: refusals that cross RPC and become the HTTP error shape; who asks.
- `rpc`: nameko's RPC entrypoint, prefetching as many calls as the service has workers.
- `clock`: UTC instants, Ho Chi Minh City's calendar days and how people read times.
- `fields`, `paging`: field types every schema shares; one pager for every list.
- `events`: the envelope and the registry of contracts (the contracts themselves are in `contracts/`).
- `database`: the MongoDB dependency and the transaction that writes events with the change.
- `outbox`: the relay that publishes the outbox with batched confirms.
- `subscriber`: `@subscribe`: idempotent, retried with backoff, dead-lettered at the limit.
- `grouped`: the handlers that ask for it share a transaction with the events that came with theirs.
- `topology`: the exchange, each subscriber's durable queue (from its `@subscribe`s), delay queues.
- `lease`, `timer`: work that runs once across replicas.
- `logs`: JSON lines with the correlation id, personal data masked.
- `counters`: the process's counters (events, handlers, HTTP); `operated`: the hook operations uses.
- `openapi`: request schemas as JSON schema for the gateway's document.
"""
