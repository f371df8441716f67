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
# Kinds whose pods are not trainops processes but run beside them (the exporter, the backup job).
CUSTOM_KINDS = CUSTOM_KINDS | {"ScaledObject", "TriggerAuthentication"}
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


def run_with_fakes(script_text, fakes, env, cwd):
    """Run a deploy shell script with the commands in `fakes` ({name: shell body}) first on the PATH."""
    import os
    import subprocess
    bin_dir = Path(cwd) / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in fakes.items():
        path = bin_dir / name
        path.write_text("#!/usr/bin/env bash\n" + body + "\n")
        path.chmod(0o755)
    script = Path(cwd) / "script.sh"
    script.write_text(script_text)
    done = subprocess.run(["bash", str(script)], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PATH="{}:{}".format(bin_dir, os.environ["PATH"]), **env))
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def interpolated(value):
    """A compose value as compose makes it, each `${NAME...}` standing as `NAME` (urlsplit cannot read
    the `?` of `${NAME:?message}`)."""
    return re.sub(r"\$\{([A-Z_]+)(:[-?][^}]*)?\}", r"\1", value)


def processes_with_broker_users():
    """The processes that have a broker user of their own: every service and the gateway."""
    return sorted(SERVICES)


def dockerfile():
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def image_uid():
    return int(re.search(r"^USER (\d+)", dockerfile(), re.M).group(1))


# -- the image --------------------------------------------------------------------------------------

