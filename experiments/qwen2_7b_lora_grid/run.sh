#!/usr/bin/env bash
# The original study's entry point. Needs a CUDA GPU and the Hugging Face hub; elsewhere it
# stops at once with a message saying what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv/bin/rr ]; then echo "run 'make setup' first (no .venv/bin/rr)" >&2; exit 2; fi
exec .venv/bin/rr experiment run experiments/qwen2_7b_lora_grid/config.yaml "$@"
