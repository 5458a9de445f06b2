#!/usr/bin/env bash
# The test suite: library unit tests and the end-to-end service tests (real PostgreSQL at
# 127.0.0.1:5432, Redis at 127.0.0.1:6379, real Celery workers). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m pytest -q "$@"
