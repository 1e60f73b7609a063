"""Shared fixtures. Data under ../shared is optional: tests that need it skip with the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TOPS_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    path = SHARED / "data"
    if not (path / "gsm8k_test.jsonl").exists():
        pytest.skip(f"benchmark data not found under {path}")
    return path


@pytest.fixture(scope="session")
def labeled_path() -> Path:
    path = SHARED / "labeled" / "labeled_dev.jsonl"
    if not path.exists():
        pytest.skip(f"labelled responses not found at {path}")
    return path
