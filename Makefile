# The two commands a newcomer runs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 7637
DATA   ?= ./data

.PHONY: run test bench clean

# Re-install whenever pyproject.toml changes; the install is editable, so code edits need none.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m vecstore.server.demo --data $(DATA) --host $(HOST) --port $(PORT)
	$(PY) -m vecstore.server --data $(DATA) --host $(HOST) --port $(PORT)

# pytest's own exit code goes through untouched (5 = no tests ran is a failure, not hidden).
test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/core.py

clean:
	rm -rf $(VENV) build *.egg-info
