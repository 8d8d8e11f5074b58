"""Where the workspace's read-only shared material is (real datasets, CRM samples).

It sits beside the repository as ``../shared``; ``ACTIVITY_SCORER_SHARED`` points elsewhere.
Tests that need it skip with the path they looked at when it is missing, except under CI
(``CI`` set), where every test must run and a missing folder is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("ACTIVITY_SCORER_SHARED") or Path(__file__).resolve().parents[1] / ".." / "shared").resolve()


def require_shared(path: Path, what: str) -> Path:
    """``path`` (under :data:`SHARED`) if it exists; else skip, or fail under CI."""
    if not path.exists():
        message = (f"{what} not found at {path} (the shared/ folder beside the repository; "
                   f"set ACTIVITY_SCORER_SHARED to its location)")
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run every test")
        pytest.skip(message)
    return path
