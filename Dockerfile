# syntax=docker/dockerfile:1
# The operator's image. How to build it, what is in it and how it runs: docs/image.md.
# tests/image/test_dockerfile.py lints this file; tests/image/test_install_script.py runs the build
# stage's one install step (scripts/image-install.sh) and checks its result.

# Both stages use the same base, so the venv's interpreter links (/opt/venv/bin/python* ->
# /usr/local/bin) hold in the final image. Pin the digest too when building releases:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> ...
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY operator/apitoken_operator/ operator/apitoken_operator/
COPY scripts/image-install.sh scripts/
RUN ["bash", "scripts/image-install.sh", "/opt/venv"]

FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
LABEL org.opencontainers.image.title="dynatrace-apitoken-operator" \
      org.opencontainers.image.description="A Kubernetes operator that turns ApiToken resources into Dynatrace API tokens, their secrets kept in Kubernetes Secrets." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# Nothing is written at run time: the venv is byte-compiled and HOME points at /tmp, the only writable
# path the Helm chart mounts (an emptyDir) under a read-only root filesystem. LOGNAME: kopf names
# itself user@host through getpass.getuser(), which reads it first and otherwise needs a passwd entry
# for the UID, which a pod run with another runAsUser would not have.
ENV PATH="/opt/venv/bin:${PATH}" \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LOGNAME=apitoken
# A named user for the numeric UID/GID (Kubernetes' runAsNonRoot needs a numeric USER), and the base
# image's own installers removed: the venv has its own packages, and nothing installs at run time.
RUN groupadd --system --gid 65532 apitoken \
    && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin apitoken \
    && python3 -m pip uninstall --yes --quiet pip setuptools wheel \
    && rm -rf /usr/local/bin/pip /usr/local/lib/python3.11/ensurepip/_bundled
# Owned by root and read-only to the operator's user.
COPY --from=build /opt/venv /opt/venv
USER 65532:65532
# 8080: the liveness probe (GET /healthz); 9090: Prometheus metrics when run with --metrics-port 9090.
EXPOSE 8080 9090
ENTRYPOINT ["apitoken-operator"]
CMD ["run", "--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz"]
