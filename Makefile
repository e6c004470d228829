# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1

.PHONY: demo test lint format clean chromium

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

# The browser tests drive Debian's Chromium through Playwright (Playwright's own browser
# downloads are not reachable offline); install it when missing and we may (root, apt).
chromium:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "no /usr/bin/chromium: the browser tests will be skipped"

test: lint chromium
	$(PY) -m pytest

format: $(INSTALLED)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) build output .pytest_cache .ruff_cache
