"""`python -m ops.probe <service>`: the readiness and liveness probe of a service container.

Every service process writes a heartbeat file (`ops/heartbeat.py`): every `HEARTBEAT_SECONDS` (5)
it runs the checks of its `health` RPC (MongoDB through its own client, the broker, the outbox) and
writes the result to `<HEARTBEAT_DIR>/trainops-<service>.health` (`/tmp`, the pod's emptyDir). The probe
runs in the pod and reads that file, so it speaks of this very process, not of whichever replica
would answer an RPC:

- ready (exit 0) when the file is fresh (written within 3 intervals), the last check finished within
  3 intervals too, and it found `ok` or `degraded` (an outbox that waits is not helped by taking the
  pod out); not ready (1) when the file is missing, stale or unreadable, or the checks say `down`,
  have not finished yet, or hang;
- `--live`: alive (0) whenever the file is fresh, whatever the checks found: a process whose event
  loop hangs stops writing and is restarted, while an outage of MongoDB or RabbitMQ makes the pods
  unready but never restarts them (a restart would not bring the database back).

One line on stdout says why; Kubernetes and Docker show it. The file path needs nothing but the
standard library (no nameko, no eventlet): a probe every few seconds in every pod costs a few ms.

`--service-wide` asks the service's `health` RPC over AMQP instead (the broker of config.yml's
AMQP_URI, waiting `--timeout` seconds): any replica may answer it, so it says "this service answers
and its dependencies are up", for an operator, not for a pod's probe.
"""
import argparse
import json
import os
import signal
import sys
import time

OK_STATUSES = ("ok", "degraded")
DEFAULT_DIR = "/tmp"
# A heartbeat older than this many intervals means the process stopped writing it: hung or gone.
STALE_AFTER = 3
# Slack over --timeout for starting up, connecting and the reply: the RPC probe never outlives this.
GRACE = 3.0


def heartbeat_path(service, directory=None):
    """Where the process of `service` writes its heartbeat: one file per service and directory."""
    return os.path.join(directory or DEFAULT_DIR, "trainops-{}.health".format(service))


def write_heartbeat(path, record):
    """Replace the file at `path` with `record` (JSON) at once: a probe reads the old or the new one,
    never half of one. The temporary file carries the pid, so two processes never share it."""
    temporary = "{}.{}.tmp".format(path, os.getpid())
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    os.replace(temporary, path)


def describe(service, status, checks):
    """`partners: ok (broker: ok, mongodb: ok, outbox: ok)`, the same line in both modes."""
    if not checks:
        return "{}: {}".format(service, status)
    return "{}: {} ({})".format(service, status, ", ".join("{}: {}".format(k, v) for k, v in sorted(checks.items())))


def check_heartbeat(service, path, live=False, now=None):
    """(exit status, one-line reason) from the heartbeat file at `path`.

    Ages are measured on the monotonic clock, which the writer and the probe share on one host (and
    in one pod): a wall clock stepped by NTP makes no heartbeat look fresh or stale."""
    now = time.monotonic() if now is None else now
    try:
        with open(path, encoding="utf-8") as handle:
            beat = json.load(handle)
        interval = float(beat["interval"])
        age = now - float(beat["beat"])
    except FileNotFoundError:
        return 1, "{}: no heartbeat at {} (not started, or stopped)".format(service, path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return 1, "{}: unreadable heartbeat at {} ({})".format(service, path, type(error).__name__)
    limit = STALE_AFTER * interval
    # Negative: written under another boot's clock, by a process that is gone.
    if not 0 <= age <= limit:
        return 1, "{}: heartbeat stale (last written {:.0f} s ago, expected every {:g} s)".format(
            service, max(age, 0), interval)
    status, checks = beat.get("status", "down"), beat.get("checks") or {}
    if live:
        return 0, describe(service, status, checks)
    checked = beat.get("checked")
    if checked is None:
        return 1, "{}: starting (no health check finished yet)".format(service)
    if now - float(checked) > limit:
        return 1, "{}: health checks hang (none finished for {:.0f} s)".format(service, now - float(checked))
    return (0 if status in OK_STATUSES else 1), describe(service, status, checks)


def check_service_wide(service, timeout, live=False, config_path=None):
    """(exit status, one-line reason) from the service's `health` RPC, whichever replica answers.

    `live`: 0 whenever the service answers at all, and also when the broker itself is unreachable."""
    import logging
    import warnings

    # The line is the answer: not eventlet's deprecation notice that nameko's import brings, nor
    # amqp's notes about the channels it closes.
    warnings.simplefilter("ignore")
    logging.getLogger("amqp").setLevel(logging.ERROR)

    from amqp.exceptions import AMQPError
    from kombu.exceptions import OperationalError
    from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
    from nameko.standalone.rpc import ClusterRpcProxy

    from backbone.config import CONFIG_FILE, install

    install(config_path or CONFIG_FILE)
    try:
        # `expiration`: a request nobody takes within the timeout is dropped by the broker instead of
        # waiting in a stopped service's queue for its next start.
        proxy = ClusterRpcProxy(timeout=timeout, expiration=timeout,
                                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5})
        # nameko keeps a reply queue for 5 minutes after its last use: gone as soon as we have read.
        proxy.reply_listener.queue.auto_delete = True
        with proxy as rpc:
            answer = rpc[service].health()
    except UnknownService:
        return 1, "{}: unknown service (nothing consumes its RPC queue)".format(service)
    except RpcTimeout:
        return 1, "{}: no answer within {:g} s".format(service, timeout)
    except RemoteError as error:  # it answered, with an error
        return (0 if live else 1), "{}: health failed ({})".format(service, error.exc_type)
    except (OSError, AMQPError, OperationalError) as error:  # refused, unreachable, authentication
        return (0 if live else 1), "{}: broker unreachable ({})".format(service, type(error).__name__)
    status = answer.get("status", "down")
    return (0 if live or status in OK_STATUSES else 1), describe(service, status, answer.get("checks"))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Probe a trainops service process by its heartbeat file, or the service by its health RPC.")
    parser.add_argument("service", help="the service name: partners, scheduling, registration, notifications")
    parser.add_argument("--live", action="store_true",
                        help="liveness: succeed while the process keeps its heartbeat, whatever its dependencies say")
    parser.add_argument("--dir", default=DEFAULT_DIR,
                        help="the HEARTBEAT_DIR the service runs with ({})".format(DEFAULT_DIR))
    parser.add_argument("--service-wide", action="store_true",
                        help="ask the service's health RPC over AMQP instead: does any replica answer?")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="with --service-wide: seconds to wait for the answer (5)")
    parser.add_argument("--config", help="with --service-wide: the config.yml the service runs with (the repository's)")
    args = parser.parse_args(argv)
    if not args.service_wide:
        status, reason = check_heartbeat(args.service, heartbeat_path(args.service, args.dir), live=args.live)
        print(reason)
        return status

    def give_up(signum, frame):
        print("{}: no result within {:g} s (broker connection hung)".format(args.service, args.timeout + GRACE))
        sys.exit(1)

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(int(args.timeout + GRACE + 0.999))
    status, reason = check_service_wide(args.service, args.timeout, live=args.live, config_path=args.config)
    print(reason)
    return status


if __name__ == "__main__":
    sys.exit(main())
