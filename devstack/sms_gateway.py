"""A local SMS provider that records what it is sent, for `make run` and the tests.

`POST <prefix>/sms` with `{"to": "+84...", "text": "...", "sender": "..."}` answers
`{"id": ..., "status": "accepted", "segments": n}` and appends the message as one JSON line to
`<directory>/sms.jsonl`; `GET <prefix>/sms` lists what was recorded. `fail(503)` makes it answer
that status until `recover()`, to play a provider that is down; two instances with their own
`path_prefix` and directory play the primary and the fallback provider.

It serves from stdlib threads, which are green threads under eventlet's monkey patching; that works.
"""
import argparse
import json
import logging
import re
import signal
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gsm0338  # noqa: F401  (registers the gsm03.38 codec)

from devstack import VAR

log = logging.getLogger("devstack.sms_gateway")

PHONE = re.compile(r"\+?\d{8,15}")


def segments(text):
    """What a provider bills: GSM-7 septets (160 a segment, 153 once split) when the GSM alphabet can
    write the text, else UCS-2 units (70, 67)."""
    try:
        units, single, part = len(text.encode("gsm03.38")), 160, 153
    except UnicodeEncodeError:
        units, single, part = len(text.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else -(-units // part)


def mask_phone(number):
    return "{}***{}".format(number[:5], number[-3:]) if len(number) > 8 else "***"


def problem_with(body):
    """What makes a request body unacceptable, or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    for field in ("to", "text"):
        if not isinstance(body.get(field), str) or not body[field].strip():
            return "'{}' is required and must be a non-empty string".format(field)
    if not PHONE.fullmatch(body["to"]):
        return "'to' must be a phone number: 8 to 15 digits, optionally after a +"
    if body.get("sender") is not None and not isinstance(body["sender"], str):
        return "'sender' must be a string"
    return None


class SmsGateway:
    def __init__(self, host="127.0.0.1", port=0, directory=VAR / "sms", path_prefix=""):
        self.host = host
        self.port = port
        self.directory = Path(directory)
        self.journal = self.directory / "sms.jsonl"
        self.path = path_prefix.rstrip("/") + "/sms"
        self.failure_status = None
        self._write_lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def url(self):
        return "http://{}:{}{}".format(self.host, self.port, self.path)

    def start(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self._server = _Server((self.host, self.port), _Handler)
        self._server.gateway = self
        self.port = self._server.server_address[1]
        # A short poll interval because stop() waits for one (tests start and stop many gateways).
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sms-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def fail(self, status=503):
        self.failure_status = status

    def recover(self):
        self.failure_status = None

    def messages(self):
        if not self.journal.exists():
            return []
        with self.journal.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]

    def record(self, body):
        message = {
            "id": str(uuid.uuid4()),
            "received_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "to": body["to"],
            "sender": body.get("sender"),
            "text": body["text"],
            "segments": segments(body["text"]),
        }
        with self._write_lock, self.journal.open("a", encoding="utf-8") as journal:
            journal.write(json.dumps(message, ensure_ascii=False) + "\n")
        log.info("sms to %s accepted as %s, segments: %d", mask_phone(message["to"]), message["id"],
                 message["segments"])
        return message

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


class _Server(ThreadingHTTPServer):
    # Under eventlet the accept loop only runs when other green threads yield, and with the
    # stdlib's listen backlog of 5 a burst of concurrent senders overflows it: clients stall for
    # seconds or are dropped.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    server_version = "devstack-sms"

    def do_GET(self):
        gateway = self.server.gateway
        if self.path != gateway.path:
            return self._reply(404, {"error": "not found"})
        self._reply(200, gateway.messages())

    def do_POST(self):
        gateway = self.server.gateway
        # Read the body whatever the answer: closing a socket with unread data resets the connection,
        # and the client would see a reset instead of our status.
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != gateway.path:
            return self._reply(404, {"error": "not found"})
        if gateway.failure_status:
            return self._reply(gateway.failure_status, {"error": "provider unavailable (simulated)"})
        try:
            body = json.loads(raw)
        except ValueError:
            return self._reply(400, {"error": "the body is not valid JSON"})
        problem = problem_with(body)
        if problem:
            return self._reply(400, {"error": problem})
        message = gateway.record(body)
        self._reply(200, {"id": message["id"], "status": "accepted", "segments": message["segments"]})

    def _reply(self, status, payload):
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        # Request lines carry no personal data, but `record` already logs one line per message.
        log.debug(format, *args)


def main():
    parser = argparse.ArgumentParser(description="Local SMS gateway: records every message it is sent.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9025)
    parser.add_argument("--dir", default=str(VAR / "sms"))
    parser.add_argument("--path-prefix", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as cleanly as on Ctrl-C
    with SmsGateway(args.host, args.port, args.dir, args.path_prefix) as gateway:
        print("SMS gateway on {}, messages go to {}".format(gateway.url, gateway.journal), flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
