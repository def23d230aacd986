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
  # `cargo test --workspace` above already built target/release/gclip (its integration tests
  # drive it); building it again alone would resolve other features and recompile much.
  if [[ "${GCLIP_TEST_RUST:-1}" == 0 || ! -x target/release/gclip ]]; then
    echo "== cargo build --release (the gclip binary the Python tests drive)"
    cargo build --release --locked -p gclip-cli
  fi
  venv="${GCLIP_TEST_VENV:-target/py-venv}"
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "== creating $venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt -c tests/python/constraints.txt
  # The gclip Python package, built by maturin (pinned in requirements.txt) in the release
  # profile into this workspace's target dir, so it reuses the build above.
  echo "== pip install ./crates/gclip-python"
  # (the maturin build backend runs the `maturin` of the venv, hence its bin/ on PATH)
  PATH="$(cd "$venv" && pwd)/bin:$PATH" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" \
    "$venv/bin/python" -m pip install -q \
    --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall ./crates/gclip-python
  export GCLIP_BIN="$PWD/target/release/gclip"
  echo "== pytest tests/python"
  "$venv/bin/python" -m pytest -q tests/python
fi
