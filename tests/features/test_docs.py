from pathlib import Path

from features.docs import render


def test_feature_docs_are_generated_from_the_catalogue():
    docs = Path(__file__).resolve().parents[2] / "docs" / "features.md"
    assert docs.read_text(encoding="utf-8") == render(), "run: python -m features.docs > docs/features.md"
