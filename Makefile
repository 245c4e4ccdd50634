# Two entry points for a fresh machine (Python 3.10+, make, bash): `make demo` and `make test`.
# Both create .venv and prepare a private AIRFLOW_HOME; `make demo` installs only the provider and the demo's photos
# (the demo extra: scikit-image), `make test` the provider with its test extra (pytest, the cluster suite's providers,
# ruff, mypy, scikit-image).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
export AIRFLOW_HOME := $(CURDIR)/.airflow-home
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags_examples
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test check install services clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[test]"
	@touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[demo]"
	@touch $(DEMO_STAMP)

install: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python dags_examples/_demo.py $(DEMO_ARGS)

test: $(STAMP) check services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The cluster suite (tests/cluster) runs Postgres and Redis as plain processes, and the browser test
# (tests/deployment/test_sam3_tab_in_browser.py) drives headless Chromium through chromedriver: Debian's packages,
# installed once. Without them `make test` fails here (and the tests would fail too): it never skips them.
services:
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1; then :; else \
		echo "installing postgresql and redis-server (Debian packages) for tests/cluster"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server; \
	fi
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; else \
		echo "installing chromium and chromium-driver (Debian packages) for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

# Lint, formatting and types (ruff and mypy, configured in pyproject.toml) before any test runs.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .airflow-home out .pytest_cache
