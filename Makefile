# The two commands a fresh clone needs: `make run` and `make test`. Both install what they need
# into .venv first (pip is quiet when nothing changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run cli test lint clean redis-server redis-sentinel promtool docker-tools lock wrk bench js-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hook-service serve --dev

# Any hook-service command without activating the venv: make cli ARGS="keys list"
# (the same as .venv/bin/hook-service keys list; the venv is not on PATH).
cli: $(STAMP)
	$(BIN)/hook-service $(ARGS)

test: $(STAMP) redis-server redis-sentinel promtool js-deps docker-tools
	$(BIN)/python -m pytest

# tests/js drives Prelude's own JS SDK (test-only npm dependency, pinned in package-lock.json)
# under Node. npm writes node_modules/.package-lock.json on install: the stamp.
JS_DIR   := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.package-lock.json

js-deps: $(JS_STAMP)

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@command -v npm >/dev/null || { \
	  echo "node and npm are required by tests/js: install Node.js 20 or later (e.g. apt-get install nodejs npm)" >&2; exit 1; }
	@npm ci --prefix $(JS_DIR) --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
	@touch $(JS_STAMP)

# The Redis tests start their own private server, so the binary must be on PATH.
redis-server:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is required by the tests: install Redis 7 (e.g. apt-get install redis-server)" >&2; exit 1; \
	  fi; }

# The Sentinel tests (tests/sentinels.py) start a master, a replica and three Sentinels.
redis-sentinel: redis-server
	@command -v redis-sentinel >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq redis-sentinel >/dev/null; \
	  else \
	    echo "redis-sentinel is required by the tests: apt-get install redis-sentinel (Debian)" >&2; exit 1; \
	  fi; }

# tests/deploy/test_prometheus.py runs Prometheus's promtool on deploy/prometheus/alerts.yml.
promtool:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends prometheus >/dev/null; \
	  else \
	    echo "promtool is required by the tests: install Debian's prometheus package (apt-get install prometheus)" >&2; exit 1; \
	  fi; }

# The image test (tests/deploy, marker `slow`) builds and runs the image: Debian's Docker,
# compose and debootstrap (it makes its base images from Debian packages).
docker-tools:
	@command -v dockerd >/dev/null && command -v docker-compose >/dev/null \
	  && command -v debootstrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends docker.io docker-compose debootstrap >/dev/null; \
	  else \
	    echo "the image test needs docker.io, docker-compose and debootstrap (apt-get install ...), as root" >&2; exit 1; \
	  fi; }

# requirements.lock from pyproject.toml (docs/deploying.md, "The lock file").
lock: $(STAMP)
	$(BIN)/python deploy/lock.py

# Benchmarks (docs/benchmarks.md): BENCH_ARGS=--quick for a 2 s smoke run; --sentinel adds
# the hook and token figures on a Sentinel group (docs/deploying.md, "Choosing Redis").
# Then the CPU of each part of the hook's hot path (the per-request log line among them), and
# what the whole call saves without each part (bench/ablate.py).
# The bench extra (coredis, measured by bench/redis_clients.py) on top of the dev install.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) redis-server redis-sentinel wrk
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.parts
	$(BIN)/python -m bench.ablate

wrk:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq wrk >/dev/null; \
	  else \
	    echo "wrk is required by the benchmarks: apt-get install -y wrk (Debian/Ubuntu)" >&2; exit 1; \
	  fi; }

lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(JS_DIR)/node_modules
