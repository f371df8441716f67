"""deploy/ is what a platform team runs trainops from: a compose file for one Docker host and Kubernetes
manifests for a cluster, both with the image of deploy/Dockerfile. Neither Docker nor a cluster is
available here, so these tests check offline what can be checked: the compose file against the Compose
Specification's schema, the manifests against Kubernetes' own schemas, and that both say what the
repository says: the commands devstack runs, the settings config.yml reads, the RabbitMQ topology the
platform declares, the scrape and the alerts of deploy/prometheus."""
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from devstack.run import module_exists, processes

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
DEFINITIONS = DEPLOY / "rabbitmq" / "definitions.json"

# The oldest Kubernetes these manifests are meant for and the newest whose schemas kubernetes-validate carries.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
# kubernetes-validate knows only Kubernetes' own kinds, not those of CRDs: these are checked by hand below.
CUSTOM_KINDS = {"RabbitmqCluster", "MongoDBCommunity", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
SERVICES = processes()  # what `make run` starts: each service's module:Class
TRAINOPS_SERVICES = [name for name in SERVICES if name != "gateway"]
SECRET_LIKE = re.compile(r"PASSWORD|TOKEN|SECRET")
REFRESH = "run `make deploy-files`"


class _Loader(yaml.SafeLoader):
    """Plain YAML. nameko teaches SafeLoader its `${VAR:default}` substitution once any test has loaded
    config.yml; the compose file's own `${VAR:?}` must stay as written."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if not tag.startswith("!")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_yaml(path):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)


def config_text():
    return (ROOT / "config.yml").read_text(encoding="utf-8")


def config_variables():
    """The environment variables config.yml reads: every `${NAME:default}`."""
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)[:}]", config_text()))


def config_default(name):
    return re.search(r"\$\{" + name + r":([^}]*)\}", config_text()).group(1)


def database_names():
    """The database of every service and the gateway: "<DATABASE_PREFIX>_<name>"."""
    return {"{}_{}".format(config_default("DATABASE_PREFIX"), name) for name in SERVICES}


def nameko_command(module):
    return ["nameko", "run", "--config", "config.yml", module]


def heredoc(script, marker):
    """The text of the first `<<MARKER` here-document in a shell script."""
    match = re.search(r"<<" + marker + r"\n(.*?)\n" + marker + r"\n", script, re.S)
    assert match, "no <<{} here-document".format(marker)
    return match.group(1)


def dockerfile():
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def image_uid():
    return int(re.search(r"^USER (\d+)", dockerfile(), re.M).group(1))


# -- the image --------------------------------------------------------------------------------------

def test_one_non_root_python_311_image_holds_every_service_and_the_gateway():
    text = dockerfile()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    requires = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert (3, 11) >= tuple(map(int, requires.groups()))
    # The runtime dependencies come pinned from pyproject.toml; the dev extras stay out.
    assert "COPY pyproject.toml" in text and "['project']['dependencies']" in text and "[dev]" not in text
    copied = set(re.findall(r"^COPY (\S+) ", text, re.M))
    assert "config.yml" in copied
    for name, module in SERVICES.items():
        assert module_exists(module), module
        assert module.split(".")[0] in copied, "{} is not in the image".format(module)
    assert image_uid() > 0
    assert re.search(r"^CMD \[\"nameko\", \"run\", \"--config\", \"config.yml\", ", text, re.M)
    # The build context is the repository root: keep the virtualenv and local data out of it.
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignored)


# -- compose ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose():
    return load_yaml(COMPOSE_DIR / "compose.yaml")


def test_the_compose_file_follows_the_compose_specification(compose):
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    # The draft its $schema names (spelt with a trailing "#", which jsonschema does not look up).
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join("{}: {}".format("/".join(map(str, e.absolute_path)), e.message) for e in errors)


def test_compose_runs_every_service_from_the_one_image_with_the_command_devstack_uses(compose):
    services = compose["services"]
    images = set()
    for name, module in SERVICES.items():
        service = services[name]
        assert service["command"] == nameko_command(module)
        assert (COMPOSE_DIR / service["build"]["context"]).resolve() == ROOT
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["restart"] in ("always", "unless-stopped")
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert service["depends_on"]["mongo-init"]["condition"] == "service_completed_successfully"
        images.add(service["image"])
    assert len(images) == 1
    for name in TRAINOPS_SERVICES:
        assert services[name]["healthcheck"]["test"] == ["CMD", "python", "-m", "ops.probe", name]
        assert services[name]["deploy"]["replicas"] >= 2
    gateway = services["gateway"]
    assert "/alive" in " ".join(gateway["healthcheck"]["test"])
    port = gateway["environment"]["GATEWAY_PORT"]
    assert "127.0.0.1:{}/alive".format(port) in " ".join(gateway["healthcheck"]["test"])
    assert gateway["ports"][0].endswith(":" + port)
    assert gateway["environment"]["GATEWAY_HOST"] == "0.0.0.0"
    for name, service in services.items():
        assert service.get("restart") in ("always", "unless-stopped", "no"), name
        assert "healthcheck" in service or name == "mongo-init", name


def test_compose_sets_only_what_config_yml_reads_and_takes_every_secret_from_the_environment(compose):
    known = config_variables()
    for name in SERVICES:
        environment = compose["services"][name]["environment"]
        assert set(environment) <= known, set(environment) - known
        assert environment["QUEUE_TYPE"] == "quorum"
        # The retry delays name the retry queues of deploy/rabbitmq/definitions.json: not overridden.
        assert "EVENT_RETRY_DELAYS" not in environment
    # A secret has no default in the file: it is required (`:?`) or empty (`:-`, say no SMTP login).
    text = "\n".join(line for line in (COMPOSE_DIR / "compose.yaml").read_text(encoding="utf-8").splitlines()
                     if not line.lstrip().startswith("#"))
    for name, operator, default in re.findall(r"\$\{([A-Z_]+)(:[-?])?([^}]*)\}", text):
        if SECRET_LIKE.search(name):
            assert operator == ":?" or (operator == ":-" and default == ""), name
    # The same required settings in env.example, with no value for a secret.
    example = dict(line.split("=", 1) for line in (COMPOSE_DIR / "env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert required <= set(example), required - set(example)
    assert all(example[name] == "" for name in example if SECRET_LIKE.search(name))


def test_compose_runs_a_three_member_mongodb_replica_set(compose):
    services = compose["services"]
    members = ["mongo1", "mongo2", "mongo3"]
    for name in members:
        command = services[name]["command"]
        assert command[0] == "mongod" and command[command.index("--replSet") + 1] == "rs0"
        assert "transactionLifetimeLimitSeconds=15" in command
        assert "ports" not in services[name]
    uri = urlsplit(services["partners"]["environment"]["MONGO_URI"])
    assert uri.netloc == ",".join("{}:27017".format(m) for m in members)
    assert uri.query == "replicaSet=rs0"
    init = (COMPOSE_DIR / "mongo-init.js").read_text()
    assert '_id: "rs0"' in init
    assert re.findall(r'host: "(\w+):27017"', init) == members
    assert set(services["mongo-init"]["depends_on"]) == set(members)


def test_compose_rabbitmq_loads_the_deploy_definitions_at_boot_with_a_user_from_the_environment(compose):
    rabbitmq = compose["services"]["rabbitmq"]
    assert re.fullmatch(r"rabbitmq:[\d.]+-management", rabbitmq["image"])
    mounts = {target: (COMPOSE_DIR / source).resolve()
              for source, target, *_ in (volume.split(":") for volume in rabbitmq["volumes"]) if "/" in source}
    assert mounts["/etc/rabbitmq/definitions/02-topology.json"] == DEFINITIONS
    conf = next(target for target in mounts if target.startswith("/etc/rabbitmq/conf.d/"))
    assert mounts[conf] == COMPOSE_DIR / "rabbitmq.conf"
    settings = dict(line.split(" = ") for line in (COMPOSE_DIR / "rabbitmq.conf").read_text().splitlines()
                    if line and not line.startswith("#"))
    assert settings["load_definitions"] == "/etc/rabbitmq/definitions"
    # A broker that loads definitions at boot creates no vhost and no user: the first file brings them.
    script = mounts[rabbitmq["entrypoint"][1]].read_text()
    assert "/etc/rabbitmq/definitions/01-users.json" in script and "exec docker-entrypoint.sh" in script
    users = json.loads(heredoc(script, "JSON").replace("${RABBITMQ_USER}", "u").replace("${RABBITMQ_PASSWORD}", "p"))
    assert users["vhosts"] == [{"name": "/"}]
    assert users["permissions"] == [{"user": "u", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]
    assert "01-users.json" < "02-topology.json"  # the broker imports the folder in name order
    assert compose["services"]["partners"]["environment"]["AMQP_URI"].startswith(
        "amqp://${RABBITMQ_USER:?set RABBITMQ_USER}:${RABBITMQ_PASSWORD:?set RABBITMQ_PASSWORD}@rabbitmq:5672/")


def test_compose_prometheus_scrapes_the_gateway_as_deploy_prometheus_does_with_its_alerts(compose):
    prometheus = compose["services"]["prometheus"]
    mounts = {target: (COMPOSE_DIR / source).resolve()
              for source, target, *_ in (volume.split(":") for volume in prometheus["volumes"]) if "/" in source}
    assert mounts["/etc/prometheus/prometheus.yml"] == COMPOSE_DIR / "prometheus.yml"
    assert mounts["/etc/prometheus/alerts.yml"] == DEPLOY / "prometheus" / "alerts.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]

    base = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    ours = load_yaml(COMPOSE_DIR / "prometheus.yml")
    assert ours["rule_files"] == base["rule_files"] == ["alerts.yml"]
    assert ours["global"] == base["global"]
    [base_job] = [job for job in base["scrape_configs"] if job["job_name"] == "trainops"]
    [job] = [job for job in ours["scrape_configs"] if job["job_name"] == "trainops"]
    port = compose["services"]["gateway"]["environment"]["GATEWAY_PORT"]
    assert job["static_configs"] == [{"targets": ["gateway:{}".format(port)]}]
    token_file = job["authorization"].pop("credentials_file")
    base_job["authorization"].pop("credentials_file")
    assert {k: v for k, v in job.items() if k != "static_configs"} == \
           {k: v for k, v in base_job.items() if k != "static_configs"}
    # The token file is written from OPERATOR_TOKEN by the container's entrypoint, into its tmpfs.
    assert "> {}".format(token_file) in prometheus["entrypoint"][2]
    assert str(Path(token_file).parent) in prometheus["tmpfs"]
    assert prometheus["environment"]["OPERATOR_TOKEN"].startswith("${OPERATOR_TOKEN:?")


# -- Kubernetes ---------------------------------------------------------------------------------------

def kustomize_documents(folder):
    """(kustomization, [every document of every resource it lists])."""
    kustomization = load_yaml(folder / "kustomization.yaml")
    documents = []
    for resource in kustomization["resources"]:
        path = (folder / resource).resolve()
        assert path.is_relative_to(folder.resolve()), resource
        documents += [doc for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader) if doc]
    return kustomization, documents


@pytest.fixture(scope="module")
def k8s():
    kustomization, documents = kustomize_documents(K8S)
    _, monitoring = kustomize_documents(K8S / "monitoring")
    return kustomization, documents + monitoring


def of_kind(documents, kind):
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def generator(kustomization, name):
    [found] = [g for g in kustomization["configMapGenerator"] if g["name"] == name]
    return found


def settings_env():
    return dict(line.split("=", 1) for line in (K8S / "settings.env").read_text(encoding="utf-8").splitlines()
                if line and not line.startswith("#"))


def secret_script():
    return (K8S / "create-secrets.sh").read_text(encoding="utf-8")


def created_secrets():
    """{secret name: [keys]} that create-secrets.sh makes."""
    made = {}
    for name, arguments in re.findall(r"create secret generic (\S+)((?:[^\n]*\\\n)*[^\n]*)", secret_script()):
        made[name] = re.findall(r"--from-literal=([\w.-]+)=", arguments)
    return made


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_is_valid_kubernetes(k8s, version):
    _, documents = k8s
    errors = []
    for doc in documents:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append("{} {}: {}: {}".format(doc["kind"], doc["metadata"]["name"],
                                                 ".".join(map(str, error.path)), error.message))
    assert not errors, "\n".join(errors)
    assert {doc["kind"] for doc in documents} >= {"Namespace", "Deployment", "PodDisruptionBudget", "Service", "Ingress"}


def test_every_service_has_a_deployment_with_replicas_probes_resources_and_a_disruption_budget(k8s):
    kustomization, documents = k8s
    deployments = of_kind(documents, "Deployment")
    budgets = of_kind(documents, "PodDisruptionBudget")
    assert [image["name"] for image in kustomization["images"]] == ["trainops"]
    for name, module in SERVICES.items():
        deployment = deployments["trainops-{}".format(name)]
        assert deployment["spec"]["replicas"] >= 2
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        [container] = pod["spec"]["containers"]
        assert container["image"] == "trainops"
        assert container["command"] == nameko_command(module)
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, (name, kind)
        if name == "gateway":
            port = {p["name"]: p["containerPort"] for p in container["ports"]}
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert port["http"] == int(env["GATEWAY_PORT"]) and env["GATEWAY_HOST"] == "0.0.0.0"
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"] == {"path": "/alive", "port": "http"}
        else:
            # Each pod reads the heartbeat of its own process, never the RPC any replica may answer.
            assert container["readinessProbe"]["exec"]["command"] == ["python", "-m", "ops.probe", name]
            for probe in ("startupProbe", "livenessProbe"):
                assert container[probe]["exec"]["command"] == ["python", "-m", "ops.probe", name, "--live"]
            # A heartbeat is stale after 3 beats of 5 s: liveness restarts only after it has been for a while,
            # and gives a starting process the startup probe's time first, not its own.
            liveness = container["livenessProbe"]
            assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 3 * 5
            assert "initialDelaySeconds" not in liveness
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == image_uid()
        assert spec["enableServiceLinks"] is False and spec["automountServiceAccountToken"] is False
        # Exactly one budget selects this Deployment's pods, and it lets one go at a time.
        selecting = [b for b in budgets.values()
                     if b["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()]
        assert len(selecting) == 1, name
        assert selecting[0]["spec"]["maxUnavailable"] == 1
        others = [d for other, d in deployments.items() if other != deployment["metadata"]["name"]]
        assert not any(selecting[0]["spec"]["selector"]["matchLabels"].items()
                       <= d["spec"]["template"]["metadata"]["labels"].items() for d in others)


def test_the_configuration_is_the_repository_config_yml_and_the_secrets_are_references(k8s):
    kustomization, documents = k8s
    assert (K8S / "config.yml").read_bytes() == (ROOT / "config.yml").read_bytes(), REFRESH
    assert generator(kustomization, "trainops-config")["files"] == ["config.yml"]
    assert generator(kustomization, "trainops-settings")["envs"] == ["settings.env"]
    known = config_variables()
    settings = settings_env()
    assert set(settings) <= known, set(settings) - known
    assert settings["QUEUE_TYPE"] == "quorum"
    assert not [name for name in settings if SECRET_LIKE.search(name)]
    assert "DATABASE_PREFIX" not in settings and "EVENT_RETRY_DELAYS" not in settings
    # No secret value is committed: the Secrets are made by create-secrets.sh and the MongoDB operator.
    assert not of_kind(documents, "Secret")
    made = created_secrets()
    assert set(made["trainops-secrets"]) <= known, set(made["trainops-secrets"]) - known
    assert {"OPERATOR_TOKEN", "UNSUBSCRIBE_SECRET", "FEED_SECRET", "AMQP_URI"} <= set(made["trainops-secrets"])
    [mongodb] = of_kind(documents, "MongoDBCommunity").values()
    made_by_operator = {mongodb["spec"]["users"][0]["connectionStringSecretName"]: ["connectionString.standard"]}
    for deployment in of_kind(documents, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert {"name": "config", "mountPath": "/app/config.yml", "subPath": "config.yml",
                "readOnly": True} in container["volumeMounts"]
        assert {"name": "config", "configMap": {"name": "trainops-config"}} in pod["volumes"]
        assert [source for source in container["envFrom"]] == [
            {"configMapRef": {"name": "trainops-settings"}}, {"secretRef": {"name": "trainops-secrets"}}]
        assert {e["name"] for e in container["env"]} <= known
        for variable in container["env"]:
            if SECRET_LIKE.search(variable["name"]) or variable["name"].endswith("_URI"):
                reference = variable["valueFrom"]["secretKeyRef"]
                assert reference["key"] in {**made, **made_by_operator}[reference["name"]]
    assert "MONGO_URI" in {e["name"] for d in of_kind(documents, "Deployment").values()
                           for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_rabbitmq_is_a_three_node_cluster_that_loads_the_deploy_definitions(k8s):
    kustomization, documents = k8s
    assert (K8S / "definitions.json").read_bytes() == DEFINITIONS.read_bytes(), REFRESH
    definitions = generator(kustomization, "trainops-rabbitmq-definitions")
    assert definitions["files"] == ["definitions.json"]
    assert definitions["options"]["disableNameSuffixHash"] is True  # named in the custom resource
    for queue in json.loads(DEFINITIONS.read_text())["queues"]:
        assert queue["arguments"]["x-queue-type"] == "quorum", queue["name"]

    [(name, cluster)] = of_kind(documents, "RabbitmqCluster").items()
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert cluster["spec"]["replicas"] >= 3 and cluster["spec"]["replicas"] % 2 == 1
    compose = load_yaml(COMPOSE_DIR / "compose.yaml")
    assert cluster["spec"]["image"] == compose["services"]["rabbitmq"]["image"]
    assert "load_definitions = /etc/rabbitmq/definitions" in cluster["spec"]["rabbitmq"]["additionalConfig"]
    pod = cluster["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["name"] == "rabbitmq"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: (volumes[m["name"]], m["subPath"]) for m in container["volumeMounts"]}
    assert sorted(mounts) == ["/etc/rabbitmq/definitions/01-users.json", "/etc/rabbitmq/definitions/02-topology.json"]
    topology, key = mounts["/etc/rabbitmq/definitions/02-topology.json"]
    assert topology["configMap"]["name"] == "trainops-rabbitmq-definitions" and key == "definitions.json"
    users, key = mounts["/etc/rabbitmq/definitions/01-users.json"]
    assert key in created_secrets()[users["secret"]["secretName"]]

    # The users file create-secrets.sh writes: the vhost, and the user of AMQP_URI with every right on it.
    script = secret_script()
    users_json = json.loads(heredoc(script, "JSON").replace("${amqp_password}", "p").replace("${admin_password}", "a"))
    assert users_json["vhosts"] == [{"name": "/"}]
    assert {"user": "trainops", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"} in users_json["permissions"]
    uri = re.search(r'AMQP_URI="([^"]+)"', script).group(1)
    assert uri == "amqp://trainops:${amqp_password}@${rabbitmq_host}:5672/"
    assert re.search(r'rabbitmq_host="{}\.\$\{{ns\}}\.svc"'.format(name), script)
    budget = next(b for b in of_kind(documents, "PodDisruptionBudget").values()
                  if b["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name})
    assert budget["spec"]["maxUnavailable"] == 1


def test_mongodb_is_a_three_member_replica_set_with_a_user_for_every_service_database(k8s):
    _, documents = k8s
    [(name, mongodb)] = of_kind(documents, "MongoDBCommunity").items()
    spec = mongodb["spec"]
    assert mongodb["apiVersion"] == "mongodbcommunity.mongodb.com/v1"
    assert spec["type"] == "ReplicaSet" and spec["members"] >= 3 and spec["members"] % 2 == 1
    assert spec["security"]["authentication"]["modes"] == ["SCRAM"]
    [user] = spec["users"]
    assert {role["db"] for role in user["roles"]} == database_names()
    assert {role["name"] for role in user["roles"]} == {"readWrite"}
    assert "trainops-mongodb-password" == user["passwordSecretRef"]["name"]
    assert "trainops-mongodb-password" in created_secrets()
    compose = load_yaml(COMPOSE_DIR / "compose.yaml")
    assert spec["version"].split(".")[0] == compose["services"]["mongo1"]["image"].split(":")[1].split(".")[0]
    assert spec["additionalMongodConfig"]["setParameter"] == {"transactionLifetimeLimitSeconds": 15}
    labels = spec["statefulSet"]["spec"]["template"]["metadata"]["labels"]
    assert any(b["spec"]["selector"]["matchLabels"] == labels for b in of_kind(documents, "PodDisruptionBudget").values())


def test_the_gateway_is_reached_through_a_service_and_an_ingress_at_public_url(k8s):
    _, documents = k8s
    [(name, service)] = of_kind(documents, "Service").items()
    gateway_pod = of_kind(documents, "Deployment")["trainops-gateway"]["spec"]["template"]
    assert service["spec"]["selector"] == gateway_pod["metadata"]["labels"]
    [ingress] = of_kind(documents, "Ingress").values()
    [rule] = ingress["spec"]["rules"]
    public_url = urlsplit(settings_env()["PUBLIC_URL"])
    assert rule["host"] == public_url.hostname
    assert public_url.scheme == "https" and ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == name
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}


def test_prometheus_operator_scrapes_the_gateway_as_job_trainops_with_the_alerts_of_deploy_prometheus(k8s):
    _, documents = k8s
    [monitor] = of_kind(documents, "ServiceMonitor").values()
    [service] = of_kind(documents, "Service").values()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # The alerts ask for up{job="trainops"}: the job takes its name from this label of the Service.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "trainops"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    credentials = endpoint["authorization"]["credentials"]
    assert credentials["key"] in created_secrets()[credentials["name"]]
    [rule] = of_kind(documents, "PrometheusRule").values()
    assert rule["spec"] == load_yaml(DEPLOY / "prometheus" / "alerts.yml"), REFRESH


def selects(selector, labels):
    """Whether a label selector (matchLabels and matchExpressions) selects a pod with `labels`."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if not {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[operator]:
            return False
    return True


def alert_jobs():
    """The scrape jobs the alerts ask about: up{job="..."}."""
    return set(re.findall(r'job="([^"]+)"', (DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8")))


def test_every_pod_serves_its_own_counters_on_the_metrics_port_and_a_pod_monitor_scrapes_each(k8s):
    # Off in config.yml (`make run` and the tests run several services on one host); on in the cluster.
    assert config_default("METRICS_PORT") == "" and config_default("METRICS_HOST") == "127.0.0.1"
    settings = settings_env()
    port = int(settings["METRICS_PORT"])
    assert settings["METRICS_HOST"] == "0.0.0.0"
    _, documents = k8s
    [monitor] = of_kind(documents, "PodMonitor").values()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
    deployments = of_kind(documents, "Deployment")
    for name in SERVICES:
        pod = deployments["trainops-{}".format(name)]["spec"]["template"]
        assert selects(monitor["spec"]["selector"], pod["metadata"]["labels"]), name
        [container] = pod["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert ports.get(endpoint["port"]) == port, name
    # Not RabbitMQ's pods nor MongoDB's: they have their own metrics, or none.
    [rabbitmq] = of_kind(documents, "RabbitmqCluster")
    [mongodb] = of_kind(documents, "MongoDBCommunity").values()
    assert not selects(monitor["spec"]["selector"], {"app.kubernetes.io/name": rabbitmq})
    assert not selects(monitor["spec"]["selector"],
                       mongodb["spec"]["statefulSet"]["spec"]["template"]["metadata"]["labels"])
    # The gateway's ServiceMonitor stays, for the shared gauges; both keep the samples' `service` label.
    [service_monitor] = of_kind(documents, "ServiceMonitor").values()
    assert service_monitor["spec"]["endpoints"][0]["honorLabels"] is True
    # The jobs the alerts name: "trainops" from the gateway Service's label, the other set by relabeling.
    [service] = of_kind(documents, "Service").values()
    jobs = {service["metadata"]["labels"][service_monitor["spec"]["jobLabel"]]}
    jobs |= {r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"}
    assert jobs == alert_jobs() == {"trainops", "trainops-processes"}


def test_compose_prometheus_scrapes_every_replica_of_every_process_on_its_metrics_port(compose):
    ours = load_yaml(COMPOSE_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in ours["scrape_configs"]}
    assert alert_jobs() <= set(jobs)
    job = jobs["trainops-processes"]
    assert job["metrics_path"] == "/metrics" and "authorization" not in job
    # Docker's DNS answers a service's name with every one of its containers: each replica is a target.
    [discovery] = job["dns_sd_configs"]
    assert discovery["type"] == "A" and sorted(discovery["names"]) == sorted(SERVICES)
    for name in SERVICES:
        service = compose["services"][name]
        assert int(service["environment"]["METRICS_PORT"]) == discovery["port"], name
        assert service["environment"]["METRICS_HOST"] == "0.0.0.0", name
        # On the project's network only, never published on the host.
        assert not any(str(p).endswith(":{}".format(discovery["port"])) for p in service.get("ports", [])), name


def test_deploy_prometheus_scrapes_the_gateway_and_every_process_pod(k8s):
    base = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in base["scrape_configs"]}
    assert alert_jobs() <= set(jobs)
    job = jobs["trainops-processes"]
    assert job["metrics_path"] == "/metrics" and "authorization" not in job
    kustomization, documents = k8s
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": [kustomization["namespace"]]}}]
    [keep] = [rule for rule in job["relabel_configs"] if rule.get("action") == "keep"]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name",
                                     "__meta_kubernetes_pod_container_port_name"]
    # The label and the port name every Deployment's pod carries.
    for deployment in of_kind(documents, "Deployment").values():
        pod = deployment["spec"]["template"]
        [container] = pod["spec"]["containers"]
        assert any(re.fullmatch(keep["regex"], "{};{}".format(pod["metadata"]["labels"]["app.kubernetes.io/name"],
                                                                 p["name"])) for p in container["ports"])


def test_the_pods_run_unprivileged_on_a_read_only_root_filesystem(k8s):
    _, documents = k8s
    for deployment in of_kind(documents, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = pod["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
        assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    # Nor does Python write bytecode next to the code.
    assert "PYTHONDONTWRITEBYTECODE=1" in dockerfile()


# -- the README ---------------------------------------------------------------------------------------

def test_the_deploy_readme_has_a_capacity_section_for_the_measured_figures():
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert re.search(r"^## Capacity$", readme, re.M)
    assert "<!-- capacity figures -->" in readme.split("## Capacity", 1)[1]
