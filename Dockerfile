# One image for the API and the training worker.
#
#   docker build -t efnf .                       # torch from PyPI (a CUDA build on x86_64)
#   docker build --build-arg PIP_EXTRA_ARGS="--index-url <a CPU wheel index>" -t efnf .
#
# The default command runs the whole service in one container on the embedded default (SQLite
# and a file broker under /srv/efnf/var: mount a volume there). docker-compose.yml runs the API
# and a GPU worker against PostgreSQL and Redis instead.

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv && pip install --upgrade pip
WORKDIR /src
ARG PIP_EXTRA_ARGS=""
COPY pyproject.toml README.md ./
COPY flows ./flows
COPY app ./app
COPY worker ./worker
# Dependencies from pyproject.toml; escnn without its py3nj dependency (see scripts/install.sh).
# The project itself runs from /srv/efnf (it needs alembic.ini and migrations/ beside it).
RUN pip install $PIP_EXTRA_ARGS . \
    && pip install --no-deps "escnn==1.0.11" \
    && pip uninstall -y efnf

FROM python:3.11-slim
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/srv/efnf PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/efnf
COPY alembic.ini ./
COPY migrations ./migrations
COPY flows ./flows
COPY app ./app
COPY worker ./worker
COPY scripts/prestart.sh scripts/serve.sh ./scripts/
RUN useradd --create-home --uid 10001 efnf \
    && mkdir -p /srv/efnf/var \
    && chown efnf:efnf /srv/efnf/var \
    && python -c "import escnn, flows, app.main, worker.tasks"
USER efnf
EXPOSE 8000
VOLUME ["/srv/efnf/var"]
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
