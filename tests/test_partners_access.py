"""Who may do what with partners, agreements and offerings: API keys that rotate without downtime and
stop working the moment they are revoked, and the whole authorisation matrix, endpoint by endpoint."""
from backbone.outbox import emitted_events
from tests.helpers import SIU, iso_day, offering, onboard, sign


def test_a_key_is_rotated_without_downtime_and_a_revoked_key_is_refused_at_once(operator, db):
    partner, old = onboard(operator)
    issued = operator.post("/partners/{}/keys".format(partner["id"]))
    assert issued.status_code == 201, issued.text
    new = operator.as_(issued.json()["api_key"])

    # Both keys work while the partner switches over.
    assert old.get("/partners/" + partner["id"]).status_code == 200
    assert new.get("/partners/" + partner["id"]).status_code == 200

    revoked = operator.post("/partners/{}/keys/{}/revoke".format(partner["id"], partner["key_id"]))
    assert revoked.status_code == 200, revoked.text
    refused = old.get("/partners/" + partner["id"])
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthenticated"
    assert new.get("/partners/" + partner["id"]).status_code == 200

    shown = operator.get("/partners/" + partner["id"]).json()
    assert [k["key_id"] for k in shown["api_keys"]] == [issued.json()["key_id"]]
    assert [k["key_id"] for k in shown["revoked_api_keys"]] == [partner["key_id"]]
    assert shown["api_keys"][0]["hint"] == issued.json()["api_key"][-4:]
    # Only hashes are stored, never a key.
    stored = str(db("partners").partners.find_one({"_id": partner["id"]}))
    assert issued.json()["api_key"] not in stored and partner["api_key"] not in stored

    # Revoking again is a retry, not an error; an unknown key is.
    again = operator.post("/partners/{}/keys/{}/revoke".format(partner["id"], partner["key_id"]))
    assert again.status_code == 200 and again.json() == revoked.json()
    assert operator.post("/partners/{}/keys/key-unknown/revoke".format(partner["id"])).status_code == 404
    assert operator.post("/partners/partner-unknown/keys").status_code == 404


def test_a_partner_holds_a_few_keys_at_most(operator):
    partner, _ = onboard(operator)
    for _ in range(4):
        assert operator.post("/partners/{}/keys".format(partner["id"])).status_code == 201
    refused = operator.post("/partners/{}/keys".format(partner["id"]))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "too_many_api_keys"
    assert len(operator.get("/partners/" + partner["id"]).json()["api_keys"]) == 5


class World:
    """Partner A (the owner) with an agreement and offerings, partner B (another partner), and
    fresh targets for the calls that change something, so that each call has its own."""

    def __init__(self, operator, anonymous):
        self.operator = operator
        self.a, self.owner = onboard(operator)
        self.b, self.other = onboard(operator, dict(SIU, code="BUH", name="Trường Đại học Ngân hàng TP.HCM"))
        self.anonymous = anonymous
        self.agreement = sign(operator, self.a["id"], iso_day(-10), iso_day(100))["id"]
        self.offering = self.new_offering()

    def caller(self, role):
        return {"operator": self.operator, "owner": self.owner, "other": self.other,
                "anonymous": self.anonymous}[role]

    def new_offering(self):
        return self.owner.post("/offerings", offering()).json()["id"]

    def new_agreement(self):
        return sign(self.operator, self.a["id"], iso_day(-10), iso_day(100))["id"]

    def new_key(self):
        return self.operator.post("/partners/{}/keys".format(self.a["id"])).json()["key_id"]


NEW_PARTNER = dict(SIU, code="VNU-HCM", name="Đại học Quốc gia TP.HCM")
AGREEMENT = {"title": "Thỏa thuận hợp tác", "signed_on": iso_day(0), "valid_from": iso_day(0), "valid_until": iso_day(30)}

# (method, path, body, {role: status}); roles not named get 403, anonymous always gets 401.
# A path may name a fresh target ({new_offering}) for the calls that change what they act on.
MATRIX = [
    ("POST", "/partners", NEW_PARTNER, {"operator": 201}),
    ("GET", "/partners", None, {"operator": 200, "owner": 200, "other": 200}),
    ("GET", "/partners/{a}", None, {"operator": 200, "owner": 200}),
    ("POST", "/partners/{a}/keys", None, {"operator": 201}),
    ("POST", "/partners/{a}/keys/{new_key}/revoke", None, {"operator": 200}),
    ("POST", "/partners/{a}/agreements", AGREEMENT, {"operator": 201}),
    ("GET", "/partners/{a}/agreements", None, {"operator": 200, "owner": 200}),
    ("GET", "/agreements/{agreement}", None, {"operator": 200, "owner": 200}),
    ("POST", "/agreements/{new_agreement}/amend", {"valid_until": iso_day(200), "reason": "gia hạn"}, {"operator": 200}),
    ("POST", "/agreements/{new_agreement}/terminate", {"reason": "chấm dứt"}, {"operator": 200}),
    ("POST", "/offerings", offering(), {"operator": 201, "owner": 201}),
    ("GET", "/offerings", None, {"operator": 200, "owner": 200, "other": 200}),
    ("GET", "/offerings?partner_id={a}", None, {"operator": 200, "owner": 200}),
    ("GET", "/offerings/{offering}", None, {"operator": 200, "owner": 200}),
    ("POST", "/offerings/{offering}/update", {"title": "Ứng dụng AI trong công việc (cập nhật)"},
     {"operator": 200, "owner": 200}),
    ("POST", "/offerings/{new_offering}/withdraw", {"reason": "hết chỗ"}, {"operator": 200, "owner": 200}),
]

ROLES = ("anonymous", "other", "owner", "operator")


def test_each_endpoint_answers_each_caller_as_the_authorisation_matrix_says(operator, anonymous, db):
    world = World(operator, anonymous)
    for method, template, body, allowed in MATRIX:
        path = template.format(
            a=world.a["id"], agreement=world.agreement, offering=world.offering,
            new_key=world.new_key() if "{new_key}" in template else None,
            new_agreement=world.new_agreement() if "{new_agreement}" in template else None,
            new_offering=world.new_offering() if "{new_offering}" in template else None)
        for role in ROLES:  # those refused first: a refusal must leave the target as it was
            sent = body
            if (method, template) == ("POST", "/offerings") and role in ("operator", "other"):
                sent = dict(body, partner_id=world.a["id"])  # the operator posts for A; B tries to
            before = len(emitted_events(db("partners")))
            response = world.caller(role).request(method, path, json=sent)
            expected = 401 if role == "anonymous" else allowed.get(role, 403)
            assert response.status_code == expected, "{} {} as {}: {}".format(method, path, role, response.text)
            if expected >= 400:
                assert len(emitted_events(db("partners"))) == before, "{} {} as {} wrote".format(
                    method, template, role)

    # What each may see in the lists, beyond being let in.
    assert [p["id"] for p in world.owner.get("/partners").json()["items"]] == [world.a["id"]]
    assert {o["partner_id"] for o in world.owner.get("/offerings").json()["items"]} == {world.a["id"]}
    assert world.other.get("/offerings").json()["items"] == []
