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
# Honour a CARGO_TARGET_DIR set by the caller: the binary and the package are found there.
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
[[ "$target_dir" == /* ]] || target_dir="$PWD/$target_dir"

if [[ "${GCLIP_TEST_RUST:-1}" != 0 ]]; then
  echo "== cargo test --workspace --release"
  cargo test --workspace --release --locked
fi

if [[ "${GCLIP_TEST_PYTHON:-1}" != 0 ]]; then
  # `cargo test --workspace` above already built the release gclip binary (its integration tests
  # drive it); building it again alone would resolve other features and recompile much.
  if [[ "${GCLIP_TEST_RUST:-1}" == 0 || ! -x "$target_dir/release/gclip" ]]; then
    echo "== cargo build --release (the gclip binary the Python tests drive)"
    cargo build --release --locked --workspace --bins
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
  PATH="$(cd "$venv" && pwd)/bin:$PATH" CARGO_TARGET_DIR="$target_dir" \
    "$venv/bin/python" -m pip install -q \
    --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall ./crates/gclip-python
  export GCLIP_BIN="$target_dir/release/gclip"
  echo "== pytest tests/python"
  "$venv/bin/python" -m pytest -q tests/python
fi
