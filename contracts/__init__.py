"""The event contracts, one module per producer: what each service publishes, as marshmallow schemas
registered with `backbone.events.contract`. A consumer imports the producer's module (never the
producer's code); importing this package registers every contract."""
from contracts import notifications, partners, registration, scheduling  # noqa: F401
