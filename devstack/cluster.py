"""A three-node RabbitMQ cluster on loopback, for the resilience tests (`make chaos`) and `make soak`.

Production runs three RabbitMQ nodes with quorum queues (deploy/); this starts the same shape from the
installed `rabbitmq-server`, beside the machine's own broker on 5672 and without touching it: each
node has its own name (`trainops-<id>-a@localhost`), AMQP and distribution ports, data and log
directories under one temporary folder, no plugins (so no management or Prometheus port to collide
with), and all three share one Erlang cookie kept in that folder's HOME (the machine's broker keeps
its own). They register with the machine's epmd like any Erlang node, under names nobody else uses.
The second and third node `join_cluster` the first.

    cluster = Cluster(); cluster.start()      # ~15-30 s on a busy 2-core machine
    cluster.amqp_uri()                         # "amqp://guest:guest@127.0.0.1:p1/;amqp://...:p2/;..."
    cluster.stop_node("b"); cluster.start_node("b")    # a clean stop, and a return
    cluster.kill_node("c"); cluster.start_node("c")    # SIGKILL, as the kernel's OOM killer does
    cluster.stop()                             # every node, and the folder

`python -m devstack.cluster` starts one and prints its URIs until Ctrl-C.
"""
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

from devstack import free_port, listening

RABBIT_BIN = "/usr/lib/rabbitmq/bin"
NODES = ("a", "b", "c")
START_TIMEOUT = 120


def _tool(name):
    # The real scripts, not Debian's /usr/sbin wrappers: run as root those switch to the rabbitmq
    # user and drop this cluster's environment.
    path = os.path.join(RABBIT_BIN, name)
    if not os.path.exists(path):
        raise SystemExit("{} not found: install RabbitMQ (sudo apt-get install -y rabbitmq-server)".format(path))
    return path


