# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip

$(VENV)/bin/pip:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first and pinned: an unpinned resolve would fetch a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[parquet]'
	touch $@

# The tests run in tox's own environment (tox.ini), so `make test` needs only tox here.
$(VENV)/bin/tox: | $(VENV)/bin/pip
	$(PIP) install -q tox

.PHONY: install demo test
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/robust-eval demo --out demo-out

test: $(VENV)/bin/tox
	$(VENV)/bin/tox
