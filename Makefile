# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[test]'
	touch $@

.PHONY: install demo test
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/robust-eval demo --out demo-out

test: install
	$(PIP) install -q tox
	$(VENV)/bin/tox
