#!/usr/bin/env bash
# Prepare what bench/sonic_gpu.py needs on a lent GPU machine (Python 3.12, torch 2.11, transformers 5.17,
# huggingface_hub 1.33; no diffusers, librosa, av, omegaconf; no network there). Run here, in the repo root:
#
#     devtools/prepare_gpu_carry.sh [OFFICIAL_CHECKOUT]        (default /tmp/sonic-official)
#
# It writes three folders, ignored through .git/info/exclude (never committed), to be named in the device
# call's `carry`:
#   .whl/           wheels for SonicFlow's side: diffusers (the version the project is tested with)
#   .whl_official/  wheels for the official implementation's side, installed into a separate --target and put
#                   first on that subprocess's PYTHONPATH so they shadow the image's newer transformers/hub:
#                   diffusers 0.29.0, transformers 4.43.2, huggingface_hub 0.23.4, tokenizers 0.19.1 (cp312),
#                   accelerate 0.33.0 (the image's accelerate needs a newer hub), omegaconf 2.3.0 +
#                   antlr4-python3-runtime 4.9.3 (sdist only on PyPI: built into a wheel here), importlib_metadata
#   .official/      the official code that the run imports: sonic.py, src/, config/ (jixiaozhong/Sonic; not part
#                   of the project, only carried to the machine). librosa is replaced at run time by a stand-in
#                   (devtools/official_bench.py writes it).
# The device command (docs/benchmarks.md has it too) is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
OFFICIAL=${1:-/tmp/sonic-official}
PY=${PYTHON:-python3}
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform manylinux1_x86_64)

for d in .whl .whl_official .official; do
  grep -qxF "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude
done
rm -rf .whl .whl_official .official
mkdir -p .whl .whl_official .official

DIFFUSERS=$( (.venv/bin/python -c 'import importlib.metadata as m; print(m.version("diffusers"))' 2>/dev/null) || echo 0.42.1)
echo "SonicFlow side: diffusers==$DIFFUSERS"
"$PY" -m pip download -q --no-deps "${PLAT[@]}" -d .whl "diffusers==$DIFFUSERS"

echo "official side"
"$PY" -m pip download -q --no-deps "${PLAT[@]}" -d .whl_official \
  diffusers==0.29.0 transformers==4.43.2 huggingface_hub==0.23.4 tokenizers==0.19.1 \
  accelerate==0.33.0 omegaconf==2.3.0 importlib_metadata==8.0.0
# antlr4-python3-runtime 4.9.3 (omegaconf 2.3 pins 4.9.*) exists only as an sdist: build a pure-Python wheel here.
"$PY" -m pip wheel -q --no-deps --no-binary=:all: -w .whl_official antlr4-python3-runtime==4.9.3

[ -f "$OFFICIAL/sonic.py" ] || { echo "no official checkout at $OFFICIAL (git clone https://github.com/jixiaozhong/Sonic)"; exit 1; }
cp "$OFFICIAL/sonic.py" .official/
cp -r "$OFFICIAL/src" "$OFFICIAL/config" .official/
find .official -name '__pycache__' -prune -exec rm -rf {} +
(cd "$OFFICIAL" && git rev-parse HEAD 2>/dev/null || echo unknown) > .official/COMMIT

du -sh .whl .whl_official .official
echo "total: $(du -scb .whl .whl_official .official | tail -1 | cut -f1) bytes"
ls .whl .whl_official

cat <<'CMD'

Device command (carry: .whl .whl_official .official; timeout_s 590; under 8 min on one H100/H200):
set -o pipefail; export PYTHONUNBUFFERED=1; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/offsite .whl_official/*.whl || exit 3; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; PYTHONPATH=/tmp/site:$PWD python3 bench/sonic_gpu.py --size 512 --seconds 2 --steps 25 --dtype fp16 --device cuda --repeat 3 --official .official --official-python python3 --official-pythonpath /tmp/offsite --memory-seconds 60 --budget-s 470 --out $OUT/sonic_gpu.json 2>&1 | tee $OUT/sonic_gpu.log
CMD
