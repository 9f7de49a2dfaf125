#!/usr/bin/env bash
# Runs checkov from its own virtual environment (.local/checkov-venv).
#
# checkov pins an older pycep-parser than the one the infra tests use to parse modern Bicep,
# so it cannot share the project's .venv. This script creates the isolated venv on first use
# (exact pin below), then passes every argument to checkov.
#
#   scripts/checkov.sh --framework bicep --skip-download -d infra -o json
#   scripts/checkov.sh --install-only     # create/refresh the venv and exit
set -euo pipefail

CHECKOV_VERSION="3.3.30"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-$ROOT/.local/checkov-venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.checkov-$CHECKOV_VERSION"

if [ ! -f "$STAMP" ]; then
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
    touch "$STAMP"
fi

if [ "${1:-}" = "--install-only" ]; then
    exit 0
fi

# No telemetry, no download of external checks or of the Bridgecrew platform's policies.
export BC_SKIP_MAPPING=TRUE
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
exec "$VENV/bin/checkov" "$@"
