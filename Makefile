PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PEERS := .venv-peers
PEERS_STAMP := $(PEERS)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres]'
	@# Debian's chromium for the dashboard's browser test; without root the test skips visibly
	@command -v chromium >/dev/null || (export DEBIAN_FRONTEND=noninteractive; apt-get install -y chromium || (apt-get update && apt-get install -y chromium)) >/dev/null 2>&1 || echo 'chromium not installed (needs root): tests/test_dashboard_browser.py will skip'
	touch $(STAMP)

$(PEERS_STAMP): benchmarks/peers/requirements.txt
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet -r benchmarks/peers/requirements.txt
	touch $(PEERS_STAMP)

demo: $(STAMP)
	$(PY) examples/orders.py

test: $(STAMP)
	$(PY) -m pytest -n auto -q

bench: $(STAMP) $(PEERS_STAMP)
	$(PY) benchmarks/run.py --peer-python $(PEERS)/bin/python --rounds 3

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

clean:
	rm -rf $(VENV) $(PEERS) .baton .pytest_cache
