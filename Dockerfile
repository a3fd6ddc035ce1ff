# syntax=docker/dockerfile:1
#
# The recsys-stream image: one image, three roles, chosen by the command
# (ENTRYPOINT is the `recsys-stream` CLI):
#
#   docker run IMAGE trainer                                  # the Faust trainer (HTTP :8001)
#   docker run IMAGE api                                      # the HTTP API (:8000)
#   docker run IMAGE replay --dataset ml-100k --speed 3600 --resume
#
# Targets:
#   cpu (the default, last stage)  torch from PyTorch's CPU index: no CUDA wheels at all.
#     docker build -t ghcr.io/recsys-stream/recsys-stream:0.1.0 .
#   trainer-cuda                   the locked torch from PyPI with its nvidia-* CUDA wheels.
#     docker build --target trainer-cuda -t ghcr.io/recsys-stream/recsys-stream:0.1.0-cuda .
#
# Both install exactly what uv.lock pins (hashes checked). The containers are meant to run with
# a read-only root filesystem, as uid/gid 10001, with state only in the declared volumes and
# /tmp as a tmpfs (docker-compose.yml and k8s/ do so). See docs/deployment.md.

# uv, the same version that maintains uv.lock; copied from its official image.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# python:3.11 slim is enough for both targets: the CPU torch wheel is self-contained, and the
# PyPI CUDA build of torch brings the CUDA runtime, cuDNN, cuBLAS and NCCL as nvidia-* wheels,
# so no nvidia/cuda base image (and its 3+ GB) is needed; the host supplies only the driver,
# through the NVIDIA Container Toolkit. The patch release is pinned: bump it deliberately
# (and pin the digest, python@sha256:..., where the release process can resolve it).
FROM python:3.11.14-slim-trixie AS python


# --- build stages ---------------------------------------------------------------------------

FROM python AS builder
COPY --from=uv /uv /usr/local/bin/uv
# Bytecode is compiled at build time: the runtime has a read-only filesystem and
# PYTHONDONTWRITEBYTECODE, so without it every start would recompile torch (~10 s).
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
WORKDIR /src


FROM builder AS builder-cpu
# Must equal the torch version in uv.lock (tests/deploy/test_dockerfile.py checks it).
ARG TORCH_VERSION=2.15.0
# 1. Every locked dependency, hashes checked, except torch and the CUDA packages that only
#    torch pulls in on Linux: the nvidia-* libraries, cuda-toolkit, cuda-bindings (and its
#    cuda-pathfinder) and triton (the test checks this list against uv.lock). torch's own
#    pure-Python dependencies (sympy, networkx, jinja2, fsspec, filelock, ...) stay, pinned.
# 2. torch of the same version from PyTorch's CPU index (it resolves to 2.15.0+cpu); its
#    dependencies came from the lock in step 1.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv export --frozen --no-dev --no-emit-project --format requirements-txt \
        --no-emit-package torch \
        --no-emit-package triton \
        --no-emit-package cuda-bindings \
        --no-emit-package cuda-pathfinder \
        --no-emit-package cuda-toolkit \
        --no-emit-package nvidia-cublas \
        --no-emit-package nvidia-cuda-cccl \
        --no-emit-package nvidia-cuda-cupti \
        --no-emit-package nvidia-cuda-nvrtc \
        --no-emit-package nvidia-cuda-runtime \
        --no-emit-package nvidia-cudnn-cu13 \
        --no-emit-package nvidia-cufft \
        --no-emit-package nvidia-cufile \
        --no-emit-package nvidia-cusolver \
        --no-emit-package nvidia-cusparse \
        --no-emit-package nvidia-cusparselt-cu13 \
        --no-emit-package nvidia-nccl-cu13 \
        --no-emit-package nvidia-nvjitlink \
        --no-emit-package nvidia-nvshmem-cu13 \
        --no-emit-package nvidia-nvtx \
        --output-file /src/requirements.txt \
    && uv venv /opt/recsys/venv \
    && uv pip install --python /opt/recsys/venv/bin/python --no-deps --require-hashes \
        --requirements /src/requirements.txt \
    && uv pip install --python /opt/recsys/venv/bin/python --no-deps \
        --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
