# The dashboard image for running it in the cluster (manifests/dashboard/). Build from the repository root:
#   docker build -t guestbook-lab:latest .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# dependencies first (cached while only the sources change)
COPY pyproject.toml README.md ./
COPY dashboard/ dashboard/
RUN pip install .

# the rest the app reads at run time: templates, vendored static assets (no CDN), the lab's manifests
COPY templates/ templates/
COPY static/ static/
COPY manifests/ manifests/

USER 10001
EXPOSE 8000
# `python -m dashboard` from /app so PROJECT_ROOT (templates/, static/, manifests/) is /app
ENTRYPOINT ["python", "-m", "dashboard"]
CMD ["--platform", "kubernetes", "--host", "0.0.0.0", "--port", "8000"]
