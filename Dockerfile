# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hook_service ./hook_service
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOOK_HOST=0.0.0.0 \
    HOOK_PORT=8000 \
    HOOK_KEYS_DIR=/keys
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin hook \
    && install -d -o hook -g hook -m 0700 /keys
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# Key material is mounted at /keys (a volume or a secret), never baked into the image.
VOLUME ["/keys"]
USER hook
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s \
    CMD python -c "import os,sys,urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HOOK_PORT', '8000')).status != 200)"
CMD ["hook-service", "serve"]
