# The cache node as a container for ECS Fargate (deploy/README.md).
#
#   make image                      # docker, podman or buildah: python3 -m deploy.image build
#   docker run --rm -p 7000:7000 ecs-kv-cache
#
# Layers go from least to most often changed: the user, then the dependencies
# (installed from pyproject.toml alone), then the client, then the node's
# source last, so editing node/ rebuilds one small layer and nothing else
# (tests/test_image.py checks it).
FROM python:3.11-slim

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

# The source. `python -m node` runs it from WORKDIR; nothing to build.
COPY client ./client
COPY node ./node

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
