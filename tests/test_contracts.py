"""Producers and consumers agree on every event, read from the code: what a service emits is declared
in its own contract module, every contract is produced by its producer, every subscription has a
producer's contract, and the payload fields a handler reads are fields of that contract."""
import ast
from pathlib import Path

import pytest

import contracts  # noqa: F401  (registers every contract)
from backbone import events

ROOT = Path(__file__).resolve().parent.parent
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "service.py").exists())


def sources(service):
    return {path: ast.parse(path.read_text(encoding="utf-8"), str(path))
            for path in sorted((ROOT / "services" / service).glob("*.py"))}


def declared_by(producer):
    """The event types of contracts/<producer>.py."""
    return {t for t in events.known_types() if events.producer_of(t) == producer}


def emitted_literally(trees):
    """Types passed as a literal to `<tx>.emit(...)`."""
    found = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "emit"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                found.add(node.args[0].value)
    return found


def mentioned(trees):
    return {node.value for tree in trees.values() for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def subscriptions(tree):
    """{(class name, method name): event type} of the @subscribe handlers in a module."""
    found = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            for decorator in method.decorator_list:
                if (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "subscribe"
                        and decorator.args and isinstance(decorator.args[0], ast.Constant)):
                    found[(cls.name, method.name)] = decorator.args[0].value
    return found


def _carries_payload(node):
    return (isinstance(node, ast.Name) and node.id in ("payload", "event")) or (
        isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "payload")


def payload_reads(tree, class_name, method_name, package=()):
    """The payload fields a handler reads as `payload["x"]` or `event["payload"]["x"]`: in the method,
    in the methods of its class it calls as `self.<name>(...)`, and in the functions of its service
    (`package`: their trees) it hands the payload or the event to, however deep."""
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    methods = {n.name: [n] for n in cls.body if isinstance(n, ast.FunctionDef)}
    functions = {}
    for other in package:
        for node in other.body:
            if isinstance(node, ast.FunctionDef):
                functions.setdefault(node.name, []).append(node)
    reads, seen, todo = set(), set(), [("self", method_name)]
    while todo:
        kind, name = todo.pop()
        if (kind, name) in seen:
            continue
        seen.add((kind, name))
        for function in (methods if kind == "self" else functions).get(name, []):
            # `if payload.get("x"): ... payload["x"]` reads an optional field only where it is there.
            guarded = {node.args[0].value for node in ast.walk(function)
                       if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                       and node.func.attr == "get" and _carries_payload(node.func.value)
                       and node.args and isinstance(node.args[0], ast.Constant)}
            for node in ast.walk(function):
                if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                    target = node.value
                    is_payload = (isinstance(target, ast.Name) and target.id == "payload") or (
                        isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant)
                        and target.slice.value == "payload")
                    if is_payload and node.slice.value not in guarded:
                        reads.add(node.slice.value)
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
                    todo.append(("self", func.attr))
                elif any(_carries_payload(arg) for arg in list(node.args) + [k.value for k in node.keywords]):
                    callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                    if callee:
                        todo.append(("function", callee))
    return reads


def disagreements(tree, package=()):
    """What a module's handlers read that their event's contract does not have."""
    problems = []
    for (class_name, method_name), type_ in subscriptions(tree).items():
        fields = set(events.schema_for(type_).fields)
        for field in sorted(payload_reads(tree, class_name, method_name, package) - fields):
            problems.append("{} reads payload[{!r}], which {} does not carry".format(method_name, field, type_))
    return problems


@pytest.mark.parametrize("service", SERVICES)
def test_what_a_service_emits_is_declared_in_its_own_contract_module(service):
    trees = sources(service)
    emitted = emitted_literally(trees)
    assert emitted <= declared_by(service), emitted - declared_by(service)
    # ...and every contract it declares is produced: a contract nobody emits is a promise nobody keeps.
    assert declared_by(service) <= mentioned(trees), declared_by(service) - mentioned(trees)


@pytest.mark.parametrize("service", SERVICES)
def test_every_subscription_is_to_another_producers_contract_and_reads_only_its_fields(service):
    trees = sources(service)
    tree = trees[ROOT / "services" / service / "service.py"]
    for type_ in subscriptions(tree).values():
        producer = events.producer_of(type_)
        assert producer in SERVICES and producer != service, (type_, producer)
        assert type_ in mentioned(sources(producer)), "{} never produces {}".format(producer, type_)
    assert disagreements(tree, trees.values()) == []


def test_a_handler_reading_a_field_its_contract_lacks_is_caught():
    """The check can fail: a consumer that expects `venue_phone` on session_scheduled disagrees."""
    tree = ast.parse('''
class Consumer:
    @subscribe("session_scheduled")
    def on_scheduled(self, event):
        payload = event["payload"]
        self.remember(payload["session_id"], event)
        store.note(tx, payload)

    def remember(self, session_id, event):
        return event["payload"]["venue_phone"]

def note(tx, payload):
    return payload["trainer_phone"]
''')
    assert disagreements(tree, [tree]) == [
        "on_scheduled reads payload['trainer_phone'], which session_scheduled does not carry",
        "on_scheduled reads payload['venue_phone'], which session_scheduled does not carry"]
