# Two commands do everything on a fresh machine; each installs what it needs first (scripts/bootstrap.sh), and
# `make test` also installs or starts the services the tests use (scripts/services.sh).
PY := .venv/bin/python

.PHONY: env services demo test lint bench clean

env:
	@bash scripts/bootstrap.sh

services:
	@bash scripts/services.sh

demo: env
	$(PY) -m devtools.demo

test: env services
	$(PY) -m pytest

lint: env
	$(PY) -m ruff check .

bench: env
	$(PY) bench/lite_fps.py
	$(PY) bench/encode_memory.py
	$(PY) bench/queue.py
	$(PY) bench/api.py

clean:
	rm -rf out bench/results .pytest_cache
