#!/usr/bin/env bash
# Makes the Secrets trainops needs, with random passwords and tokens, in the namespace $NAMESPACE
# (trainops). A Secret that exists already is left as it is: running this again rotates nothing.
# Needs kubectl (pointed at the cluster) and openssl. SMTP_USER and SMTP_PASSWORD, when set in the
# environment, go into trainops-secrets for the mail server.
#
#   trainops-secrets            OPERATOR_TOKEN, UNSUBSCRIBE_SECRET, FEED_SECRET, AMQP_URI, SMTP_USER,
#                               SMTP_PASSWORD: the secret settings of config.yml, read by every trainops
#                               container
#   trainops-rabbitmq-users     users.json: the virtual host "/", the user "trainops" (AMQP_URI's) and
#                               "admin" (management UI), loaded by RabbitMQ at boot; admin-password
#   trainops-mongodb-password   password: the MongoDB user "trainops" (the operator then writes the
#                               connection string into trainops-mongodb-uri)
set -euo pipefail

ns="${NAMESPACE:-trainops}"
rabbitmq_host="trainops-rabbitmq.${ns}.svc"

exists() { kubectl --namespace "$ns" get secret "$1" >/dev/null 2>&1; }
random() { openssl rand -hex 24; }

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"

# The RabbitMQ password is in two Secrets (the broker's user file and the services' AMQP_URI): made together.
if exists trainops-secrets && exists trainops-rabbitmq-users; then
    echo "trainops-secrets and trainops-rabbitmq-users exist: left as they are"
elif exists trainops-secrets || exists trainops-rabbitmq-users; then
    echo "only one of trainops-secrets and trainops-rabbitmq-users exists; they share the RabbitMQ" >&2
    echo "password: delete the other one too, then run this again" >&2
    exit 1
else
    amqp_password="$(random)"
    admin_password="$(random)"
    users_json="$(cat <<JSON
{
  "vhosts": [{"name": "/"}],
  "users": [
    {"name": "trainops", "password": "${amqp_password}", "tags": []},
    {"name": "admin", "password": "${admin_password}", "tags": ["administrator"]}
  ],
  "permissions": [
    {"user": "trainops", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "admin", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
  ]
}
JSON
)"
    kubectl --namespace "$ns" create secret generic trainops-rabbitmq-users \
        --from-literal=users.json="$users_json" \
        --from-literal=admin-password="$admin_password"
    kubectl --namespace "$ns" create secret generic trainops-secrets \
        --from-literal=OPERATOR_TOKEN="$(random)" \
        --from-literal=UNSUBSCRIBE_SECRET="$(random)" \
        --from-literal=FEED_SECRET="$(random)" \
        --from-literal=AMQP_URI="amqp://trainops:${amqp_password}@${rabbitmq_host}:5672/" \
        --from-literal=SMTP_USER="${SMTP_USER:-}" \
        --from-literal=SMTP_PASSWORD="${SMTP_PASSWORD:-}"
fi

if exists trainops-mongodb-password; then
    echo "trainops-mongodb-password exists: left as it is"
else
    kubectl --namespace "$ns" create secret generic trainops-mongodb-password \
        --from-literal=password="$(random)"
fi

echo "The operator token: kubectl -n $ns get secret trainops-secrets -o jsonpath='{.data.OPERATOR_TOKEN}' | base64 -d"
