"""``python -m docgen``: regenerate docs/features.md, docs/data-contract.md and docs/api.md.

``python -m docgen --check`` writes nothing and exits 1 when a page is stale.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from training.env import apply_privacy_defaults, data_home

apply_privacy_defaults()
os.environ.setdefault("BENTOML_HOME", str(data_home() / "bentoml"))


def main(argv: list[str] | None = None) -> int:
    from docgen import COMMAND, stale_pages, write_pages

    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a page is stale")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.check:
        stale = stale_pages()
        if stale:
            print(f"stale: {', '.join(stale)}; run: {COMMAND}", file=sys.stderr)
            return 1
        print("generated docs are up to date")
        return 0
    changed = write_pages()
    print(f"wrote {', '.join(changed)}" if changed else "generated docs were already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
