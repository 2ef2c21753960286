# batchcert-operator image: `batchcert run` on python:3.11-slim, as a numeric non-root user.
#
# Stage 1 builds a virtual environment from the pinned constraints (the same install step the
# tests check: `pip install -c constraints.txt .`); stage 2 copies only that venv onto a fresh
# slim base, so no compiler, pip cache, build tree or source checkout reaches the final image.
# The root filesystem can be read-only: Python writes no bytecode at run time
# (PYTHONDONTWRITEBYTECODE) and the only writable path the Deployment mounts is /tmp.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/batchcert
COPY constraints.txt pyproject.toml README.md ./
# Only the operator's package: the dev tooling beside it (batchsim, batchdev) never enters the image.
COPY operator/batchcert ./operator/batchcert
# Only the runtime dependencies: the image has neither the simulator nor the test tools.
RUN /opt/batchcert/bin/pip install --no-compile -c constraints.txt . \
    && /opt/batchcert/bin/python -m compileall -q /opt/batchcert/lib \
    && /opt/batchcert/bin/batchcert run --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="batchcert-operator" \
      org.opencontainers.image.description="Azure Batch pools whose nodes keep Key Vault certificates rotated, from Kubernetes" \
      org.opencontainers.image.licenses="MIT"
# glibc's tunables (batchcert/allocator.py): a fixed mmap threshold, so large buffers go back to
# the system whole when freed, and two malloc arenas for the few helper threads.
ENV PATH=/opt/batchcert/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072
COPY --from=build /opt/batchcert /opt/batchcert
# 65532: the conventional "nonroot" uid; numeric so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["batchcert", "run"]
