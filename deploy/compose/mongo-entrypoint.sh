#!/usr/bin/env bash
# Each mongod of the replica set: the members authenticate to one another with a shared keyfile, written
# here from MONGO_REPLICA_SECRET into a tmpfs (mongod wants it readable by its own user only), then the
# image's entrypoint runs, which makes the root user (MONGO_INITDB_ROOT_*) on a new data volume.
set -euo pipefail

: "${MONGO_REPLICA_SECRET:?set MONGO_REPLICA_SECRET}"
umask 077
printf '%s' "$MONGO_REPLICA_SECRET" > /run/mongo/keyfile
chown mongodb:mongodb /run/mongo/keyfile
chmod 400 /run/mongo/keyfile

exec docker-entrypoint.sh "$@"
