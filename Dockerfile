# One image for the API and the training worker.
#
#   docker build -t efnf .                                        # CPU torch (any machine)
#   docker build --build-arg TORCH_EXTRA_INDEX_URL= -t efnf:gpu . # CUDA torch from PyPI
#
# The CPU wheel index is an *extra* index: every other package still comes from PyPI, and
# torch==2.13.0+cpu, a higher version than PyPI's CUDA torch==2.13.0, is picked from it.
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
ARG TORCH_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_EXTRA_ARGS=""
COPY pyproject.toml README.md ./
COPY flows ./flows
COPY app ./app
COPY worker ./worker
# Dependencies from pyproject.toml; escnn without its py3nj dependency (see scripts/install.sh).
# The project itself runs from /srv/efnf (it needs alembic.ini and migrations/ beside it).
RUN pip install ${TORCH_EXTRA_INDEX_URL:+--extra-index-url "$TORCH_EXTRA_INDEX_URL"} \
        $PIP_EXTRA_ARGS . \
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
# escnn caches group computations (joblib) in escnn/group/_cache inside site-packages, which
# the non-root user cannot write: point it at the writable data volume instead.
RUN useradd --create-home --uid 10001 efnf \
    && python -c "import escnn, flows, app.main, worker.tasks" \
    && escnn_cache="$(python -c 'import escnn.group as g; print(g.__cache_path__)')" \
    && rm -rf "$escnn_cache" \
    && mkdir -p /srv/efnf/var/escnn-cache \
    && ln -s /srv/efnf/var/escnn-cache "$escnn_cache" \
    && chown -R efnf:efnf /srv/efnf/var
USER efnf
EXPOSE 8000
VOLUME ["/srv/efnf/var"]
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
