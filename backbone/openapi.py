"""OpenAPI pieces from marshmallow schemas (apispec): each service describes its own input schemas,
the gateway assembles the document at `GET /openapi.json`."""
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin


def new_spec(title="trainops", version="1.0.0"):
    return APISpec(title=title, version=version, openapi_version="3.0.3", plugins=[MarshmallowPlugin()])


def schema_components(schemas):
    """{name: Schema class} → {name: JSON schema}, nested schemas included under their own names."""
    spec = new_spec()
    for name, schema in schemas.items():
        spec.components.schema(name, schema=schema)
    return spec.to_dict().get("components", {}).get("schemas", {})
