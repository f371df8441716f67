"""OpenAPI pieces from marshmallow schemas (apispec): each service describes what it accepts, the
gateway assembles the document at `GET /openapi.json`."""
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin


def new_spec(title="trainops", version="1.0.0", plugin=None):
    return APISpec(title=title, version=version, openapi_version="3.0.3", plugins=[plugin or MarshmallowPlugin()])


def describe(bodies, queries=None):
    """What a service's `api_schemas` RPC answers: {"bodies": {name: JSON schema} (nested schemas
    under their own names), "queries": {name: [OpenAPI query parameters]}} from {name: Schema}."""
    plugin = MarshmallowPlugin()
    spec = new_spec(plugin=plugin)
    for name, schema in bodies.items():
        spec.components.schema(name, schema=schema)
    return {"bodies": spec.to_dict().get("components", {}).get("schemas", {}),
            "queries": {name: plugin.converter.schema2parameters(schema, location="query")
                        for name, schema in (queries or {}).items()}}
