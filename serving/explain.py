"""Explanations: the largest LightGBM contributions to ``p_outcome``, in words a rep or manager reads.

A contribution (``pred_contrib``) is in log-odds of the outcome model's raw score, before
calibration; the contributions of all features plus a bias add up to that raw score. A
contribution is measured against the model's average activity: positive means this value
makes an advance more likely than it is for a typical activity, negative less likely. The
factor's ``text`` says exactly that, without log-odds: what the value is (the feature
catalogue's sentence, shares as percentages, codes as words), then how it compares with
what is usual ("this rep's outcome rate over 4,361 activities (9%) is below the average of
all reps (12%)") and whether it raises or lowers the chance, and how strongly. ``effect``
keeps the signed log-odds for programs; ``value`` the value as the service saw it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from features import contract as c
from features.schema import CATEGORICAL, SENIORITY_RANK, feature_by_name
from features.schema import BASE_FEATURES as CATALOGUE
from models.bundle import FeatureSpec

CATEGORY_UNIT = "category"
RATE_FEATURE = "rep_outcome_rate"
RECORD_FEATURE = "rep_labelled_activities"
# |log-odds| below which an influence is "slight", and from which it is "strong"
SLIGHT, STRONG = 0.1, 0.5
_SENIORITY_WORDS = {"c_level": "a C-level executive", "vp": "a VP", "director": "a director", "manager": "a manager",
                    "individual_contributor": "an individual contributor", "unknown": "someone of unknown seniority"}
VALUE_WORDS: dict[str, dict[Any, str]] = {
    c.IS_AUTOMATED: {1.0: "a sequence or bulk tool (automated)", 0.0: "hand (not automated)"},
    "weekday_local": dict(enumerate(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"))),
    "max_seniority_engaged_deal": {float(v): _SENIORITY_WORDS[k] for k, v in SENIORITY_RANK.items()},
    c.SENIORITY: _SENIORITY_WORDS,
}


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


def value_text(name: str, unit: str, value: str | float | None) -> str:
    """How a feature's value reads in a factor: words for codes, percentages for shares, else :func:`format_value`."""
    if value is None:
        return ""
    words = VALUE_WORDS.get(name)
    if words is not None:
        key = value if isinstance(value, str) else float(value)
        if key in words:
            return words[key]
    if isinstance(value, str):
        return value.replace("_", " ")
    if unit.startswith("share"):
        return percent(value)
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return format_value(value)


def percent(value: float) -> str:
    """0.153 -> 15%; 0.004 -> 0.4%."""
    p = 100.0 * float(value)
    return f"{p:.0f}%" if abs(p) >= 10 or p == 0 else f"{p:.1f}%".replace(".0%", "%")


def influence(effect: float) -> str:
    """How a contribution reads: "raises the chance of an advance", "slightly lowers it", ..."""
    size = abs(effect)
    how = "slightly " if size < SLIGHT else "strongly " if size >= STRONG else ""
    return f"{how}{'raises' if effect > 0 else 'lowers'} the chance that the deal advances"


def compare_word(value: float, usual: float, tolerance: float = 0.05) -> str:
    """above / below / about the same as ``usual`` (within ``tolerance`` of it, relatively)."""
    if abs(value - usual) <= tolerance * abs(usual):
        return "about the same as"
    return "above" if value > usual else "below"


# What a missing value means for the features where it is common (no earlier event, too little to compare).
MISSING_TEXT = {
    "days_since_touch_contact": "no earlier touch to this contact is known",
    "days_since_touch_deal": "no earlier touch to this deal is known",
    "days_since_output_contact": "no reply, connect or meeting from this contact is known yet",
    "days_since_output_deal": "no reply, connect or meeting from this deal is known yet",
    "days_since_outcome_deal": "no outcome or stage advance is known on this deal yet",
    "deal_attention_vs_rep": "too few recent activities of this rep to compare the deal's attention with",
    "amount_vs_typical": "too few earlier deals of this product and team to compare the amount with",
    c.PERSONALIZATION: "how tailored the activity is is not recorded",
}


class Explainer:
    """Turns contribution rows into factors for one bundle's feature spec.

    Args:
        spec: the bundle's feature spec.
        max_factors: factors per result.
        usual_rep_rate: the average outcome rate of all reps (the serving context's prior),
            which a rep's track record is compared with; None when unknown.
    """

    def __init__(self, spec: FeatureSpec, max_factors: int = 5, usual_rep_rate: float | None = None):
        self.spec = spec
        self.max_factors = max_factors
        self.usual_rep_rate = usual_rep_rate
        self._units = [CATEGORY_UNIT if f.kind == CATEGORICAL else (f.unit or "value") for f in spec.features]
        catalogue = feature_by_name(CATALOGUE)
        # the catalogue's current sentence for known features (a bundle stores the text of its training day)
        self._templates = [catalogue[f.name].text if f.name in catalogue else f.text for f in spec.features]

    def text(self, j: int, value: str | float | None, effect: float, raw_columns: dict[str, np.ndarray],
             i: int) -> str:
        """The factor's sentence: what the value is, how it compares with the usual, which way it pushes."""
        f = self.spec.features[j]
        unit = self._units[j]
        if f.name in (RATE_FEATURE, RECORD_FEATURE):
            record = self._track_record(raw_columns, i, effect, f.name == RECORD_FEATURE)
            if record:
                return record
        if value is None:
            what = MISSING_TEXT.get(f.name, f"{f.name.replace('_', ' ')} is not known")
            return f"{what}: compared with a typical activity this {influence(effect)}"
        template = self._templates[j]
        shown = value_text(f.name, unit if f.kind != CATEGORICAL else "", value)
        what = template.replace("{v}", shown) if template else f"{f.name.replace('_', ' ')} {shown}"
        return f"{what}: compared with a typical activity this {influence(effect)}"

    def _track_record(self, raw_columns: dict[str, np.ndarray], i: int, effect: float, length: bool) -> str | None:
        """The rep's track record compared with all reps; ``length``: the factor is the record's size."""
        rate = _finite(raw_columns.get(RATE_FEATURE), i)
        n = _finite(raw_columns.get(RECORD_FEATURE), i)
        if rate is None:
            return None
        over = f" over {int(n):,} activities" if n is not None else ""
        if self.usual_rep_rate is not None:
            cmp = compare_word(rate, self.usual_rep_rate)
            head = (f"this rep's outcome rate{over} ({percent(rate)}) is {cmp} the average of all reps "
                    f"({percent(self.usual_rep_rate)})")
        else:
            head = f"this rep's past activities were followed by a deal advance {percent(rate)} of the time{over}"
        if length and n is not None:
            weight = "long enough to be trusted" if n >= 200 else "short, so it counts for little"
            head = f"{head}; a record of {int(n):,} activities is {weight}"
        return f"{head}: this {influence(effect)}"

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
                        "text": self.text(int(j), value, effect, raw_columns, i)})
        return out


def _finite(column: np.ndarray | None, i: int) -> float | None:
    if column is None:
        return None
    try:
        v = float(column[i])
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
