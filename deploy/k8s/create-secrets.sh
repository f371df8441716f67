#!/usr/bin/env bash
# Makes the Secrets trainops needs, with random passwords and tokens, in the namespace $NAMESPACE
# (trainops). A Secret that exists already is left as it is: running this again rotates nothing.
# Needs kubectl (pointed at the cluster) and openssl. SMTP_USER and SMTP_PASSWORD, when set in the
# environment, go into trainops-secrets for the mail server.
#
#   trainops-operator           OPERATOR_TOKEN: the gateway's pods alone read it (and the ServiceMonitor)
#   trainops-secrets            UNSUBSCRIBE_SECRET, SMTP_USER, SMTP_PASSWORD (notifications reads them) and
#                               FEED_SECRET (scheduling reads it)
#   trainops-amqp               AMQP_URI of each process (keys partners, scheduling, registration,
#                               notifications, gateway), each with its own broker user
#   trainops-rabbitmq-users     users.json: the virtual host "/", the user of each process (what each may
#                               do is in deploy/rabbitmq/definitions.json), "trainops-keda" (may only
#                               look at queue depths) and "admin" (management UI); admin-password
#   trainops-keda               host: the AMQP URI KEDA reads queue depths with
#   trainops-mongodb-<user>-password   password of each MongoDB user (partners, scheduling, registration,
#                               notifications, gateway, backup, restore, monitor); the MongoDB operator
#                               then writes each connection string into trainops-mongodb-<user>-uri
set -euo pipefail

ns="${NAMESPACE:-trainops}"
rabbitmq_host="trainops-rabbitmq.${ns}.svc"
processes=(partners scheduling registration notifications gateway)
mongodb_users=(partners scheduling registration notifications gateway backup restore monitor)

exists() { kubectl --namespace "$ns" get secret "$1" >/dev/null 2>&1; }
random() { openssl rand -hex 24; }

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"

if exists trainops-operator; then
    echo "trainops-operator exists: left as it is"
else
    kubectl --namespace "$ns" create secret generic trainops-operator --from-literal=OPERATOR_TOKEN="$(random)"
fi

if exists trainops-secrets; then
    echo "trainops-secrets exists: left as it is"
else
    kubectl --namespace "$ns" create secret generic trainops-secrets \
        --from-literal=UNSUBSCRIBE_SECRET="$(random)" \
        --from-literal=FEED_SECRET="$(random)" \
        --from-literal=SMTP_USER="${SMTP_USER:-}" \
        --from-literal=SMTP_PASSWORD="${SMTP_PASSWORD:-}"
fi

# The broker's passwords are in three Secrets (its user file, the processes' URIs, KEDA's): made together.
rabbitmq_secrets=(trainops-rabbitmq-users trainops-amqp trainops-keda)
present=0
for secret in "${rabbitmq_secrets[@]}"; do exists "$secret" && present=$((present + 1)); done
if [ "$present" -eq "${#rabbitmq_secrets[@]}" ]; then
    echo "${rabbitmq_secrets[*]} exist: left as they are"
elif [ "$present" -gt 0 ]; then
    echo "only some of ${rabbitmq_secrets[*]} exist; they share the broker's passwords:" >&2
    echo "delete the others too, then run this again" >&2
    exit 1
else
    admin_password="$(random)"
    keda_password="$(random)"
    users="{\"name\": \"admin\", \"password\": \"${admin_password}\", \"tags\": [\"administrator\"]}"
    users="${users}, {\"name\": \"trainops-keda\", \"password\": \"${keda_password}\", \"tags\": []}"
    uris=()
    for process in "${processes[@]}"; do
        password="$(random)"
        users="${users}, {\"name\": \"trainops-${process}\", \"password\": \"${password}\", \"tags\": []}"
        uris+=("--from-literal=${process}=amqp://trainops-${process}:${password}@${rabbitmq_host}:5672/")
    done
    users_json="$(cat <<JSON
{
  "vhosts": [{"name": "/"}],
  "users": [${users}],
  "permissions": [
    {"user": "admin", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "trainops-keda", "vhost": "/", "configure": "^\$", "write": "^\$", "read": "^\$"}
  ]
}
JSON
)"
    kubectl --namespace "$ns" create secret generic trainops-rabbitmq-users \
        --from-literal=users.json="$users_json" \
        --from-literal=admin-password="$admin_password"
    kubectl --namespace "$ns" create secret generic trainops-amqp "${uris[@]}"
    kubectl --namespace "$ns" create secret generic trainops-keda \
        --from-literal=host="amqp://trainops-keda:${keda_password}@${rabbitmq_host}:5672/"
fi

for user in "${mongodb_users[@]}"; do
    if exists "trainops-mongodb-${user}-password"; then
        echo "trainops-mongodb-${user}-password exists: left as it is"
    else
        kubectl --namespace "$ns" create secret generic "trainops-mongodb-${user}-password" \
            --from-literal=password="$(random)"
    fi
done

echo "The operator token: kubectl -n $ns get secret trainops-operator -o jsonpath='{.data.OPERATOR_TOKEN}' | base64 -d"
