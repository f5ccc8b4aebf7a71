# Two commands do everything on a fresh machine; each installs what it needs first (scripts/bootstrap.sh), and
# `make test` also installs or starts the services the tests use (scripts/services.sh).
PY := .venv/bin/python

.PHONY: env services demo test lint bench clean cluster-up cluster-down

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

# A three-node RabbitMQ cluster on this machine (beside the machine's own node on 5672), to try the bridge on;
# prints the SONICFLOW_AMQP_URL to export. Needs root or the rabbitmq user, and only the standard library.
cluster-up:
	python3 -m devtools.rabbit_cluster up

cluster-down:
	python3 -m devtools.rabbit_cluster down

clean:
	rm -rf out bench/results .pytest_cache
