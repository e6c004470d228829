# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1

.PHONY: demo test lint format clean

$(INSTALLED): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

demo: $(INSTALLED)
	$(PY) -m diffuse_kit generate "a red circle on a white background" --seed 1 --out output

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest

format: $(INSTALLED)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) build output .pytest_cache .ruff_cache
