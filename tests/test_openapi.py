"""The whole public API is described at GET /openapi.json, generated from the marshmallow schemas."""
from openapi_spec_validator import validate


def test_openapi_document_is_valid_and_names_every_route_and_schema(anonymous):
    response = anonymous.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    paths = document["paths"]
    assert {"/partners", "/partners/{partner_id}/agreements", "/offerings", "/sessions",
            "/sessions/{session_id}/registrations", "/health", "/alive"} <= set(paths)
    create_offering = paths["/offerings"]["post"]
    assert create_offering["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OfferingIn"}
    assert "422" in create_offering["responses"] and "409" in create_offering["responses"]
    offering = document["components"]["schemas"]["OfferingIn"]
    assert set(offering["required"]) == {"title", "audience_groups", "starts_from", "ends_by"}
    assert offering["properties"]["audience_groups"]["items"]["enum"] == [
        "ward_commune", "district", "department", "leader"]
    assert offering["additionalProperties"] is False  # unknown fields are refused


def test_query_strings_and_optional_bodies_are_described(anonymous):
    paths = anonymous.get("/openapi.json").json()["paths"]
    sessions = {p["name"] for p in paths["/sessions"]["get"]["parameters"] if p["in"] == "query"}
    assert {"month", "unit", "partner_id", "venue_id", "limit", "cursor"} <= sessions
    assert paths["/offerings/{offering_id}/withdraw"]["post"]["requestBody"]["required"] is False
    assert paths["/offerings"]["post"]["requestBody"]["required"] is True
