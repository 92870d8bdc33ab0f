# The cache node as a container for ECS Fargate (deploy/README.md).
#
#   make image                      # docker, podman or buildah: python3 -m deploy.image build
#   docker run --rm -p 7000:7000 ecs-kv-cache
#
# Two stages. The runtime stage holds the user and the dependencies (installed
# from pyproject.toml alone); the build stage adds a C compiler and mypy to
# it and compiles the request path with mypyc (node/compiled.py: about a
# fifth less CPU per HTTP request); the image is the runtime stage plus the
# client and node as built, in one last layer. Editing node/ rebuilds that
# layer and nothing else (tests/test_image.py checks it); the compiler never
# reaches the image.
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# No root in the container: a fixed unprivileged uid, owning nothing it could rewrite.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin cache

WORKDIR /app

# Dependencies only: read [project].dependencies from pyproject.toml (tomllib is
# in the standard library) and install exactly those, with no build tools.
# botocore ships the API models of every AWS service (31 MB); the node calls
# ECS only, and credentials may need STS or SSO: the other models go.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && cd "$(python -c 'import botocore, os; print(os.path.dirname(botocore.__file__))')/data" \
    && find . -mindepth 1 -maxdepth 1 -type d ! -name ecs ! -name sts ! -name sso ! -name sso-oidc -exec rm -rf {} +

FROM runtime AS build
# gcc, and Python's headers where the base keeps them apart (a Debian-packaged
# Python; the official image has them), then the compile extra (mypy).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends gcc libc6-dev \
    && { python -c "import os, sysconfig; assert os.path.exists(sysconfig.get_path('include') + '/Python.h')" \
         || apt-get install --yes --no-install-recommends python3-dev; } \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['compile']))" > /tmp/compile.txt \
    && pip install --requirement /tmp/compile.txt
COPY client ./client
COPY node ./node
# Compiled in place, checked (check fails on a module left uncompiled or
# stale), then only the packages are kept: no C sources, objects or caches.
RUN python -m node.compiled build \
    && python -m node.compiled check \
    && mkdir /built && cp -r client node /built/ \
    && find /built -name __pycache__ -prune -exec rm -rf {} +

FROM runtime
# `python -m node` runs it from WORKDIR.
COPY --from=build /built/ ./

USER 10001

# Every node listens on 7000 (HTTP) and 11211 (memcached) on every address;
# in a task, its member id is the task's private IP (from the ECS task
# metadata endpoint).
ENV CACHE_HOST=0.0.0.0 \
    CACHE_PORT=7000 \
    CACHE_MEMCACHED_PORT=11211
EXPOSE 7000 11211

# Python, because the slim image has no curl; the same check as the task
# definition's (node/ecs_cli.py HEALTH_CHECK_SCRIPT).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os,urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:'+os.environ.get('CACHE_PORT','7000')+'/check-alive',timeout=2)"]

# Exec form: python is PID 1 and receives ECS's SIGTERM itself (no shell in
# between), so the node drains before the stopTimeout's SIGKILL.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "node"]
