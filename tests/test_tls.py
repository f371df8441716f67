"""TLS for AMQP and MongoDB is a matter of the URIs (deploy/README.md, "TLS for AMQP and MongoDB"): the
services and the gateway run with `amqps://...` (the broker's CA in the trust store: here SSL_CERT_FILE,
a bundle of the system's CAs and the test's) and `mongodb://...&tls=true&tlsCAFile=...` through TLS
endpoints in front of the local RabbitMQ and the embedded database (a certificate made for the test); an
operator's request goes through RPC, the database and the outbox relay; a client that does not trust the
certificate is refused."""
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from kombu import Connection

from tests.helpers import Client, wait_for


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


class TlsEndpoint:
    """Terminates TLS on a loopback port and passes the bytes to a plain server, as a TLS-enabled
    RabbitMQ or mongod would look to a client."""

    def __init__(self, target_port, certificate):
        cert, key = certificate
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        self.serving = threading.Thread(target=self.serve, daemon=True)
        self.serving.start()

    def serve(self):
        while not self.closed:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            if self.closed:
                raw.close()
                return
            threading.Thread(target=self.connect, args=(raw,), daemon=True).start()

    def connect(self, raw):
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # a client that does not trust us hangs up during the handshake
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        # One direction each; a socket is closed only when both are done, so no read is left waiting on
        # a file descriptor that a new connection may already have been given.
        other = threading.Thread(target=self.pipe, args=(client, upstream), daemon=True)
        other.start()
        self.pipe(upstream, client)
        other.join()
        for end in (client, upstream):
            try:
                end.close()
            except OSError:
                pass

    @staticmethod
    def pipe(source, target):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except (OSError, EOFError, ValueError):
            pass
        try:
            target.shutdown(socket.SHUT_WR)  # the other side reads its end, then closes
        except (OSError, EOFError, ValueError):
            pass

    def close(self):
        # Closing the listener does not wake a green thread blocked in accept(): eventlet keeps its
        # wait on the file number, and the next pipe given that number fails ("Second simultaneous
        # read on fileno"). A last connection wakes it, and it returns before the listener closes.
        self.closed = True
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
        except OSError:
            pass
        self.serving.join(5)
        self.listener.close()


@pytest.fixture
def tls_uris(app_config, certificate, tmp_path, monkeypatch):
    amqp = urlsplit(app_config["AMQP_URI"])
    mongo = urlsplit(app_config["MONGO_URI"])
    broker = TlsEndpoint(amqp.port or 5672, certificate)
    database = TlsEndpoint(mongo.port, certificate)
    ca = str(certificate[0])
    # The trust store the AMQP client reads (OpenSSL's default paths): the system's CAs and ours.
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_bytes(Path(ssl.get_default_verify_paths().openssl_cafile).read_bytes() + certificate[0].read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    yield {
        "AMQP_URI": "amqps://{}@127.0.0.1:{}{}".format(amqp.netloc.rsplit("@", 1)[0], broker.port, amqp.path),
        "MONGO_URI": "mongodb://127.0.0.1:{}/?directConnection=true&retryWrites=false&tls=true&tlsCAFile={}".format(
            database.port, ca),
    }
    broker.close()
    database.close()


def test_the_services_work_over_tls_with_the_uris_alone(container_factory, app_config, tls_uris, db):
    import nameko
    from gateway.service import GatewayService
    from services.partners.service import PartnersService
    nameko.config.update(tls_uris)
    for cls in (PartnersService, GatewayService):
        container_factory(cls).start()
    operator = Client(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"])
    code = "TLS-{}".format(uuid.uuid4().hex[:6]).upper()
    created = operator.post("/partners", {"code": code, "name": "Trường Đại học TLS", "kind": "university",
                                          "contact_email": "tls@example.edu.vn"})
    assert created.status_code == 201, created.text
    # The outbox relay published the event over amqps:// (the broker confirmed it).
    wait_for(lambda: db("partners").published_events.find_one({"type": "partner_onboarded",
                                                                "payload.partner_id": created.json()["id"]}))


def test_a_client_that_does_not_trust_the_certificate_is_refused(tls_uris, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE")  # the system's CAs only: ours is not among them
    with pytest.raises(ssl.SSLError, match="(?i)certificate"):
        with Connection(tls_uris["AMQP_URI"], connect_timeout=5) as connection:
            connection.connect()
    # pymongo in a process of its own: its monitor threads and eventlet's hub do not mix in this one.
    probe = ("import sys, pymongo\n"
             "client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=1500)\n"
             "try:\n    client.admin.command('ping')\nexcept pymongo.errors.ServerSelectionTimeoutError as e:\n"
             "    print(e); sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", probe, tls_uris["MONGO_URI"].split("&tlsCAFile=", 1)[0]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "certificate" in done.stdout.lower(), done.stdout + done.stderr
    # The same client with the CA gets in.
    done = subprocess.run([sys.executable, "-c", probe, tls_uris["MONGO_URI"]], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