# 3. The project itself, not editable (its dependencies are all in place).
COPY pyproject.toml README.md ./
COPY recsys_stream ./recsys_stream
COPY replay ./replay
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/recsys/venv/bin/python --no-deps .


FROM builder AS builder-cuda
# Every locked dependency for Linux, torch with its CUDA wheels included, then the project.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv export --frozen --no-dev --no-emit-project --format requirements-txt \
        --output-file /src/requirements.txt \
    && uv venv /opt/recsys/venv \
    && uv pip install --python /opt/recsys/venv/bin/python --no-deps --require-hashes \
        --requirements /src/requirements.txt
COPY pyproject.toml README.md ./
COPY recsys_stream ./recsys_stream
COPY replay ./replay
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/recsys/venv/bin/python --no-deps .


# --- runtime stages -------------------------------------------------------------------------

FROM python AS runtime
LABEL org.opencontainers.image.title="recsys-stream" \
      org.opencontainers.image.description="Streaming online-learning recommender: trainer, API and replay" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can verify it and volumes can be
# prepared for it (fsGroup 10001). No login shell, no home directory in the image.
RUN groupadd --system --gid 10001 recsys \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin recsys \
    && mkdir -p /var/lib/recsys/trainer /var/lib/recsys/replay /var/lib/recsys/datasets \
    && chown -R 10001:10001 /var/lib/recsys
# HOME, matplotlib's and every other cache go to /tmp (a tmpfs / emptyDir at run time); the
# settings below point each piece of state at its volume, whatever the role.
ENV PATH="/opt/recsys/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    RECSYS_DATA__CACHE_DIR=/var/lib/recsys/datasets \
    RECSYS_TRAINER__CHECKPOINT_PATH=/var/lib/recsys/trainer/trainer.ckpt \
    RECSYS_TRAINER__DATA_DIR=/var/lib/recsys/trainer/faust \
    RECSYS_REPLAY__STATE_DIR=/var/lib/recsys/replay \
    RECSYS_TRAINER__HTTP_HOST=0.0.0.0 \
    RECSYS_TRAINER__HTTP_PORT=8001 \
    RECSYS_API__HOST=0.0.0.0 \
    RECSYS_API__PORT=8000
# Scratch only: nothing the services keep is written relative to the working directory.
WORKDIR /tmp
# trainer checkpoint (+ Faust data), replay progress, downloaded datasets
VOLUME ["/var/lib/recsys/trainer", "/var/lib/recsys/replay", "/var/lib/recsys/datasets"]
# 8000: the API; 8001: the trainer's /metrics, /healthz, /readyz.
EXPOSE 8000 8001
# SIGINT stops every role cleanly: Faust and uvicorn treat it like SIGTERM, and the replay
# flushes and saves its progress on KeyboardInterrupt. (A Python PID 1 that installs no SIGTERM
# handler would ignore SIGTERM and be killed at the end of the grace period.) Docker, compose
# and the Kubernetes container runtimes send the image's STOPSIGNAL.
STOPSIGNAL SIGINT
USER 10001:10001
ENTRYPOINT ["recsys-stream"]
CMD ["--help"]


# The GPU trainer: the same runtime with the CUDA build of torch. The host needs an NVIDIA
# driver recent enough for the CUDA 13 wheels in uv.lock, and the NVIDIA Container Toolkit
# (Docker: `--gpus`, compose: a device reservation; Kubernetes: the NVIDIA device plugin).
# NVIDIA_VISIBLE_DEVICES is deliberately not set to "all" here: the runtime / device plugin
# sets it to the GPUs actually granted to the container.
FROM runtime AS trainer-cuda
COPY --from=builder-cuda /opt/recsys/venv /opt/recsys/venv
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    RECSYS_LEARNER__DEVICE=cuda
CMD ["trainer"]


# The default target: every role on CPU, without any CUDA wheel.
FROM runtime AS cpu
COPY --from=builder-cpu /opt/recsys/venv /opt/recsys/venv
