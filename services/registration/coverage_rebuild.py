"""Rebuild coverage's read model from scratch (the counters `GET /reports/coverage` reads):

    python -m services.registration.coverage_rebuild [--mongo-uri URI] [--database NAME]

After a bulk load written straight to the database, or to check the model: the counters the fold
keeps current and the rebuilt ones agree (tests/test_coverage_read_model.py). Run it while nothing
registers (a fold beside it adds to counters the rebuild then replaces); the fold goes on from the
last event published before the rebuild began. Running it again gives the same counters."""
import argparse
import time

from backbone.config import database_name, load
from backbone.database import mongo_client
from services.registration import store


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mongo-uri", help="MongoDB URI (MONGO_URI of config.yml by default)")
    parser.add_argument("--database", help="registration's database (<DATABASE_PREFIX>_registration by default)")
    args = parser.parse_args(argv)
    config = load()
    client = mongo_client(args.mongo_uri or config["MONGO_URI"])
    if args.database:
        name = args.database
    else:
        from nameko import config as nameko_config
        with nameko_config.patch(config, clear=True):
            name = database_name("registration")
    started = time.monotonic()
    counted = store.rebuild_coverage(client[name])
    print("coverage: {} officials counted into {} in {:.1f} s".format(counted, name, time.monotonic() - started))


if __name__ == "__main__":
    main()
