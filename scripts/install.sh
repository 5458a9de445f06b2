#!/usr/bin/env bash
# Installs efnf and its dependencies into the active Python (use a virtual environment).
#
# The one non-obvious step: escnn 1.0.11 declares py3nj as a hard dependency, but py3nj only
# builds with a Fortran compiler and escnn uses it only for SO(3) Clebsch-Gordan coefficients,
# which efnf never needs (our groups are subgroups of O(2)). So escnn's other dependencies are
# listed in pyproject.toml and escnn itself is installed with --no-deps. Everything else comes
# from pyproject.toml. On a CUDA machine, install the CUDA build of torch==2.13.0 first.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[dev,experiments,bench]"
python -m pip install --quiet --no-deps "escnn==1.0.11"
python -c "import flows, flows.groups; print('efnf installed')"
