#!/usr/bin/env bash
# Four attacks and the Vaccine defense on the organism family. Usage: ./experiments/attacks_and_defense/run.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv/bin/rr ]; then echo "run 'make setup' first (no .venv/bin/rr)" >&2; exit 2; fi
exec .venv/bin/rr experiment run experiments/attacks_and_defense/config.yaml "$@"
