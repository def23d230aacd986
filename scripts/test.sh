#!/usr/bin/env bash
# The whole test suite: Rust (one release build, shared with the binary and the Python package)
# then the Python-side tests. Creates a venv with the pinned test packages under target/.
#   GCLIP_TEST_VENV=DIR   use or create that venv instead of target/py-venv
#   GCLIP_TEST_RUST=0     skip the Rust tests (Python tests only)
#   GCLIP_TEST_PYTHON=0   skip the Python tests
#   GCLIP_REQUIRE_ALL=1   a test that needs a missing system tool (chromium, java) fails instead of skipping
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if [[ "${GCLIP_TEST_RUST:-1}" != 0 ]]; then
  echo "== cargo test --workspace --release"
  cargo test --workspace --release --locked
fi

if [[ "${GCLIP_TEST_PYTHON:-1}" != 0 ]]; then
  echo "== cargo build --release (the gclip binary the Python tests drive)"
  cargo build --release --locked -p gclip-cli
  venv="${GCLIP_TEST_VENV:-target/py-venv}"
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "== creating $venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
  export GCLIP_BIN="$PWD/target/release/gclip"
  echo "== pytest tests/python"
  "$venv/bin/python" -m pytest -q tests/python
fi
