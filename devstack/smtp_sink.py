"""A local SMTP server that keeps every message it receives as a file, for `make run` and the tests.

Each message lands in `<directory>/<UTC timestamp>-<counter>.eml`, raw as received, under two added
headers with the envelope (`X-Envelope-From`, `X-Envelope-To`). `refuse(code[, text])` makes it answer
RCPT and DATA with that code until `accept()`, to play a mail server that is failing for a while (4xx)
or refusing for good (5xx), quoting the address if asked to as real ones do.

`SmtpSink` runs the server as a child process (`python -m devstack.smtp_sink`), not on a thread:
under eventlet's monkey patching aiosmtpd's thread is a green thread, so its asyncio loop counts as
running in every green thread of the process, and a second sink (or any asyncio.run) then fails with
"Cannot run the event loop while another loop is running". The refuse switch is therefore a file in
the directory, which the server reads at every RCPT and DATA.
"""
import argparse
import email.parser
import email.policy
import itertools
import logging
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from aiosmtpd.controller import Controller

from devstack import ChildServer, REPO_ROOT, VAR, free_port, listening, port_taken, stop_process

log = logging.getLogger("devstack.smtp_sink")

REFUSAL_TEXT = {4: "Mailbox temporarily unavailable, try again later", 5: "Mailbox unavailable"}
REFUSE_FILE = ".refuse"  # holds the code to answer with; not a .eml, so messages() ignores it
START_TIMEOUT = 10
STOP_TIMEOUT = 10


def mask_email(address):
    local, at, domain = address.partition("@")
    return "{}***@{}".format(local[:1], domain) if at else "***"


class SmtpSink(ChildServer):
    def __init__(self, host="127.0.0.1", port=0, directory=VAR / "mail", log_path=None):
        self.host = host
        self.port = port
        self.directory = Path(directory).resolve()
        self.log_path = log_path  # where its one line per message goes; None: our stderr
        self._process = None

    def start(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self.accept()  # a refusal left behind by an earlier run must not carry over
        if not self.port:
            self.port = free_port(self.host)
        elif port_taken(self.port, self.host):
            # Checked first because the readiness probe would otherwise reach whatever listens there.
            raise RuntimeError("port {} is already in use".format(self.port))
        # Its own session, so a Ctrl-C in the terminal leaves it to whoever started it; its stdout
        # only repeats what we know, its stderr has one line per message and any error.
        stderr = open(self.log_path, "ab") if self.log_path else None
        self._process = subprocess.Popen(
            [sys.executable, "-m", "devstack.smtp_sink", "--host", self.host, "--port", str(self.port),
             "--dir", str(self.directory)],
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            start_new_session=True)
        if stderr:
            stderr.close()  # the child has its own copy
        deadline = time.monotonic() + START_TIMEOUT
        while not listening(self.host, self.port):
            if self._process.poll() is not None:
                raise RuntimeError("the SMTP sink exited with status {} (its error is above)".format(
                    self._process.returncode))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the SMTP sink did not listen on {}:{} within {} s".format(
                    self.host, self.port, START_TIMEOUT))
            time.sleep(0.05)
        return self

    def stop(self):
        if self._process is None:
            return
        stop_process(self._process, STOP_TIMEOUT)
        self._process = None

    def restart(self):
        """Start again after a crash, on the same port and directory."""
        self._process = None
        return self.start()

    def refuse(self, code=451, text=None):
        """Answer RCPT and DATA with `code` until `accept()`. `text` replaces the usual reply text;
        `{rcpt}` in it becomes the address, as real servers quote it (Postfix: `550 5.1.1
        <a@q1.gov.vn>: Recipient address rejected: User unknown`)."""
        if code // 100 not in REFUSAL_TEXT:
            raise ValueError("a refusal is a 4xx or 5xx SMTP code, not {}".format(code))
        partial = self.directory / (REFUSE_FILE + ".partial")
        partial.write_text("{}\n{}".format(code, text or ""), encoding="utf-8")
        partial.replace(self.directory / REFUSE_FILE)  # never read half-written

    def accept(self):
        (self.directory / REFUSE_FILE).unlink(missing_ok=True)

    def messages(self):
        """Every message received, oldest first, with \\n line ends: the files keep SMTP's \\r\\n, which
        would otherwise end up in every decoded text part."""
        parser = email.parser.BytesParser(policy=email.policy.default)
        return [parser.parsebytes(path.read_bytes().replace(b"\r\n", b"\n"))
                for path in sorted(self.directory.glob("*.eml"))]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


class Recorder:
    """aiosmtpd's handler: stores what it accepts; runs in the server process."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self._counter = itertools.count(1)

    def refusal(self, address=""):
        try:
            code, _, text = (self.directory / REFUSE_FILE).read_text(encoding="utf-8").partition("\n")
        except FileNotFoundError:
            return None
        text = text or REFUSAL_TEXT[int(code) // 100]
        return "{} {}".format(int(code), text.replace("{rcpt}", address))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = self.refusal(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        refusal = self.refusal(", ".join(envelope.rcpt_tos))
        if refusal:
            return refusal
        path = self.store(envelope)
        log.info("mail from %s to %s stored as %s", mask_email(envelope.mail_from),
                 ", ".join(mask_email(rcpt) for rcpt in envelope.rcpt_tos), path.name)
        return "250 OK queued as {}".format(path.stem)

    def store(self, envelope):
        # Microseconds then a counter, so the names sort in arrival order.
        name = "{}-{:06d}.eml".format(
            datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ"), next(self._counter))
        head = "X-Envelope-From: {}\r\nX-Envelope-To: {}\r\n".format(
            envelope.mail_from, ", ".join(envelope.rcpt_tos)).encode("utf-8")
        path = self.directory / name
        partial = path.with_suffix(".partial")
        partial.write_bytes(head + envelope.original_content)
        partial.replace(path)  # whoever lists the directory never sees half a message
        return path


def main():
    parser = argparse.ArgumentParser(description="Local SMTP sink: every message becomes a .eml file.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--dir", default=str(VAR / "mail"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # it logs every address in full at INFO
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as cleanly as on Ctrl-C
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(Recorder(directory), hostname=args.host, port=args.port,
                            enable_SMTPUTF8=True)
    controller.start()
    print("SMTP sink on {}:{}, mail goes to {}/".format(args.host, args.port, directory), flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    controller.stop()


if __name__ == "__main__":
    main()
