# The DGDR controller image: build a wheel (and its dependencies' wheels) in one stage, install
# them into a fresh slim runtime that runs as a non-root user. Needs BuildKit (the default builder
# of current Docker): the runtime stage bind-mounts the wheels, so no layer keeps them.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY profiler ./profiler
COPY metrics ./metrics
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels dgdr-controller \
 && groupadd --gid 65532 dgdr \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin dgdr
# The root filesystem is read-only in the Deployment; /tmp is an emptyDir.
WORKDIR /tmp
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["python", "-m", "controller", "run"]
