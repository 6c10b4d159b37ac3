#!/usr/bin/env bash
# The project's whole test suite, provisioning what it needs: the pinned Kafka
# broker's jars are fetched first (each Kafka test process then starts its own
# broker on a free port and stops it when it exits).
#
#   scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# provide COMMAND PACKAGE: installs Debian's PACKAGE when COMMAND is missing
# (as root, with apt-get), or says in one line what to install.
provide() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
    else
        echo "$1 is missing: install Debian's $2 package (apt-get install -y $2)" >&2
        exit 1
    fi
}

echo "==> Provisioning Apache Kafka for the real-broker tests"
deploy/kafka/kafka.sh fetch
# openssl makes the certificates of the broker that takes only TLS clients.
provide openssl openssl

echo "==> Provisioning promtool and kustomize for the deploy/ tests"
# promtool checks the Prometheus config, the alert rules and their unit tests.
provide promtool prometheus
# The Kubernetes manifests are rendered with kustomize v4 or newer: kubectl
# 1.21+ has it built in; otherwise it is built once into target/tools/bin
# (Debian's own kubectl, 1.20, is too old for the manifests' syntax).
tools="$PWD/target/tools/bin"
export PATH="$tools:$PATH"
if ! kubectl version --client 2>/dev/null | grep -Eq 'Kustomize Version: v([4-9]|[1-9][0-9])' \
    && ! command -v kustomize >/dev/null 2>&1; then
    if ! command -v go >/dev/null 2>&1; then
        echo "kustomize is missing: install kubectl 1.21 or newer, or Go (to build kustomize)" >&2
        exit 1
    fi
    GOBIN="$tools" go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0
fi

echo "==> Provisioning Chromium and playwright-core for the board's browser test"
provide chromium chromium
command -v node >/dev/null 2>&1 || { echo "node is missing: install Node.js 20 or newer" >&2; exit 1; }
# Installs exactly what e2e/board/package-lock.json pins (one package).
(cd e2e/board && npm ci --no-audit --no-fund --silent)

echo "==> Checking the deploy scripts"
bash -n deploy/kafka/kafka.sh scripts/*.sh

echo "==> cargo test --workspace"
cargo test --workspace --locked "$@"

echo "==> The order board in headless Chromium (screenshots in target/e2e/)"
cargo build -p coffee --locked
node e2e/board/board.test.mjs target/debug/coffee
