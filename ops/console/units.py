"""The console's units and their coordinators: operators list the units, open one to see who
coordinates it, name a coordinator (its token shown once, on the answer to the form, never in an
address) and revoke one. Forms carry the session's CSRF token like every console form; the
registration service checks the operator again."""
from urllib.parse import quote

from backbone.auth import OPERATOR
from backbone.errors import DomainError
from gateway.entrypoints import api
from ops import console, fleet

UNITS_SHOWN = 200

LABELS = {
    "vi": {
        "units": "Đơn vị và điều phối viên", "q": "Tìm đơn vị (tên hoặc mã)", "status": "Trạng thái",
        "active": "Đang hoạt động", "dissolved": "Đã giải thể", "became": "Trở thành", "coordinators": "Điều phối viên",
        "more": "Chỉ hiện {n} đơn vị đầu tiên; hãy tìm để thu hẹp.",
        "full_name": "Họ và tên", "email": "Thư điện tử", "phone": "Điện thoại (không bắt buộc)",
        "unit_codes": "Các đơn vị phụ trách (mã, cách nhau bởi dấu phẩy; để trống: đơn vị này)",
        "create": "Thêm điều phối viên", "revoke": "Thu hồi mã", "revoked": "Đã thu hồi mã truy cập.",
        "created_at": "Ngày tạo", "state_active": "Đang dùng", "state_revoked": "Đã thu hồi",
        "token_once": "Mã truy cập của điều phối viên — chỉ hiện một lần. Hãy sao chép và chuyển cho người nhận "
                      "qua kênh an toàn; hệ thống chỉ lưu bản băm.",
        "token": "Mã truy cập", "not_found": "Không có đơn vị này.", "back": "Tất cả đơn vị", "none": "Chưa có điều phối viên.",
        "fix": "Chưa tạo được: hãy sửa các ô dưới đây.",
    },
    "en": {
        "units": "Units and coordinators", "q": "Find a unit (name or code)", "status": "Status",
        "active": "Active", "dissolved": "Dissolved", "became": "Became", "coordinators": "Coordinators",
        "more": "Only the first {n} units are shown; search to narrow them down.",
        "full_name": "Full name", "email": "Email", "phone": "Phone (optional)",
        "unit_codes": "Units coordinated (codes, comma-separated; empty: this unit)",
        "create": "Add a coordinator", "revoke": "Revoke token", "revoked": "The access token was revoked.",
        "created_at": "Created", "state_active": "In use", "state_revoked": "Revoked",
        "token_once": "The coordinator's access token — shown this once. Copy it and hand it over through a safe "
                      "channel; only its hash is kept.",
        "token": "Access token", "not_found": "No such unit.", "back": "All units", "none": "No coordinator yet.",
        "fix": "Not created: correct the fields below.",
    },
}


def field_messages(fields, prefix=""):
    """{field: "message; message"} from an error's nested fields (unit_codes.1 → unit_codes)."""
    out = {}
    for name, value in (fields or {}).items():
        key = prefix or name
        if isinstance(value, dict):
            for inner, text in field_messages(value, key).items():
                out[inner] = "; ".join(filter(None, [out.get(inner), text]))
        else:
            out[key] = "; ".join(filter(None, [out.get(key), "; ".join(str(v) for v in value)]))
    return out


def units_page(gateway, q, status):
    asked = {"limit": UNITS_SHOWN}
    if q:
        asked["q"] = q[:100]
    if status in ("active", "dissolved"):
        asked["status"] = status
    found = fleet.ask_all(gateway, lambda client: client.list_units(OPERATOR, asked), ("registration",),
                          timeout=5)["registration"]
    return {"units": (found or {}).get("items", []), "more": bool((found or {}).get("next_cursor")),
            "unavailable": found is None, "q": q, "status": status, "shown": UNITS_SHOWN}


def unit_page(gateway, code, **extra):
    def gather(client):
        units = client.list_units(OPERATOR, {"q": code, "limit": 50})["items"]
        unit = next((u for u in units if u["code"] == code), None)
        coordinators = client.list_coordinators(OPERATOR, code, {"limit": 200})["items"] if unit else []
        return unit, coordinators
    found = fleet.ask_all(gateway, gather, ("registration",), timeout=5)["registration"]
    unit, coordinators = found if found else (None, [])
    return dict({"unit": unit, "code": code, "coordinators": coordinators, "unavailable": found is None,
                 "token": None, "errors": {}, "form": {}, "revoked": False}, **extra)


class UnitConsoleRoutes:
    """Mounted by the gateway with the other console routes (`OperationsRoutes`)."""

    def units_console(self, request, template, gather, *args, status=200, **kwargs):
        response = self.console_page(request, template, lambda gw: dict(
            gather(gw, *args, **kwargs), u=LABELS[console.language(request)]))
        response.status_code = status if response.status_code == 200 else response.status_code
        return response

    @api("GET", "/console/units", auth=None, public=False)
    def console_units(self, request):
        return self.units_console(request, "units.html", units_page, request.args.get("q", "").strip(),
                                  request.args.get("status", "active"))

    @api("GET", "/console/units/<code>", auth=None, public=False)
    def console_unit(self, request, code):
        return self.units_console(request, "unit.html", unit_page, code,
                                  revoked=request.args.get("revoked") == "1")

    @api("POST", "/console/units/<code>/coordinators", auth=None, public=False)
    def console_create_coordinator(self, request, code):
        """The answer is the page itself, with the token: a redirect would need it in an address."""
        refusal = self.console_form_refusal(request, "create coordinator")
        if refusal is not None:
            return refusal
        form = {k: request.form.get(k, "").strip()[:300] for k in ("full_name", "email", "phone", "unit_codes")}
        data = {"full_name": form["full_name"], "email": form["email"]}
        if form["phone"]:
            data["phone"] = form["phone"]
        if form["unit_codes"]:
            data["unit_codes"] = [c.strip() for c in form["unit_codes"].split(",") if c.strip()]
        try:
            made = self.registration.create_coordinator(self.console_actor(request), code, data)
        except DomainError as error:
            self.console_audit(request, "create coordinator", {"code": code}, error.status)
            return self.units_console(request, "unit.html", unit_page, code, status=error.status,
                                      form=form, errors=field_messages(error.fields) or {"_": error.message})
        self.console_audit(request, "create coordinator", {"code": code, "coordinator_id": made["id"]}, 201)
        return self.units_console(request, "unit.html", unit_page, code, status=201, token=made["api_token"])

    @api("POST", "/console/coordinators/revoke", auth=None, public=False)
    def console_revoke_coordinator(self, request):
        refusal = self.console_form_refusal(request, "revoke coordinator")
        if refusal is not None:
            return refusal
        coordinator_id = request.form.get("id", "")[:64]
        try:
            revoked = self.registration.revoke_coordinator(self.console_actor(request), coordinator_id)
        except DomainError as error:  # no such coordinator: back to the list
            self.console_audit(request, "revoke coordinator", {"coordinator_id": coordinator_id}, error.status)
            return console.redirect("/console/units")
        self.console_audit(request, "revoke coordinator", {"coordinator_id": coordinator_id}, 200)
        # Back to the unit page the form was on (a coordinator may act for several).
        unit = request.form.get("unit", "")[:32] or (revoked.get("unit_codes") or [""])[0]
        return console.redirect("/console/units/{}?revoked=1".format(quote(unit, safe="")))

