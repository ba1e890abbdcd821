# The operator image: `vigil run` with the runtime dependencies only (no extras: no simulator, no
# sandbox), installed exactly as uv.lock pins them. The sandbox never builds it (no container runtime
# there); clusters run it through the Helm chart in charts/vigil.
#
# Base: the official python:3.11-slim, pinned by the digest of its multi-architecture image index, so two
# builds of one commit start from the same system libraries. Moving to a newer base is a reviewed edit of
# this line (`docker buildx imagetools inspect python:3.11-slim` prints the current digest).
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_IMAGE} AS build
# Same uv as the Makefile (UV_VERSION); bytecode compiled at build time because the root filesystem is
# read-only at run time.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/vigil \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# Dependencies first, in their own layer (reused while only the code changes), then the project itself.
COPY pyproject.toml uv.lock README.md LICENSE ./
RUN uv sync --frozen --no-dev --no-editable --no-install-project --python /usr/local/bin/python3
COPY operator ./operator
RUN uv sync --frozen --no-dev --no-editable --python /usr/local/bin/python3

FROM ${PYTHON_IMAGE}
# A named user (kopf and getpass look the uid up in /etc/passwd), no home, no shell.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin vigil
COPY --from=build /opt/vigil /opt/vigil
# Nothing is written at run time (bytecode is compiled above; tests/e2e/test_runtime_image.py runs this
# install on a read-only root). The uid has no home: HOME only needs to name a directory.
ENV PATH=/opt/vigil/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
EXPOSE 8080 9102
ENTRYPOINT ["vigil", "run"]
CMD ["--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz"]