class Node:
    def __init__(self, cluster, letter):
        self.cluster = cluster
        self.letter = letter
        self.name = "trainops-{}-{}@localhost".format(cluster.id, letter)
        self.port = free_port()
        self.dist_port = free_port()
        self.base = os.path.join(cluster.root, letter)
        self.process = None
        os.makedirs(self.base, exist_ok=True)
        with open(os.path.join(self.base, "rabbitmq.conf"), "w") as conf:
            conf.write("listeners.tcp.1 = 127.0.0.1:{}\n".format(self.port))
            conf.write("loopback_users = none\n")
            # The tests' load is small; a full disk of other people's work must not stop publishing.
            conf.write("disk_free_limit.absolute = 50MB\n")
            conf.write("log.console = false\nlog.file.level = warning\n")
        with open(os.path.join(self.base, "enabled_plugins"), "w") as plugins:
            plugins.write("[].\n")

    def env(self):
        env = dict(os.environ)
        env.update({
            "HOME": self.cluster.root,  # where the shared .erlang.cookie is
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.base, "rabbitmq-env.conf"),  # not /etc's
            "RABBITMQ_CONFIG_FILE": os.path.join(self.base, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(self.base, "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.base, "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.base, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.base, "log"),
            "RABBITMQ_PID_FILE": os.path.join(self.base, "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ERL_ARGS": "+S 1:1 +A 4",  # one scheduler each: the machine has two cores
        })
        env.pop("ERL_FLAGS", None)
        return env

    def ctl(self, *args, timeout=60, check=True):
        done = subprocess.run([_tool("rabbitmqctl"), "-n", self.name, *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError("rabbitmqctl -n {} {}: {}".format(self.name, " ".join(args),
                                                                  (done.stderr or done.stdout).strip()))
        return done.stdout

    def start(self):
        log = open(os.path.join(self.base, "console.log"), "ab")
        self.process = subprocess.Popen([_tool("rabbitmq-server")], env=self.env(), stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def wait_running(self, timeout=START_TIMEOUT):
        """Until the node's broker runs and listens (await_startup fails at once while the node has
        not yet registered with epmd, so it is asked again)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("node {} exited ({}); see {}".format(self.name, self.process.returncode, self.base))
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("node {} did not start within {} s; see {}".format(self.name, timeout, self.base))
            done = subprocess.run([_tool("rabbitmqctl"), "-n", self.name, "await_startup", "--timeout",
                                   str(int(max(left, 1)))], env=self.env(), capture_output=True, timeout=left + 10)
            if done.returncode == 0 and listening("127.0.0.1", self.port):
                return
            time.sleep(0.5)

    def stop(self):
        """A clean stop (rabbitmqctl stop), as a rolling restart does."""
        if self.process and self.process.poll() is None:
            self.ctl("stop", check=False, timeout=60)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self):
        """SIGKILL to the node's whole process group (beam and its helpers)."""
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(30)

    def uri(self, vhost="/"):
        return "amqp://guest:guest@127.0.0.1:{}/{}".format(self.port, "" if vhost == "/" else vhost)


class Cluster:
    def __init__(self, root=None):
        self.id = "{}{}".format(os.getpid(), secrets.token_hex(2))
        self.root = root or tempfile.mkdtemp(prefix="trainops-cluster-")
        cookie = os.path.join(self.root, ".erlang.cookie")
        with open(cookie, "w") as f:
            f.write(secrets.token_hex(20).upper())
        os.chmod(cookie, 0o400)
        self.nodes = {letter: Node(self, letter) for letter in NODES}
        self.started_in = None

    def __getitem__(self, letter):
        return self.nodes[letter]

    def start(self):
        began = time.monotonic()
        for node in self.nodes.values():
            node.start()
        first, *others = self.nodes.values()
        for node in self.nodes.values():
            node.wait_running()
        for node in others:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
        for node in self.nodes.values():
            node.wait_running()
        self.started_in = time.monotonic() - began
        return self

    def running_nodes(self, via=None):
        """The names of the nodes the cluster sees running (asked of `via`, by default any live node)."""
        import json
        for node in ([self.nodes[via]] if via else self.nodes.values()):
            if node.process and node.process.poll() is None:
                try:
                    status = json.loads(node.ctl("cluster_status", "--formatter", "json", timeout=30))
                    return sorted(status.get("running_nodes", []))
                except (RuntimeError, ValueError, subprocess.TimeoutExpired):
                    continue
        return []

    def stop_node(self, letter):
        self.nodes[letter].stop()

    def kill_node(self, letter):
        self.nodes[letter].kill()

    def start_node(self, letter):
        """Start a stopped or killed node again on its data: it rejoins the cluster by itself."""
        node = self.nodes[letter]
        node.start()
        node.wait_running()

    def amqp_uri(self, vhost="/", order=None):
        """Every node's URI, `;`-separated: kombu fails over to the next when one is unreachable."""
        return ";".join(self.nodes[letter].uri(vhost) for letter in (order or NODES))

    def make_vhost(self, name):
        node = self.nodes["a"]
        node.ctl("add_vhost", name)
        node.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")

    def apply_policies(self, vhost, policies):
        """deploy's policies (topology.definitions()["policies"]) on the cluster."""
        import json
        node = next(n for n in self.nodes.values() if n.process and n.process.poll() is None)
        for policy in policies:
            node.ctl("set_policy", "-p", vhost, "--priority", str(policy["priority"]), "--apply-to",
                     policy["apply-to"], policy["name"], policy["pattern"], json.dumps(policy["definition"]))

    def stop(self):
        for node in self.nodes.values():
            node.kill()  # the data goes with the folder: no need for a polite stop
        shutil.rmtree(self.root, ignore_errors=True)


def main():
    cluster = Cluster()
    print("starting three RabbitMQ nodes under {}".format(cluster.root), flush=True)
    try:
        cluster.start()
        print("cluster up in {:.1f} s: AMQP_URI='{}'".format(cluster.started_in, cluster.amqp_uri()), flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
