"""`python -m backbone.probe <service>`: the readiness and liveness probe of a service container.

Asks the service's `health` RPC over AMQP (the broker of config.yml's AMQP_URI) and exits 0 when it
answers `ok` or `degraded` (an outbox that waits is not helped by taking the service out), 1 when it
answers `down` (its MongoDB or broker failed), does not answer within `--timeout`, is unknown, or the
broker cannot be reached. One line on stdout says why; Kubernetes and Docker show it.

`--live` is the liveness variant: 0 whenever the service answers at all, whatever its dependencies say,
and also when the broker itself is unreachable, so that an outage of MongoDB or RabbitMQ marks the
pods not ready but never restarts them (a restart would not bring the database back).

The RPC goes to the service's queue, not to one process: with several replicas, any of them answers.
The probe therefore says "this service answers and its dependencies are up", not "this very replica
does" (see deploy/README.md, "Probes").
"""
import argparse
import logging
import signal
import sys
import warnings

OK_STATUSES = ("ok", "degraded")
# Slack over --timeout for starting up, connecting and the reply: the probe never outlives this.
GRACE = 3.0


def check(service, timeout, live=False, config_path=None):
    """(exit status, one-line reason)."""
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
        # Every probe gets a reply queue of its own, which nameko keeps for 5 minutes after its last
        # use: with probes every few seconds in every pod they pile up. Gone as soon as we have read.
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
    checks = ", ".join("{}: {}".format(k, v) for k, v in sorted((answer.get("checks") or {}).items()))
    return (0 if live or status in OK_STATUSES else 1), "{}: {} ({})".format(service, status, checks)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Probe a trainops service through its health RPC.")
    parser.add_argument("service", help="the service name: partners, scheduling, registration, notifications")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer (5)")
    parser.add_argument("--live", action="store_true",
                        help="liveness: succeed whenever the service answers, whatever its dependencies say")
    parser.add_argument("--config", help="the config.yml the service runs with (the repository's)")
    args = parser.parse_args(argv)
    # A probe's output is its one line: not eventlet's deprecation notice that nameko's import brings,
    # nor amqp's notes about the channels it closes.
    warnings.simplefilter("ignore")
    logging.getLogger("amqp").setLevel(logging.ERROR)

    def give_up(signum, frame):
        print("{}: no result within {:g} s (broker connection hung)".format(args.service, args.timeout + GRACE))
        sys.exit(1)

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(int(args.timeout + GRACE + 0.999))
    status, reason = check(args.service, args.timeout, live=args.live, config_path=args.config)
    print(reason)
    return status


if __name__ == "__main__":
    sys.exit(main())