def test_one_non_root_python_311_image_holds_every_service_and_the_gateway():
    text = dockerfile()
    # The base by digest, the same in both stages.
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim@sha256:[0-9a-f]{64}$", text, re.M)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    requires = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert (3, 11) >= tuple(map(int, requires.groups()))
    # The runtime dependencies from the hashed lock and nothing else: no resolution, no build of the project.
    assert "RUN pip install --require-hashes --no-deps -r requirements.lock" in text
    assert "pip install -e" not in text and "[dev]" not in text
    copied = set(re.findall(r"^COPY (?:--from=\S+ )?(.+) \S+$", text, re.M))
    copied = {name for line in copied for name in line.split()}
    assert {"config.yml", "deploy/requirements.lock"} <= copied
    for name, module in SERVICES.items():
        assert module_exists(module), module
        assert module.split(".")[0] in copied, "{} is not in the image".format(module)
    assert image_uid() > 0
    assert re.search(r"^CMD \[\"nameko\", \"run\", \"--config\", \"config.yml\", ", text, re.M)
    # The build context is the repository root: keep the virtualenv and local data out of it, but let the
    # locks of deploy/ in.
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git", "deploy/*", "!deploy/requirements.lock", "!deploy/sbom-tools.lock"} <= set(ignored)


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
        # Each process holds its own secrets and no other's.
        assert ("OPERATOR_TOKEN" in environment) == (name == "gateway"), name
        for secret in ("UNSUBSCRIBE_SECRET", "SMTP_PASSWORD", "SMTP_USER"):
            assert (secret in environment) == (name == "notifications"), (name, secret)
        assert ("FEED_SECRET" in environment) == (name == "scheduling"), name
    # A secret has no default in the file: it is required (`:?`) or empty (`:-`, say no SMTP login).
    # (`$${VAR}` is compose's escape: the container's shell reads it, from the environment compose set.)
    text = "\n".join(line for line in (COMPOSE_DIR / "compose.yaml").read_text(encoding="utf-8").splitlines()
                     if not line.lstrip().startswith("#"))
    for name, operator, default in re.findall(r"(?<!\$)\$\{([A-Z_]+)(:[-?])?([^}]*)\}", text):
        if SECRET_LIKE.search(name):
            assert operator == ":?" or (operator == ":-" and default == ""), name
    # The same required settings in env.example, with no value for a secret.
    example = dict(line.split("=", 1) for line in (COMPOSE_DIR / "env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    required = set(re.findall(r"(?<!\$)\$\{([A-Z_]+):\?", text))
    assert required <= set(example), required - set(example)
    assert all(example[name] == "" for name in example if SECRET_LIKE.search(name))


def test_compose_runs_a_three_member_mongodb_replica_set_with_authentication_and_a_user_per_process(compose):
    services = compose["services"]
    members = ["mongo1", "mongo2", "mongo3"]
    for name in members:
        command = services[name]["command"]
        assert command[0] == "mongod" and command[command.index("--replSet") + 1] == "rs0"
        assert "transactionLifetimeLimitSeconds=15" in command
        # The members authenticate to one another (keyfile) and so demand authentication of clients.
        assert command[command.index("--keyFile") + 1] == "/run/mongo/keyfile"
        assert "/run/mongo" in services[name]["tmpfs"]
        assert services[name]["environment"]["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGO_ROOT_PASSWORD:?")
        assert "ports" not in services[name]
    entrypoint = (COMPOSE_DIR / "mongo-entrypoint.sh").read_text()
    assert "/run/mongo/keyfile" in entrypoint and "chmod 400" in entrypoint and "exec docker-entrypoint.sh" in entrypoint
    init = (COMPOSE_DIR / "mongo-init.js").read_text()
    assert '_id: "rs0"' in init
    assert re.findall(r'host: "(\w+):27017"', init) == members
    assert set(services["mongo-init"]["depends_on"]) == set(members)
    # Each process connects as its own user, which mongo-init.js allows its own database alone.
    assert 'for (const name of ["partners", "scheduling", "registration", "notifications", "gateway"])' in init
    assert 'users["trainops-" + name] = [{ role: "readWrite", db: prefix + "_" + name }];' in init
    assert services["mongo-init"]["environment"]["DATABASE_PREFIX"] == config_default("DATABASE_PREFIX")
    for name in SERVICES:
        uri = urlsplit(interpolated(services[name]["environment"]["MONGO_URI"]))
        assert uri.username == "trainops-{}".format(name)
        assert uri.password == "MONGO_{}_PASSWORD".format(name.upper())
        assert uri.netloc.split("@", 1)[1] == ",".join("{}:27017".format(m) for m in members)
        assert uri.query == "replicaSet=rs0&authSource=admin"
        assert "MONGO_{}_PASSWORD".format(name.upper()) in services["mongo-init"]["environment"]


def test_compose_rabbitmq_loads_the_deploy_definitions_at_boot_with_a_user_per_process(compose, tmp_path):
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
    # The entrypoint runs here with the environment compose gives it, writing into a folder of the test's.
    script = mounts[rabbitmq["entrypoint"][1]].read_text()
    assert "exec docker-entrypoint.sh" in script
    passwords = {name: "pw-" + name for name in re.findall(r"RABBITMQ_(\w+)_PASSWORD", " ".join(rabbitmq["environment"]))}
    run_with_fakes(script.replace("/etc/rabbitmq/definitions", str(tmp_path / "definitions")),
                   {"chown": "true", "docker-entrypoint.sh": "true"},
                   {"RABBITMQ_{}_PASSWORD".format(k): v for k, v in passwords.items()}, tmp_path)
    users = json.loads((tmp_path / "definitions" / "01-users.json").read_text())
    assert users["vhosts"] == [{"name": "/"}]
    names = {user["name"]: user for user in users["users"]}
    assert set(names) == {"admin"} | {"trainops-{}".format(p) for p in processes_with_broker_users()}
    assert users["permissions"] == [{"user": "admin", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]
    assert "01-users.json" < "02-topology.json"  # the broker imports the folder in name order
    # What each may do is in the topology file (backbone/grants.py), for exactly these users.
    granted = {p["user"] for p in json.loads(DEFINITIONS.read_text())["permissions"]}
    assert granted == set(names) - {"admin"}
    for process in processes_with_broker_users():
        uri = urlsplit(interpolated(compose["services"][process]["environment"]["AMQP_URI"]))
        assert uri.username == "trainops-{}".format(process)
        # The password the broker got for this user is the one this process connects with.
        assert uri.password == "RABBITMQ_{}_PASSWORD".format(process.upper())
        assert names[uri.username]["password"] == passwords[process.upper()]
        assert uri.hostname == "rabbitmq" and uri.port == 5672


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
    assert {doc["kind"] for doc in documents} >= {"Namespace", "Deployment", "PodDisruptionBudget", "Service", "Ingress",
                                                  "NetworkPolicy", "CronJob", "PersistentVolumeClaim"}


def test_every_service_has_a_deployment_with_replicas_probes_resources_and_a_disruption_budget(k8s):
    kustomization, documents = k8s
    deployments = of_kind(documents, "Deployment")
    budgets = of_kind(documents, "PodDisruptionBudget")
    assert [image["name"] for image in kustomization["images"]] == ["trainops"]
    for name, module in SERVICES.items():
        deployment = deployments["trainops-{}".format(name)]
        # The replica counts deploy/README.md recommends: 2 of each, 3 or more of the two that KEDA scales
        # (then the Deployment carries none: an apply would reset what the autoscaler chose).
        scaled = scaled_objects(documents).get(deployment["metadata"]["name"])
        if scaled:
            assert "replicas" not in deployment["spec"] and scaled["spec"]["minReplicaCount"] >= 3
        else:
            assert deployment["spec"]["replicas"] >= 2
        pod = deployment["spec"]["template"]
        # No two replicas on one node while the nodes suffice; spread over zones where there are any.
        spread = {c["topologyKey"]: c for c in pod["spec"]["topologySpreadConstraints"]}
        assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
        assert spread["kubernetes.io/hostname"]["maxSkew"] == 1
        assert "topology.kubernetes.io/zone" in spread
        for constraint in spread.values():
            assert constraint["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
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
            # A pod being replaced keeps answering while the endpoints and the proxies forget it.
            pause = container["lifecycle"]["preStop"]["exec"]["command"]
            assert pause[0] == "sleep" and int(pause[1]) >= 5
            assert pod["spec"]["terminationGracePeriodSeconds"] >= int(pause[1]) + 15
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


def scaled_objects(documents):
    """{Deployment name: its ScaledObject}."""
    return {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in documents if doc["kind"] == "ScaledObject"}


def trainops_deployments(documents):
    """The Deployments of the trainops processes (not the exporter's)."""
    return {name: doc for name, doc in of_kind(documents, "Deployment").items()
            if doc["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name") == "trainops"}


@pytest.fixture(scope="module")
def made_secrets(tmp_path_factory):
    """{secret: {key: value}} that create-secrets.sh makes, run here against a kubectl that records."""
    folder = tmp_path_factory.mktemp("create-secrets")
    record = folder / "secrets.jsonl"
    kubectl = """
if [ "$3" = "get" ] || [ "$1" = "get" ]; then exit 1; fi
if [ "$1" = "create" ] && [ "$2" = "namespace" ]; then exit 0; fi
shift 2  # --namespace NS
python3 - "$@" >> "{}" <<'PY'
import json, sys
args = sys.argv[1:]
assert args[:3] == ["create", "secret", "generic"], args
print(json.dumps({{"name": args[3], "data": dict(a.split("=", 2)[1:] for a in args[4:])}}))
PY
""".format(record)
    run_with_fakes(secret_script(), {"kubectl": kubectl}, {"SMTP_USER": "mailer", "SMTP_PASSWORD": "mail-pw"}, folder)
    made = {}
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        made[entry["name"]] = entry["data"]
    return made


def test_the_configuration_is_the_repository_config_yml_and_the_secrets_are_references(k8s, made_secrets):
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
    [mongodb] = of_kind(documents, "MongoDBCommunity").values()
    by_operator = {user["connectionStringSecretName"]: {"connectionString.standard"} for user in mongodb["spec"]["users"]}
    by_script = {name: set(data) for name, data in made_secrets.items()}
    for user in mongodb["spec"]["users"]:
        assert user["passwordSecretRef"]["name"] in by_script, user["name"]
    assert made_secrets["trainops-secrets"]["SMTP_USER"] == "mailer"
    for name, deployment in trainops_deployments(documents).items():
        process = name.replace("trainops-", "", 1)
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert {"name": "config", "mountPath": "/app/config.yml", "subPath": "config.yml",
                "readOnly": True} in container["volumeMounts"]
        assert {"name": "config", "configMap": {"name": "trainops-config"}} in pod["volumes"]
        # The settings for everyone; each secret by name, to the one process that needs it.
        assert container["envFrom"] == [{"configMapRef": {"name": "trainops-settings"}}]
        env = {e["name"]: e for e in container["env"]}
        assert set(env) <= known
        for variable in env.values():
            if SECRET_LIKE.search(variable["name"]) or variable["name"].endswith("_URI"):
                reference = variable["valueFrom"]["secretKeyRef"]
                assert reference["key"] in {**by_script, **by_operator}[reference["name"]], variable
        assert env["AMQP_URI"]["valueFrom"]["secretKeyRef"] == {"name": "trainops-amqp", "key": process}
        assert env["MONGO_URI"]["valueFrom"]["secretKeyRef"]["name"] == "trainops-mongodb-{}-uri".format(process)
        assert ("OPERATOR_TOKEN" in env) == (process == "gateway"), process
        for secret in ("UNSUBSCRIBE_SECRET", "SMTP_USER", "SMTP_PASSWORD"):
            assert (secret in env) == (process == "notifications"), (process, secret)
        assert ("FEED_SECRET" in env) == (process == "scheduling"), process
    assert made_secrets["trainops-operator"]["OPERATOR_TOKEN"]
    assert {"UNSUBSCRIBE_SECRET", "FEED_SECRET"} <= set(made_secrets["trainops-secrets"])
    # Long enough for the services' own check (backbone.config.required_secret).
    assert all(len(made_secrets["trainops-secrets"][k]) >= 32 for k in ("UNSUBSCRIBE_SECRET", "FEED_SECRET"))


def test_rabbitmq_is_a_three_node_cluster_that_loads_the_deploy_definitions(k8s, made_secrets):
    kustomization, documents = k8s
    assert (K8S / "definitions.json").read_bytes() == DEFINITIONS.read_bytes(), REFRESH
    definitions = generator(kustomization, "trainops-rabbitmq-definitions")
    assert definitions["files"] == ["definitions.json"]
    assert definitions["options"]["disableNameSuffixHash"] is True  # named in the custom resource
    shipped = json.loads(DEFINITIONS.read_text())
    for queue in shipped["queues"]:
        assert queue["arguments"]["x-queue-type"] == "quorum", queue["name"]

    [(name, cluster)] = of_kind(documents, "RabbitmqCluster").items()
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert cluster["spec"]["replicas"] >= 3 and cluster["spec"]["replicas"] % 2 == 1
    # No two nodes on one Kubernetes node.
    [rule] = cluster["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert rule["topologyKey"] == "kubernetes.io/hostname"
    assert rule["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}
    compose = load_yaml(COMPOSE_DIR / "compose.yaml")
    assert cluster["spec"]["image"] == compose["services"]["rabbitmq"]["image"]
    assert "load_definitions = /etc/rabbitmq/definitions" in cluster["spec"]["rabbitmq"]["additionalConfig"]
    pod = cluster["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["name"] == "rabbitmq"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: (volumes[m["name"]], m["subPath"]) for m in container["volumeMounts"]}
    assert sorted(mounts) == ["/etc/rabbitmq/definitions/01-users.json", "/etc/rabbitmq/definitions/02-topology.json"]
    topology_volume, key = mounts["/etc/rabbitmq/definitions/02-topology.json"]
    assert topology_volume["configMap"]["name"] == "trainops-rabbitmq-definitions" and key == "definitions.json"
    users_volume, key = mounts["/etc/rabbitmq/definitions/01-users.json"]

    # The users file create-secrets.sh writes: the vhost, a user per process (with the password of that
    # process's AMQP_URI), KEDA's (may only look) and admin's; what each process may do is in the topology.
    users = json.loads(made_secrets[users_volume["secret"]["secretName"]][key])
    assert users["vhosts"] == [{"name": "/"}]
    passwords = {user["name"]: user["password"] for user in users["users"]}
    processes = {"trainops-{}".format(p) for p in processes_with_broker_users()}
    assert set(passwords) == processes | {"admin", "trainops-keda"}
    assert {p["user"] for p in shipped["permissions"]} == processes
    assert {"user": "trainops-keda", "vhost": "/", "configure": "^$", "write": "^$", "read": "^$"} in users["permissions"]
    host = "{}.trainops.svc".format(name)
    for process in processes_with_broker_users():
        uri = urlsplit(made_secrets["trainops-amqp"][process])
        assert (uri.username, uri.hostname, uri.port) == ("trainops-{}".format(process), host, 5672)
        assert passwords[uri.username] == uri.password
    keda = urlsplit(made_secrets["trainops-keda"]["host"])
    assert keda.username == "trainops-keda" and passwords["trainops-keda"] == keda.password
    budget = next(b for b in of_kind(documents, "PodDisruptionBudget").values()
                  if b["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name})
    assert budget["spec"]["maxUnavailable"] == 1


def test_mongodb_is_a_three_member_replica_set_with_a_user_per_process_allowed_its_own_database(k8s):
    _, documents = k8s
    [(name, mongodb)] = of_kind(documents, "MongoDBCommunity").items()
    spec = mongodb["spec"]
    assert mongodb["apiVersion"] == "mongodbcommunity.mongodb.com/v1"
    assert spec["type"] == "ReplicaSet" and spec["members"] >= 3 and spec["members"] % 2 == 1
    assert spec["security"]["authentication"]["modes"] == ["SCRAM"]
    users = {user["name"]: user for user in spec["users"]}
    prefix = config_default("DATABASE_PREFIX")
    for process in SERVICES:
        user = users["trainops-{}".format(process)]
        assert user["roles"] == [{"name": "readWrite", "db": "{}_{}".format(prefix, process)}], process
        assert user["connectionStringSecretName"] == "trainops-mongodb-{}-uri".format(process)
    assert {db for u in users.values() for db in [r["db"] for r in u["roles"] if r["name"] == "readWrite"]} == database_names()
    assert users["trainops-backup"]["roles"] == [{"name": "backup", "db": "admin"}]
    assert users["trainops-restore"]["roles"] == [{"name": "restore", "db": "admin"}]
    assert {r["name"] for r in users["trainops-monitor"]["roles"]} == {"clusterMonitor", "read"}
    compose = load_yaml(COMPOSE_DIR / "compose.yaml")
    assert spec["version"].split(".")[0] == compose["services"]["mongo1"]["image"].split(":")[1].split(".")[0]
    assert spec["additionalMongodConfig"]["setParameter"] == {"transactionLifetimeLimitSeconds": 15}
    template = spec["statefulSet"]["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert any(b["spec"]["selector"]["matchLabels"] == labels for b in of_kind(documents, "PodDisruptionBudget").values())
    [rule] = template["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert rule["topologyKey"] == "kubernetes.io/hostname" and rule["labelSelector"]["matchLabels"] == labels


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
    return set(re.findall(r'\bjob="([^"]+)"', (DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8")))


def test_every_pod_serves_its_own_counters_on_the_metrics_port_and_a_pod_monitor_scrapes_each(k8s):
    # Off in config.yml (`make run` and the tests run several services on one host); on in the cluster.
    assert config_default("METRICS_PORT") == "" and config_default("METRICS_HOST") == "127.0.0.1"
    settings = settings_env()
    port = int(settings["METRICS_PORT"])
    assert settings["METRICS_HOST"] == "0.0.0.0"
    _, documents = k8s
    monitor = of_kind(documents, "PodMonitor")["trainops-processes"]
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
    for pod_monitor in of_kind(documents, "PodMonitor").values():
        for each in pod_monitor["spec"]["podMetricsEndpoints"]:
            jobs |= {r["replacement"] for r in each["relabelings"] if r["targetLabel"] == "job"}
    assert jobs == alert_jobs() == {"trainops", "trainops-processes", "rabbitmq", "mongodb"}


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
    # The label and the port name every trainops Deployment's pod carries.
    for deployment in trainops_deployments(documents).values():
        pod = deployment["spec"]["template"]
        [container] = pod["spec"]["containers"]
        assert any(re.fullmatch(keep["regex"], "{};{}".format(pod["metadata"]["labels"]["app.kubernetes.io/name"],
                                                                 p["name"])) for p in container["ports"])


def test_the_pods_run_unprivileged_on_a_read_only_root_filesystem(k8s):
    _, documents = k8s
    beside = [d["spec"]["template"]["spec"] for d in of_kind(documents, "Deployment").values()
              if d["metadata"]["name"] not in trainops_deployments(documents)]
    beside += [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in of_kind(documents, "CronJob").values()]
    for pod in beside:  # the exporter and the backup job
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = pod["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    for deployment in trainops_deployments(documents).values():
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


# -- autoscaling, placement, network policies, backups ---------------------------------------------------

def test_keda_scales_registration_and_notifications_on_their_queues(k8s, made_secrets):
    _, documents = k8s
    scaled = scaled_objects(documents)
    assert set(scaled) == {"trainops-registration", "trainops-notifications"}
    deployments = trainops_deployments(documents)
    shipped = {q["name"] for q in json.loads(DEFINITIONS.read_text())["queues"]}
    [authentication] = of_kind(documents, "TriggerAuthentication").values()
    assert all(doc["apiVersion"] == "keda.sh/v1alpha1" for doc in scaled.values()) and \
        authentication["apiVersion"] == "keda.sh/v1alpha1"
    [target] = authentication["spec"]["secretTargetRef"]
    assert target["parameter"] == "host" and target["key"] in made_secrets[target["name"]]
    for name, scaled_object in scaled.items():
        assert name in deployments
        process = name.replace("trainops-", "")
        spec = scaled_object["spec"]
        assert 3 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        queues = set()
        for trigger in spec["triggers"]:
            assert trigger["type"] == "rabbitmq" and trigger["metadata"]["mode"] == "QueueLength"
            assert int(trigger["metadata"]["value"]) > 0
            assert trigger["authenticationRef"]["name"] == authentication["metadata"]["name"]
            queues.add(trigger["metadata"]["queueName"])
        # Its own event queue (declared by deploy) and, for registration, the RPC queue its burst arrives on.
        assert "trainops.{}".format(process) in queues and queues - {"rpc-" + process} <= shipped


def policy_allows(policies, namespace_of, pod, source, port):
    """Whether NetworkPolicies let `source` ({"labels", "namespace"}) reach `pod`'s labels on `port`:
    Kubernetes' rules (a pod no policy selects takes everything; a selected pod, only what a rule allows)."""
    selecting = [p for p in policies if selects(p["spec"]["podSelector"], pod)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            for peer in rule.get("from", []):
                if "namespaceSelector" in peer:
                    if selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": source["namespace"]}) and \
                            selects(peer.get("podSelector", {}), source["labels"]):
                        return True
                elif source["namespace"] == namespace_of and selects(peer["podSelector"], source["labels"]):
                    return True
    return False


def test_only_the_gateway_the_services_and_their_helpers_reach_rabbitmq_and_mongodb(k8s):
    kustomization, documents = k8s
    policies = list(of_kind(documents, "NetworkPolicy").values())
    namespace = kustomization["namespace"]
    [rabbitmq] = of_kind(documents, "RabbitmqCluster")
    rabbitmq_pod = {"app.kubernetes.io/name": rabbitmq}
    [mongodb] = of_kind(documents, "MongoDBCommunity").values()
    mongodb_pod = mongodb["spec"]["statefulSet"]["spec"]["template"]["metadata"]["labels"]

    def pod_of(doc):
        template = doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
        return {"labels": template["metadata"]["labels"], "namespace": namespace}

    ours = [pod_of(d) for d in trainops_deployments(documents).values()]
    assert len(ours) == len(SERVICES)
    for source in ours:
        assert policy_allows(policies, namespace, rabbitmq_pod, source, 5672), source
        assert policy_allows(policies, namespace, mongodb_pod, source, 27017), source
    backup = pod_of(of_kind(documents, "CronJob")["trainops-backup"])
    exporter = pod_of(of_kind(documents, "Deployment")["trainops-mongodb-exporter"])
    assert policy_allows(policies, namespace, mongodb_pod, backup, 27017)
    assert policy_allows(policies, namespace, mongodb_pod, exporter, 27017)
    assert not policy_allows(policies, namespace, rabbitmq_pod, backup, 5672)
    # A pod without the label, in this namespace or another, reaches neither; nor the services.
    strangers = [{"labels": {"app": "debug"}, "namespace": namespace},
                 {"labels": {"app.kubernetes.io/name": "trainops"}, "namespace": "default"}]
    service_pod = of_kind(documents, "Deployment")["trainops-registration"]["spec"]["template"]["metadata"]["labels"]
    for stranger in strangers:
        assert not policy_allows(policies, namespace, rabbitmq_pod, stranger, 5672), stranger
        assert not policy_allows(policies, namespace, mongodb_pod, stranger, 27017), stranger
        assert not policy_allows(policies, namespace, service_pod, stranger, 9100), stranger
    # The members reach one another, and Prometheus the metrics.
    assert policy_allows(policies, namespace, rabbitmq_pod, {"labels": rabbitmq_pod, "namespace": namespace}, 25672)
    assert policy_allows(policies, namespace, mongodb_pod, {"labels": mongodb_pod, "namespace": namespace}, 27017)
    assert policy_allows(policies, namespace, service_pod, {"labels": {}, "namespace": "monitoring"}, 9100)
    assert not policy_allows(policies, namespace, service_pod, {"labels": {}, "namespace": "monitoring"}, 8000)


def test_a_nightly_backup_job_dumps_every_database_with_its_own_user_and_keeps_two_weeks(k8s):
    kustomization, documents = k8s
    [cronjob] = of_kind(documents, "CronJob").values()
    spec = cronjob["spec"]
    assert spec["schedule"] == "0 2 * * *" and spec["timeZone"] == "Asia/Ho_Chi_Minh"
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    compose = load_yaml(COMPOSE_DIR / "compose.yaml")
    assert container["image"] == compose["services"]["mongo1"]["image"] == compose["services"]["backup"]["image"]
    assert container["command"] == ["bash", "/etc/trainops/backup.sh"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MONGO_URI"]["valueFrom"]["secretKeyRef"]["name"] == "trainops-mongodb-backup-uri"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert mounts["/etc/trainops"]["configMap"]["name"] == "trainops-backup-script"
    assert generator(kustomization, "trainops-backup-script")["files"] == ["backup.sh"]
    assert (K8S / "backup.sh").read_bytes() == (DEPLOY / "backup" / "backup.sh").read_bytes(), REFRESH
    claim = mounts[env["BACKUP_DIR"]["value"]]["persistentVolumeClaim"]["claimName"]
    assert claim in of_kind(documents, "PersistentVolumeClaim")
    # The same retention in compose and in the README.
    keep = int(env["BACKUP_KEEP"]["value"])
    backup = compose["services"]["backup"]
    assert int(backup["environment"]["BACKUP_KEEP"]) == keep == 14
    assert "../backup/backup.sh:/etc/trainops/backup.sh:ro" in backup["volumes"]
    assert urlsplit(interpolated(backup["environment"]["MONGO_URI"])).username == "trainops-backup"
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "the newest {} dumps".format(keep) in readme


def test_the_dashboard_is_shipped_to_grafana_and_every_alert_has_a_runbook(k8s):
    kustomization, _ = k8s
    dashboard = DEPLOY / "grafana" / "trainops.json"
    assert (K8S / "monitoring" / "trainops-dashboard.json").read_bytes() == dashboard.read_bytes(), REFRESH
    monitoring = load_yaml(K8S / "monitoring" / "kustomization.yaml")
    [generated] = monitoring["configMapGenerator"]
    assert generated["options"]["labels"] == {"grafana_dashboard": "1"}
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    runbook = readme.split("\n## Runbook\n", 1)[1].split("\n## ", 1)[0]
    alerts = [rule for group in load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"] for rule in group["rules"]]
    for rule in alerts:
        name = rule["alert"]
        assert rule["annotations"]["runbook"] == "deploy/README.md#{}".format(name.lower())
        section = re.search(r"^### {}\n(.*?)(?=^### |\Z)".format(name), runbook, re.S | re.M)
        assert section, "no runbook section for {}".format(name)
        assert len(section.group(1).split()) >= 25, "the runbook of {} says too little".format(name)
