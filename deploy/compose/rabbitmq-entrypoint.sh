#!/usr/bin/env bash
# The broker loads its definitions at boot from /etc/rabbitmq/definitions/ (rabbitmq.conf), in name
# order: 01-users.json, written here from RABBITMQ_USER and RABBITMQ_PASSWORD, then 02-topology.json,
# which is deploy/rabbitmq/definitions.json. A broker that loads definitions at boot creates neither
# the default virtual host nor a default user, so the first file brings both.
set -euo pipefail

: "${RABBITMQ_USER:?set RABBITMQ_USER}"
: "${RABBITMQ_PASSWORD:?set RABBITMQ_PASSWORD}"
# They go into JSON here and into AMQP_URI for the services: keep them to characters safe in both.
for value in "$RABBITMQ_USER" "$RABBITMQ_PASSWORD"; do
    if [[ ! "$value" =~ ^[A-Za-z0-9._~-]+$ ]]; then
        echo "RABBITMQ_USER and RABBITMQ_PASSWORD may hold only letters, digits and . _ ~ -" >&2
        exit 1
    fi
done

mkdir -p /etc/rabbitmq/definitions
umask 077
cat > /etc/rabbitmq/definitions/01-users.json <<JSON
{
  "vhosts": [{"name": "/"}],
  "users": [{"name": "${RABBITMQ_USER}", "password": "${RABBITMQ_PASSWORD}", "tags": ["administrator"]}],
  "permissions": [{"user": "${RABBITMQ_USER}", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]
}
JSON
chown rabbitmq:rabbitmq /etc/rabbitmq/definitions/01-users.json

exec docker-entrypoint.sh "$@"
