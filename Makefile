# Two commands do everything on a fresh machine; each installs what it needs first (scripts/bootstrap.sh).
PY := .venv/bin/python

.PHONY: env demo test bench clean

env:
	@bash scripts/bootstrap.sh

demo: env
	$(PY) -m devtools.demo

test: env
	$(PY) -m pytest

bench: env
	$(PY) bench/lite_fps.py
	$(PY) bench/encode_memory.py
	$(PY) bench/queue.py
	$(PY) bench/api.py

clean:
	rm -rf out bench/results .pytest_cache
