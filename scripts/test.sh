#!/usr/bin/env bash
# The project's whole test suite, provisioning what it needs: the pinned Kafka
# broker's jars are fetched first (each Kafka test process then starts its own
# broker on a free port and stops it when it exits).
#
#   scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> Provisioning Apache Kafka for the real-broker tests"
deploy/kafka/kafka.sh fetch

echo "==> Checking the deploy scripts"
bash -n deploy/kafka/kafka.sh scripts/*.sh

echo "==> cargo test --workspace"
cargo test --workspace --locked "$@"
