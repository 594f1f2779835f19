# The dashboard image for running it in the cluster (manifests/dashboard/). Build from the repository root:
#   docker build -t guestbook-lab:latest .
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
# the wheel carries the package and, under share/guestbook-lab, the templates, the vendored static files (no CDN)
# and the lab's manifests (pyproject.toml: tool.setuptools.data-files)
RUN pip wheel --no-deps -w /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
# no source tree in the image: the installed package finds its files under <prefix>/share/guestbook-lab
WORKDIR /home/guestbook-lab
USER 10001
EXPOSE 8000
ENTRYPOINT ["guestbook-lab"]
CMD ["--platform", "kubernetes", "--host", "0.0.0.0", "--port", "8000"]
