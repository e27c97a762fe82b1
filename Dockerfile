# zen-lead controller image. Build: docker build -t ghcr.io/kube-zen/zen-lead:0.1.0 .
# (Not built or tested in this repository's CI: the development machines have no Docker.)

# --- builder: build wheels for zen-lead and its pinned dependencies -----------------------------
FROM python:3.11-slim AS builder
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml constraints.txt README.md ./
COPY zenlead ./zenlead
COPY probes ./probes
# Wheels for the package and every runtime dependency, at the versions constraints.txt pins.
RUN pip wheel --wheel-dir /wheels -c constraints.txt .
# Install into a self-contained prefix that the final stage copies as a whole.
RUN python -m venv /opt/zen-lead \
 && /opt/zen-lead/bin/pip install --no-index --find-links /wheels zen-lead \
 && /opt/zen-lead/bin/pip uninstall --yes pip \
 && /opt/zen-lead/bin/python -c "import zenlead, probes"

# --- final: the same Python, no compilers, no pip, non-root -------------------------------------
FROM python:3.11-slim
# The slim image has no build tools; remove pip as well, the controller does not need it.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && rm -rf /root/.cache
COPY --from=builder /opt/zen-lead /opt/zen-lead
ENV PATH=/opt/zen-lead/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532: the "nonroot" user of distroless images; the chart runs with the same UID/GID.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["zen-lead"]
CMD ["run"]
