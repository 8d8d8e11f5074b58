"""What the training commands print: one-screen rich summaries and ``--json`` documents.

Only the CLI calls these (library code logs, it never prints).
"""

from __future__ import annotations

import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from training.train import TrainingResult, summary_rows


def jsonable(value: Any) -> Any:
    """NaN/inf -> None, tuples -> lists, numpy scalars -> Python, recursively."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    return value


def dumps(value: Any) -> str:
    return json.dumps(jsonable(value), indent=2)


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def train_document(run) -> dict[str, Any]:
    """The ``train --json`` document."""
    result: TrainingResult = run.result
    reg = run.registered
    return {
        "registered_model": reg.name if reg else None,
        "version": reg.version if reg else None,
        "alias": "challenger" if reg else None,
        "run_id": reg.run_id if reg else None,
        "model_uri": reg.model_uri if reg else None,
        "bundle_dir": str(run.bundle_dir) if run.bundle_dir else None,
        "window": result.bundle.manifest.data_window,
        "fingerprint": result.fingerprint,
        "counts": result.counts,
        "variants": result.bundle.manifest.variants,
        "leakage": result.leakage.to_dict(),
        "notes": getattr(result, "notes", []),
        "skipped_labels": getattr(result, "skipped_labels", {}),
        "deployed": result.metrics.get("deployed", {}),
        "features_used": result.features_used,
        "metrics": summary_rows(result),
        "by_type": {f"{lab}/{var}": fit.metrics.get("by_type", {}) for (lab, var), fit in result.fits.items()},
        "seconds": run.seconds | {f"training.{k}": v for k, v in result.seconds.items()},
    }


def print_train_summary(console: Console, run) -> None:
    """The one-screen end-of-train summary."""
    result: TrainingResult = run.result
    w = result.bundle.manifest.data_window
    rows = w.get("rows", {})
    console.print(Text(f"Trained on {result.n_rows:,} activities, {w['data_start'][:10]} .. {w['data_end'][:10]}"
                       + (f" (until {w['until'][:10]})" if w.get("until") else ""), style="bold"))
    console.print(f"  slices (time-ordered): train {rows.get('train', 0):,} < {w['validation_start'][:10]} <= "
                  f"validation {rows.get('validation', 0):,} < {w['calibration_start'][:10]} <= calibration "
                  f"{rows.get('calibration', 0):,} < {w['test_start'][:10]} <= test {rows.get('test', 0):,}",
                  highlight=False)
    v = result.bundle.manifest.variants
    exec_feats = result.bundle.manifest.extra.get("execution_features", [])
    console.print(f"  {len(result.features_used)} features; plan model (ranks planned activities) and "
                  + ("full model (+ " + ", ".join(exec_feats[:4]) + (" ..." if len(exec_feats) > 4 else "")
                     + ": scores done activities)" if v.get("full") == "full"
                     else "no execution-time features, so the full model is the plan model"), highlight=False)
    for flag in result.leakage.flags:
        style = "yellow"
        console.print(Text(f"  leakage probe: {flag.feature} {flag.detail} -> "
                           + ("kept (leakage.allow)" if flag.kept else "left out"), style=style))
    for note in getattr(result, "notes", []):  # skipped labels, purge, leakage warnings, what was deployed
        console.print(Text(f"  {note}", style="yellow" if note.startswith(("leakage", "label")) else ""))
    strongest = result.leakage.strongest("outcome")
    if strongest:
        console.print("  strongest single features (outcome AUC alone): "
                      + ", ".join(f"{f} {a:.3f}" for f, a in strongest), highlight=False)
    table = Table(title="Test window (most recent data)", title_justify="left", show_edge=False, pad_edge=False)
    has_truth = any("oracle_auc" in r for r in summary_rows(result))
    cols = ["label/variant", "n", "rate", "AUC", "PR-AUC", "log loss", "Brier", "ECE", "lift@10%", "calib", "trees"]
    has_realized = any("oracle_auc_realized" in r for r in summary_rows(result))
    if has_truth:
        cols += ["oracle", "gap", "rho truth", "ECE truth"]
    if has_realized:
        cols += ["realized"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("label/variant", "calib") else "right")
    for r in summary_rows(result):
        vals = [f"{r['label']}/{r['variant']}", _f(r["n_test"]), _f(r["base_rate"]), _f(r["auc"]), _f(r["pr_auc"]),
                _f(r["log_loss"]), _f(r["brier"]), _f(r["ece"]), _f(r["lift_top_decile"], 2), r["calibration"],
                _f(r["trees"])]
        if has_truth:
            vals += [_f(r.get("oracle_auc")), _f(r.get("oracle_gap")), _f(r.get("spearman_truth")),
                     _f(r.get("ece_truth"))]
        if has_realized:
            vals += [_f(r.get("oracle_auc_realized"))]
        table.add_row(*vals)
    console.print(table)
    if has_truth:
        ex_ante = [r for r in summary_rows(result) if r.get("oracle") == "p_outcome_label_ex_ante"]
        outcome = (f"outcome: the ex-ante oracle (p_outcome_label_ex_ante) on the {ex_ante[0].get('n_oracle', 0):,} "
                   "test rows where the simulator computed it" if ex_ante else
                   "outcome: " + ", ".join(sorted({str(r.get("oracle")) for r in summary_rows(result)
                                                   if r["label"] == "outcome"})))
        console.print(f"  oracle: AUC of the simulator's true probabilities ({outcome}); gap: oracle AUC minus the "
                      "model's AUC on the same rows"
                      + ("; realized: the realized-schedule oracle (p_outcome_label), which knows the deal's "
                         "future activities: an upper bound no model reaches" if has_realized else ""),
                      highlight=False)
    by_type = result.fits.get(("outcome", "full"), result.fits.get(("outcome", "plan"))).metrics.get("by_type", {})
    if by_type:
        parts = [f"{t} {_f(m['auc'])}" for t, m in sorted(by_type.items(), key=lambda kv: -kv[1]["n"])]
        console.print("  outcome AUC by activity type: " + ", ".join(parts), highlight=False)
    reg = run.registered
    if reg:
        from training.tracking import tracking_uri

        console.print(Text(f"Registered {reg.name} version {reg.version} as 'challenger' (run {reg.run_id}). "
                           f"Next: activity-scorer promote", style="green"))
        console.print(f"  MLflow: {tracking_uri()} (plots, metrics and the bundle are in the run)", highlight=False)
    if run.bundle_dir:
        console.print(f"  bundle: {run.bundle_dir}", highlight=False)
    secs = run.seconds
    console.print(f"  took {secs.get('total', 0):.1f}s (features {secs.get('features', 0):.1f}s, training "
                  f"{secs.get('training', 0):.1f}s, MLflow {secs.get('mlflow', 0):.1f}s)", highlight=False)


def print_refusal(console: Console, problems: list[str]) -> None:
    console.print(Text("Training refused:", style="bold red"))
    for line in problems:
        console.print(Text(f"  {line}", style="red"))


def print_promotion(console: Console, decision) -> None:
    """Candidate and champion side by side, then the verdict."""
    if decision.already_champion:
        console.print(f"version {decision.candidate_version} of {decision.name} is already the champion")
        return
    w = decision.window
    console.print(Text(f"Comparing {decision.name} v{decision.candidate_version} (candidate) with "
                       + (f"v{decision.champion_version} (champion)" if decision.champion_version else
                          "no champion (absolute gates only)"), style="bold"))
    console.print(f"  window: {w['what']}, {w['start'][:19]} .. {w['end'][:19]}, {w['rows']:,} activities, "
                  f"data {w['data']}", highlight=False)
    cand, champ = f"v{decision.candidate_version}", f"v{decision.champion_version}"
    has_champ = decision.champion_metrics is not None
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("label/variant")
    table.add_column("n", justify="right")
    for metric in ("AUC", "ECE", "log loss", "Brier"):
        table.add_column(f"{metric} {cand}", justify="right")
        if has_champ:
            table.add_column(f"{metric} {champ}", justify="right")
    table.add_column("gate")
    for label, by_variant in decision.candidate_metrics.items():
        for variant, m in by_variant.items():
            h = (decision.champion_metrics or {}).get(label, {}).get(variant, {})
            row = [f"{label}/{variant}", _f(int(m["n"]))]
            for key in ("auc", "ece", "log_loss", "brier"):
                row.append(_f(m.get(key), 4))
                if has_champ:
                    row.append(_f(h.get(key), 4))
            checks = [ch for ch in decision.checks if (ch.label, ch.variant) == (label, variant)]
            verdict = "" if not checks else ("ok" if all(ch.ok for ch in checks) else "FAIL")
            row.append(verdict)
            table.add_row(*row, style="red" if verdict == "FAIL" else None)
    console.print(table)
    for warning in decision.warnings:
        console.print(Text(f"  note: {warning}", style="yellow"))
    if decision.promoted and decision.forced:
        console.print(Text(f"FORCED: v{decision.candidate_version} is now the champion despite: "
                           + "; ".join(decision.reasons), style="bold yellow"))
    elif decision.promoted:
        console.print(Text(f"Promoted v{decision.candidate_version} to champion"
                           + (f" (was v{decision.champion_version})" if decision.champion_version else ""),
                           style="bold green"))
