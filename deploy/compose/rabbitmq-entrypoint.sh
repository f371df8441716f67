#!/usr/bin/env bash
# The broker loads its definitions at boot from /etc/rabbitmq/definitions/ (rabbitmq.conf), in name
# order: 01-users.json, written here from the passwords in the environment, then 02-topology.json,
# which is deploy/rabbitmq/definitions.json (the topology, and what each user may do). A broker that
# loads definitions at boot creates neither the default virtual host nor a default user, so the first
# file brings both: "admin" (the management UI, every right) and one user per trainops process.
set -euo pipefail

processes=(partners scheduling registration notifications gateway)
: "${RABBITMQ_ADMIN_PASSWORD:?set RABBITMQ_ADMIN_PASSWORD}"
users="{\"name\": \"admin\", \"password\": \"${RABBITMQ_ADMIN_PASSWORD}\", \"tags\": [\"administrator\"]}"
for process in "${processes[@]}"; do
    variable="RABBITMQ_${process^^}_PASSWORD"
    password="${!variable:-}"
    # They go into JSON here and into each AMQP_URI: keep them to characters safe in both.
    if [[ ! "$password" =~ ^[A-Za-z0-9._~-]+$ ]]; then
        echo "set $variable (letters, digits and . _ ~ - only)" >&2
        exit 1
    fi
    users="${users}, {\"name\": \"trainops-${process}\", \"password\": \"${password}\", \"tags\": []}"
done
if [[ ! "$RABBITMQ_ADMIN_PASSWORD" =~ ^[A-Za-z0-9._~-]+$ ]]; then
    echo "RABBITMQ_ADMIN_PASSWORD may hold only letters, digits and . _ ~ -" >&2
    exit 1
fi

mkdir -p /etc/rabbitmq/definitions
umask 077
cat > /etc/rabbitmq/definitions/01-users.json <<JSON
{
  "vhosts": [{"name": "/"}],
  "users": [${users}],
  "permissions": [{"user": "admin", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]
}
JSON
chown rabbitmq:rabbitmq /etc/rabbitmq/definitions/01-users.json

exec docker-entrypoint.sh "$@"
