"""The effect model on Hillstrom's randomized e-mail arms: ``benchmarks/hillstrom_effects.py`` (issue 17).

The real-data test runs the command at a reduced size (12,000 of the 64,000 customers, 50
bootstrap resamples; about 15 s) and checks the per-row CSV, that the service's ``/rank`` code
(``Scorer.rank`` in-process, 40 customers) answers the same effects, and the one fact of the
data that any size shows: sending every customer the men's e-mail brings more visits than
sending none (18.3% vs 10.6% in the whole file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.shared import SHARED, require_shared

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "hillstrom_effects.py"
HILLSTROM = SHARED / "data" / "hillstrom" / "hillstrom.csv"
N_FILE_ROWS = 64_000


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import hillstrom_effects
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return hillstrom_effects


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "True"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)


def test_qini_is_one_for_the_perfect_order_and_below_zero_for_the_reverse(bench):
    rng = np.random.default_rng(0)
    n = 2000
    treated = (rng.random(n) < 0.5).astype(float)
    y = (rng.random(n) < np.where(treated == 1, 0.3, 0.1)).astype(float)
    perfect = y * treated - y * (1 - treated)
    assert bench.qini_auc(y, perfect, treated) == pytest.approx(1.0)
    assert bench.qini_auc(y, -perfect, treated) < 0
    noise = bench.qini_auc(y, rng.random(n), treated)
    assert abs(noise) < 0.2


def test_policy_sends_the_larger_positive_arm_else_none(bench):
    effects = {"mens": {"effect": np.array([0.02, -0.01, 0.01, 0.0]), "low": np.array([0.01, -0.02, -0.01, 0.0])},
               "womens": {"effect": np.array([0.01, -0.03, 0.03, 0.0]), "low": np.array([-0.01, -0.04, 0.01, 0.0])}}
    assert list(bench.policy_choices(effects)) == ["mens", "none", "womens", "none"]
    assert list(bench.policy_choices(effects, use_low=True)) == ["mens", "none", "womens", "none"]


def test_a_missing_file_is_one_red_line_and_exit_1(tmp_path):
    out = _run("--out", str(tmp_path / "e.csv"), "--data", str(tmp_path / "nope.csv"), timeout=120)
    assert out.returncode == 1
    assert "nope.csv: no such file" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "e.csv").exists()


@pytest.mark.realdata
@pytest.mark.slow
def test_held_out_effects_csv_and_always_mens_beats_never(bench, tmp_path):
    require_shared(HILLSTROM, "Hillstrom's e-mail data (hillstrom.csv)")
    csv, js = tmp_path / "hillstrom_effects.csv", tmp_path / "figures.json"
    rows, seed = 12_000, 3
    out = _run("--out", str(csv), "--rows", str(rows), "--seed", str(seed), "--bootstrap", "50", "--json", str(js),
               "--data", str(HILLSTROM), "--check-rank", "40")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "policy value" in out.stdout

    effects = pd.read_csv(csv)
    assert list(effects.columns[:3]) == ["row", "arm", "effect"]
    train, test = bench.split(N_FILE_ROWS, seed, rows)
    # 1-based data rows of the file, only the held-out half, both arms for each
    assert set(effects["row"]) == set(test + 1)
    assert not set(effects["row"]) & set(train + 1)
    assert effects["row"].between(1, N_FILE_ROWS).all()
    per_row = effects.groupby("row")["arm"].agg(lambda a: tuple(sorted(a)))
    assert (per_row == ("mens", "womens")).all()
    assert len(effects) == 2 * len(test)
    assert np.isfinite(effects["effect"]).all()
    assert (effects["effect_low"] <= effects["effect"]).all() and (effects["effect"] <= effects["effect_high"]).all()
    # effects differ between customers and between arms: not one constant
    assert effects.groupby("arm")["effect"].std().min() > 0

    figures = json.loads(js.read_text())
    mens, never = figures["policies"]["always-mens"], figures["policies"]["never"]
    assert mens["value"] > never["value"]
    assert figures["differences"]["always-mens - never"]["low"] > 0  # the whole 90% interval above 0
    for method in ("product", "S-learner", "T-learner"):
        assert set(figures["qini"][method]) == {"mens", "womens"}
    # what the service's /rank code answers for the same customers is what the CSV says
    check = figures["rank_check"]
    assert check["customers"] == 40
    assert max(check["max_abs_difference"].values()) < 1e-9
    assert check["overlap_disagreements"] == 0
    # the arm-level truth on the held-out half, as the data README gives it for the whole file
    assert 0.03 < figures["calibration"]["truth"]["mens"]["value"] < 0.11


def test_an_advance_one_second_after_its_activity_is_matched_at_any_number_of_deals():
    from models.effects import _pairs

    n = 12_000
    deal = np.arange(n)
    t = np.full(n, pd.Timestamp("2008-03-03T09:00:00Z").timestamp())
    ev_idx, act_idx, lag = _pairs(deal, t, deal, t + 1.0, 28 * 86_400.0)
    assert len(np.unique(ev_idx)) == n
    assert (act_idx == ev_idx).all() and np.allclose(lag, 1.0)
