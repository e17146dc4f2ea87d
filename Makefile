# Ledgerlift developer entry points. Run `make setup` once on a fresh Debian/Ubuntu machine.
#
#   make test  [TEST_ARGS=...]      swift test against LEDGERLIFT_TEST_DSN, or the scripts/pg cluster
#   make bench [BENCH_ARGS=...]     release-mode ledgerlift-bench against LEDGERLIFT_BENCH_DSN or scripts/pg
#   make demo  [DEMO_ARGS=...]      scripts/demo (or `ledgerlift --help`) against the scripts/pg cluster
#   make fuzz  [FUZZ_ARGS=...]      schemathesis against a live `ledgerlift serve` (docs/openapi.yaml); not part of test
#   make openapi-tools              pip-installs openapi-spec-validator (make test's OpenAPI validation runs with it)
#   make pg-start | pg-stop | pg-status
#   make clean                      destroy the throwaway cluster and .build

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

SWIFT ?= swift
SWIFT_BUILD_ARGS ?=
TEST_ARGS ?=
BENCH_ARGS ?=
DEMO_ARGS ?=
FUZZ_ARGS ?=
FUZZ_PORT ?= 18080
PIP ?= python3 -m pip
# PyPI packages, pinned: the OpenAPI document's validator (make test) and the fuzzer (make fuzz).
OPENAPI_VALIDATOR := openapi-spec-validator==0.9.0
SCHEMATHESIS := schemathesis==4.32.5
APT_PACKAGES := libpq-dev postgresql pkgconf
PG := scripts/pg

.PHONY: setup openapi-tools build test bench demo fuzz pg-start pg-stop pg-status clean

setup:
	@if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then \
		echo "setup: not a Debian/Ubuntu system; make sure libpq (headers) and the PostgreSQL server are installed" >&2; \
		exit 0; \
	fi; \
	missing=""; \
	for pkg in $(APT_PACKAGES); do \
		dpkg -s "$$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$pkg"; \
	done; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	if [ -n "$$missing" ]; then \
		echo "setup: installing$$missing" >&2; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi; \
	if ! id -u postgres >/dev/null 2>&1; then \
		echo "setup: creating the postgres OS user" >&2; \
		$$sudo useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres; \
	fi

# The validator is only reached through pip (PyPI); without it the OpenAPI validation test is
# skipped, never failed, so an offline machine still runs the rest.
openapi-tools:
	@if python3 -c 'import openapi_spec_validator' >/dev/null 2>&1; then exit 0; fi; \
	echo "openapi-tools: installing $(OPENAPI_VALIDATOR)" >&2; \
	$(PIP) install -q '$(OPENAPI_VALIDATOR)' || echo "openapi-tools: pip could not install $(OPENAPI_VALIDATOR); the validation test will be skipped" >&2

build: setup
	$(SWIFT) build $(SWIFT_BUILD_ARGS)

# The scenarios that run the simulated application at 100 ops/s against serve, the tailer and
# reverse sync (debug builds) run after the rest of the suite, not beside it: the suite's own
# two dozen parallel databases would otherwise starve them (a tailer minutes behind, no clean
# verification for ten minutes). Both phases always run (the recipe's shell stops at the first
# failure, hence the `|| rest=$$?`), and the target fails if either did.
LIVE_TRAFFIC = CutoverAcceptanceTests|PlaybookRunTests|LedgerAppTests|theDemoFitsTwoScreens

test: setup openapi-tools
	@dsn="$${LEDGERLIFT_TEST_DSN:-}"; \
	if [ -z "$$dsn" ]; then dsn="$$($(PG) start | tail -n 1)"; fi; \
	echo "test: LEDGERLIFT_TEST_DSN=$$dsn" >&2; \
	if [ -n "$(TEST_ARGS)" ]; then LEDGERLIFT_TEST_DSN="$$dsn" $(SWIFT) test $(TEST_ARGS); exit $$?; fi; \
	rest=0; LEDGERLIFT_TEST_DSN="$$dsn" $(SWIFT) test --skip '$(LIVE_TRAFFIC)' || rest=$$?; \
	echo "test: the live-traffic scenarios, on their own ($(LIVE_TRAFFIC))" >&2; \
	live=0; LEDGERLIFT_TEST_DSN="$$dsn" $(SWIFT) test --skip-build --filter '$(LIVE_TRAFFIC)' || live=$$?; \
	echo "test: the suite exited $$rest, the live-traffic scenarios $$live" >&2; \
	[ $$rest -eq 0 ] && [ $$live -eq 0 ]

bench: setup
	@dsn="$${LEDGERLIFT_BENCH_DSN:-}"; \
	if [ -z "$$dsn" ]; then dsn="$$($(PG) start | tail -n 1)"; fi; \
	echo "bench: DSN=$$dsn" >&2; \
	$(SWIFT) build -c release --product ledgerlift; \
	$(SWIFT) run -c release ledgerlift-bench --dsn "$$dsn" $(BENCH_ARGS)

demo: setup
	@dsn="$$($(PG) start | tail -n 1)"; \
	if [ -x scripts/demo ]; then \
		LEDGERLIFT_DSN="$$dsn" scripts/demo $(DEMO_ARGS); \
	elif [ -f scripts/demo ]; then \
		LEDGERLIFT_DSN="$$dsn" bash scripts/demo $(DEMO_ARGS); \
	else \
		$(SWIFT) run ledgerlift --help; \
	fi

# schemathesis against a live server on an empty store (database ledgerlift_fuzz of the
# scripts/pg cluster, recreated each run), every check, then the server is stopped.
fuzz: setup
	@python3 -c 'import schemathesis' >/dev/null 2>&1 || $(PIP) install -q '$(SCHEMATHESIS)'; \
	admin="$${LEDGERLIFT_TEST_DSN:-}"; \
	if [ -z "$$admin" ]; then admin="$$($(PG) start | tail -n 1)"; fi; \
	psql -q "$$admin" -c 'DROP DATABASE IF EXISTS ledgerlift_fuzz WITH (FORCE)' -c 'CREATE DATABASE ledgerlift_fuzz'; \
	store="$${admin%/*}/ledgerlift_fuzz"; \
	$(SWIFT) build --product ledgerlift; \
	bin="$$($(SWIFT) build --show-bin-path)/ledgerlift"; \
	"$$bin" store init --store "$$store"; \
	"$$bin" project --store "$$store"; \
	"$$bin" serve --store "$$store" --listen 127.0.0.1:$(FUZZ_PORT) & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid 2>/dev/null || true' EXIT; \
	for i in $$(seq 1 100); do curl -fs http://127.0.0.1:$(FUZZ_PORT)/health >/dev/null && break; sleep 0.2; done; \
	schemathesis --config-file docs/schemathesis.toml run docs/openapi.yaml --url http://127.0.0.1:$(FUZZ_PORT) --checks all $(FUZZ_ARGS)

pg-start:
	@$(PG) start

pg-stop:
	@$(PG) stop

# scripts/pg status exits 3 when stopped; that is information, not a make failure.
pg-status:
	@$(PG) status || [ $$? -eq 3 ]

clean:
	$(PG) destroy
	rm -rf .build
