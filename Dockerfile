# The service image (docs/deploying.md, "Container image"). Build it with BuildKit:
#   DOCKER_BUILDKIT=1 docker build --network host -t prelude-stepup-hook \
#     [--build-arg PIP_INDEX_URL=https://mirror.example/simple] \
#     [--secret id=ca_bundle,src=/path/to/corporate-ca.pem] .
# No `# syntax=` line on purpose: the Dockerfile frontend built into the daemon is used, so a
# build never pulls docker/dockerfile from a registry.

# BASE: CPython 3.11 with the venv module on glibc (Debian bookworm). Pinned by digest, since a
# tag moves; replace it with the digest of the same image in your own registry.
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# --- build: the locked dependencies and the project's wheel, installed into /opt/hook -------
FROM ${BASE} AS build
# An internal mirror (a PyPI proxy such as Artifactory, Nexus or devpi).
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.lock ./
# The optional ca_bundle secret is a PEM file of extra CAs (a TLS-inspecting proxy's); pip
# trusts it on top of its own bundle. A secret, not a COPY: it never lands in a layer.
RUN --mount=type=secret,id=ca_bundle \
    set -eu; \
    python3 -m venv /opt/hook; \
    if [ -s /run/secrets/ca_bundle ]; then \
        certifi="$(/opt/hook/bin/python -c 'from pip._vendor import certifi; print(certifi.where())')"; \
        cat "$certifi" /run/secrets/ca_bundle > /tmp/ca-bundle.pem; \
        export PIP_CERT=/tmp/ca-bundle.pem; \
    fi; \
    /opt/hook/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock; \
    rm -f /tmp/ca-bundle.pem
COPY pyproject.toml README.md ./
COPY hook_service ./hook_service
# setuptools comes from the lock, so the wheel builds without the network.
RUN /opt/hook/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/hook/bin/pip install --no-deps --no-index /wheels/*.whl

# --- runtime: the same base, the virtual environment, a non-root user -------------------------
FROM ${BASE}
ENV PATH=/opt/hook/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOOK_HOST=0.0.0.0 \
    HOOK_PORT=8000 \
    HOOK_KEYS_DIR=/keys
RUN groupadd --system --gid 10001 hook \
    && useradd --system --uid 10001 --gid hook --home-dir /nonexistent --shell /usr/sbin/nologin hook \
    && install -d -o hook -g hook -m 0700 /keys
COPY --from=build /opt/hook /opt/hook
# Key material is mounted at /keys (a volume or a secret), never baked into the image; with
# HOOK_REDIS_URL the keys live in Redis, encrypted, and /keys stays empty.
VOLUME ["/keys"]
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8000
# Ready, not only alive: the store answers and Prelude's JWKS is loaded (GET /readyz).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import http.client as h, os, sys; c = h.HTTPConnection('127.0.0.1', int(os.environ.get('HOOK_PORT', '8000')), timeout=2); c.request('GET', '/readyz'); s = c.getresponse().status; sys.exit(0 if s == 200 else f'/readyz answered {s}')"]
CMD ["hook-service", "serve"]
