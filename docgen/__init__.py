"""The generated pages of ``docs/``: one command, ``python -m docgen``, writes them all.

Each page is rendered from the code it documents, so the docs cannot drift from it:

- ``docs/features.md`` from the feature catalogue (``features/schema.py``, :func:`features.docs.render`);
- ``docs/data-contract.md`` from the data contract (``features/contract.py``,
  :func:`features.docs.render_contract`);
- ``docs/api.md`` from the service and the Typer app (:func:`docgen.api.render_api`).

``tests/docs/test_generated_docs.py`` fails, naming the command, when a page is stale. The
package sits above ``features``, ``serving`` and ``training`` (it reads all three, none of
them imports it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

COMMAND = "python -m docgen"
ROOT = Path(__file__).resolve().parents[1]


def pages() -> dict[str, Callable[[], str]]:
    """Path (relative to the repository) -> function that renders the page."""
    from docgen.api import render_api
    from features.docs import render, render_contract

    return {
        "docs/features.md": render,
        "docs/data-contract.md": lambda: render_contract(COMMAND),
        "docs/api.md": lambda: render_api(COMMAND),
    }


def stale_pages(root: Path = ROOT) -> list[str]:
    """The generated pages whose file differs from what the code renders now (or is missing)."""
    stale = []
    for rel, render in pages().items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != render():
            stale.append(rel)
    return stale


def write_pages(root: Path = ROOT) -> list[str]:
    """Write every generated page; returns those whose content changed."""
    changed = []
    for rel, render in pages().items():
        path = root / rel
        text = render()
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(rel)
    return changed
