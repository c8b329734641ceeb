# The two commands a fresh clone needs: `make run` and `make test`. Both install what they need
# into .venv first (pip is quiet when nothing changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint clean redis-server docker-tools lock wrk bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hook-service serve --dev

test: $(STAMP) redis-server docker-tools
	$(BIN)/python -m pytest

# The Redis tests start their own private server, so the binary must be on PATH.
redis-server:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is required by the tests: install Redis 7 (e.g. apt-get install redis-server)" >&2; exit 1; \
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

# Benchmarks (README "Benchmarks"): BENCH_ARGS=--quick for a 2 s smoke run.
bench: $(STAMP) redis-server wrk
	$(BIN)/python -m bench.run $(BENCH_ARGS)

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
