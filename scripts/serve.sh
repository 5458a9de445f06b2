#!/usr/bin/env bash
# Runs the whole service on one machine: migrations, a training worker and the API on
# http://127.0.0.1:8000 (docs at /docs). With no EFNF_* variables set it uses the embedded
# default: SQLite database and broker files under ./var. Extra arguments go to `python -m app`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then
    exec .venv/bin/python -m app serve "$@"
fi
exec python -m app serve "$@"
