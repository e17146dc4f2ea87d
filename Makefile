# Ledgerlift developer entry points. Run `make setup` once on a fresh Debian/Ubuntu machine.
#
#   make test  [TEST_ARGS=...]      swift test against LEDGERLIFT_TEST_DSN, or the scripts/pg cluster
#   make bench [BENCH_ARGS=...]     release-mode ledgerlift-bench against LEDGERLIFT_BENCH_DSN or scripts/pg
#   make demo  [DEMO_ARGS=...]      scripts/demo (or `ledgerlift --help`) against the scripts/pg cluster
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
APT_PACKAGES := libpq-dev postgresql pkgconf
PG := scripts/pg

.PHONY: setup build test bench demo pg-start pg-stop pg-status clean

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

build: setup
	$(SWIFT) build $(SWIFT_BUILD_ARGS)

test: setup
	@dsn="$${LEDGERLIFT_TEST_DSN:-}"; \
	if [ -z "$$dsn" ]; then dsn="$$($(PG) start | tail -n 1)"; fi; \
	echo "test: LEDGERLIFT_TEST_DSN=$$dsn" >&2; \
	LEDGERLIFT_TEST_DSN="$$dsn" $(SWIFT) test $(TEST_ARGS)

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
