#!/usr/bin/env bash
# The lower ends of requirements.txt's ranges for the Sonic engine's libraries, checked: installs diffusers,
# transformers and the huggingface_hub / tokenizers they need into a throwaway folder placed before the venv's own,
# and runs the golden parity and loading tests against them. Takes about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(mktemp -d)
trap 'rm -rf "$target"' EXIT
.venv/bin/python -m pip install -q --no-deps --target "$target" \
  diffusers==0.29.2 transformers==4.50.3 "tokenizers>=0.21,<0.22" "huggingface-hub<1"
PYTHONPATH="$target:$PWD" .venv/bin/python -c \
  "import diffusers, transformers; print('diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
PYTHONPATH="$target:$PWD" .venv/bin/python -m pytest -q -p no:cacheprovider tests/sonic/test_golden.py \
  tests/sonic/test_loading.py
