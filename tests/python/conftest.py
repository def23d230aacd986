"""Shared fixtures for the Python-side tests: the gclip binary built by scripts/test.sh."""

import os
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def require_tool(name: str) -> str:
    """Path of a system tool; skips the test when it is missing unless GCLIP_REQUIRE_ALL=1."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("GCLIP_REQUIRE_ALL") == "1":
            pytest.fail(f"{name} is required (GCLIP_REQUIRE_ALL=1) but not on PATH")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture(scope="session")
def gclip_bin() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("GCLIP_BIN", REPO / "target" / "release" / "gclip"))
    if not path.exists():
        pytest.fail(f"gclip binary not found at {path}: run scripts/test.sh or set GCLIP_BIN")
    return path
