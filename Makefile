# Two commands for a newcomer: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests use: the .deb build and checks, real Prometheus, nginx for benchmarks
# and HTTP/2, tinyproxy as a real forward proxy, headless Chromium and its driver for the console's
# browser tests.
APT_PACKAGES := python3 python3-venv python3-dev build-essential dpkg-dev fakeroot lintian \
                prometheus nginx-light tinyproxy wrk iproute2 curl procps chromium chromium-driver
# Named after the list: a machine installed from an older list installs again when the list grows.
APT_STAMP := /var/tmp/eventsink-agent-apt-$(shell echo '$(APT_PACKAGES)' | md5sum | cut -c1-8).stamp

# The suite runs on TEST_WORKERS pytest-xdist workers; tests that must not run beside each other share an
# xdist_group (--dist loadgroup) or are marked `alone` (tests/parallel.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
# The unit tests: no real agent process (supervisor, broker, sink worker), no e2e/faults/packaging/bench.
UNIT_TESTS := tests/agent tests/alarms tests/bus tests/common tests/sinks tests/tools tests/test_import_graph.py tests/test_parallel.py tests/test_docs_contract.py

# The suite's own habits: its one wait helper, and the product's size limits.
UNIT_TESTS += tests/test_helpers.py tests/test_code_size.py tests/test_one_loop.py

.PHONY: demo test lint check bench fuzz soak deb docs apt venv clean

demo: $(STAMP)
	$(BIN)/eventsink-agent demo

test: $(STAMP) apt lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests

# ruff (pyproject.toml): the lint rules and the formatting; part of `make test`.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not agent_process" $(UNIT_TESTS)

bench: $(STAMP) apt
	$(BIN)/python -m tests.bench

fuzz: $(STAMP)
	FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -q tests -k fuzz

# The chaos soak: a real agent, four sinks, three publishers and random faults for SOAK_SECONDS,
# then the exactly-once oracle per sink. SOAK_SEED replays a run's schedule of faults (random by default).
SOAK_SECONDS ?= 600
SOAK_SEED ?=
soak: $(STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_SEED=$(SOAK_SEED) $(BIN)/python -m tests.faults.soak

# The generated references in docs/ (config keys, metrics, control API); a test fails when they drift.
docs: $(STAMP)
	$(BIN)/python -m agent.reference --write

deb: $(STAMP) apt
	$(BIN)/python packaging/build_deb.py

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml requirements-test.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-venv (Debian) to create $(VENV)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv python3-dev >/dev/null && \
	    $(PYTHON) -m venv $(VENV); \
	  else \
	    echo "python3 -m venv failed: install Debian's python3-venv (or run make as root)"; exit 1; \
	  fi; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-test.txt -e .
	@touch $@

# Debian packages: installed once when root; otherwise listed so the user can install them.
apt:
	@if [ -f $(APT_STAMP) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null && touch $(APT_STAMP); \
	else \
	  echo "not root: make sure these Debian packages are installed: $(APT_PACKAGES)"; \
	fi

clean:
	rm -rf $(VENV) build dist *.egg-info packaging/build
