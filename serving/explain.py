"""Explanations: the largest LightGBM contributions to ``p_outcome``, in plain language.

A contribution (``pred_contrib``) is in log-odds of the outcome model's raw score, before
calibration; the contributions of all features plus a bias add up to that raw score.
Each factor carries the feature's value as the service saw it (the category text, even
when unseen in training, or the number), the value's unit from the feature catalogue,
and the catalogue's sentence with the value filled in ("6 touches to this contact in the
last 7 days").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from features.schema import CATEGORICAL
from models.bundle import FeatureSpec

CATEGORY_UNIT = "category"


def plain_value(value: Any) -> str | float | None:
    """A feature value as JSON: text, a finite float, or None when missing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return None
    return round(number, 6)


def format_value(value: str | float | None) -> str:
    """How a value reads in a sentence: 6 (not 6.0), 2.5, 0.33, 48000."""
    if value is None or isinstance(value, str):
        return "" if value is None else value
    if float(value).is_integer():
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2f}".rstrip("0").rstrip(".")


def sentence(template: str, name: str, value: str | float | None) -> str:
    """The catalogue template with the value filled in; a missing value says so."""
    if value is None:
        return f"{name.replace('_', ' ')}: not known"
    if not template:
        return f"{name.replace('_', ' ')} {format_value(value)}"
    return template.replace("{v}", format_value(value))


class Explainer:
    """Turns contribution rows into factors for one bundle's feature spec."""

    def __init__(self, spec: FeatureSpec, max_factors: int = 5):
        self.spec = spec
        self.max_factors = max_factors
        self._units = [CATEGORY_UNIT if f.kind == CATEGORICAL else (f.unit or "value") for f in spec.features]

    def factors(self, contributions: np.ndarray, raw_columns: dict[str, np.ndarray], row: int,
                column_row: int | None = None) -> list[dict[str, Any]]:
        """Largest ``|effect|`` first, zero effects left out.

        Args:
            contributions: ``(n_rows, n_features + 1)`` from ``ModelBundle.contributions``.
            raw_columns: the feature columns before encoding (``build_serving_columns``).
            row: the row of ``contributions``.
            column_row: the row of ``raw_columns`` (default: ``row``).
        """
        effects = contributions[row, :-1]
        k = min(self.max_factors, len(effects))
        if k <= 0:
            return []
        top = np.argpartition(-np.abs(effects), k - 1)[:k] if k < len(effects) else np.arange(len(effects))
        top = top[np.argsort(-np.abs(effects[top]), kind="stable")]
        i = row if column_row is None else column_row
        out = []
        for j in top:
            effect = float(effects[j])
            if effect == 0.0:
                continue
            f = self.spec.features[j]
            value = plain_value(raw_columns[f.name][i])
            out.append({"feature": f.name, "value": value, "unit": self._units[j], "effect": round(effect, 6),
                        "text": sentence(f.text, f.name, value)})
        return out
