#!/usr/bin/env bash
# The default offline study. Usage: ./experiments/organism_scaling/run.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv/bin/rr ]; then echo "run 'make setup' first (no .venv/bin/rr)" >&2; exit 2; fi
exec .venv/bin/rr experiment run experiments/organism_scaling/config.yaml "$@"
