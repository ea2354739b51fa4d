#!/usr/bin/env bash
# The example in one command: a private RabbitMQ node, the SQLite database, a worker
# with beat (-B, the 03:00 job), the outbox relay and Django's development server.
# Ctrl-C stops them all (the node too). Needs: pip install -e '../../..[django]'.
set -euo pipefail
cd "$(dirname "$0")"
REPO=$(cd ../../.. && pwd)
NODE="$REPO/deploy/local/rabbitmq-node"
RUN="$PWD/.run"
mkdir -p "$RUN"

AMQPTASKS_BROKER_URL=$("$NODE" start --dir "$RUN/node" | tail -n 1)
export AMQPTASKS_BROKER_URL PYTHONPATH="$PWD:$REPO${PYTHONPATH:+:$PYTHONPATH}"
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    wait || true
    "$NODE" stop --dir "$RUN/node" >/dev/null 2>&1 || true
}
trap cleanup EXIT

python manage.py migrate --verbosity 0
amqptasks worker -A exampleproj.amqptasks:app -B -l info >"$RUN/worker.log" 2>&1 &
amqptasks outbox relay -A exampleproj.amqptasks:app >"$RUN/relay.log" 2>&1 &
echo "worker log: $RUN/worker.log; open http://127.0.0.1:${PORT:-8000}/"
python manage.py runserver --noreload "127.0.0.1:${PORT:-8000}"
