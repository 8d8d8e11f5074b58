"""Training plots as PNG files (matplotlib, Agg backend): logged to MLflow with each run.

- ``calibration_curve.png``: predicted vs observed rate per equal-mass bin, per label.
- ``feature_importance.png``: total gain per feature of the outcome models.
- ``shap_summary.png``: per-feature raw-score contributions (LightGBM ``pred_contrib``)
  on a test sample, coloured by the feature's value; no ``shap`` package needed.
- ``lift_by_activity_type.png``: outcome rate and top-decile lift per activity type.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

TOP_FEATURES = 20


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_plots(result, out_dir: Path) -> list[Path]:
    """Write every plot of a :class:`training.train.TrainingResult`; returns the files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        calibration_plot(result, out_dir / "calibration_curve.png"),
        importance_plot(result, out_dir / "feature_importance.png"),
        shap_plot(result, out_dir / "shap_summary.png"),
        lift_plot(result, out_dir / "lift_by_activity_type.png"),
    ]
    return [p for p in paths if p is not None]


def calibration_plot(result, path: Path) -> Path:
    plt = _plt()
    labels = list(result.config.labels)
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 4), squeeze=False)
    for ax, label in zip(axes[0], labels):
        if not any(lab == label for lab, _ in result.fits):
            why = result.skipped_labels.get(label, "no model was fit for it")
            ax.set_title(f"{label}: not trained")
            ax.text(0.5, 0.5, "\n".join(textwrap.wrap(why.split(": ", 1)[-1], 40)), ha="center", va="center",
                    transform=ax.transAxes, fontsize=9)
            ax.set_axis_off()
            continue
        top = 0.0
        for (lab, variant), fit in result.fits.items():
            if lab != label:
                continue
            curve = fit.metrics["calibration_curve"]
            ax.plot(curve["mean_p"], curve["rate"], marker="o", label=f"{variant} (ECE {fit.metrics['test']['ece']:.3f})")
            top = max(top, max(curve["mean_p"] + curve["rate"]))
        top = min(1.0, top * 1.1 + 0.01)
        ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_title(f"{label}: calibration on the test window")
        ax.set_xlabel("predicted probability (bin mean)")
        ax.set_ylabel("observed rate")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def importance_plot(result, path: Path) -> Path:
    plt = _plt()
    names = np.array(result.bundle.spec.names)
    variants = [v for (lab, v) in result.fits if lab == "outcome"]
    fig, axes = plt.subplots(1, len(variants), figsize=(6 * len(variants), 7), squeeze=False)
    for ax, variant in zip(axes[0], variants):
        gain = result.fits[("outcome", variant)].importance_gain
        order = np.argsort(gain)[::-1][:TOP_FEATURES][::-1]
        ax.barh(names[order], gain[order] / max(gain.sum(), 1e-12))
        ax.set_title(f"outcome/{variant}: share of total gain")
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def shap_plot(result, path: Path) -> Path | None:
    if not result.shap:
        return None
    plt = _plt()
    variants = list(result.shap)
    fig, axes = plt.subplots(1, len(variants), figsize=(6.5 * len(variants), 7), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, variant in zip(axes[0], variants):
        values = result.shap[variant]["values"]
        matrix = result.shap[variant]["matrix"]
        names = np.array(result.shap[variant]["names"])
        order = np.argsort(np.abs(values).mean(axis=0))[::-1][:TOP_FEATURES][::-1]
        for row, j in enumerate(order):
            x = matrix[:, j]
            finite = np.isfinite(x)
            colour = np.full(len(x), 0.5)
            if finite.any():
                ranks = np.argsort(np.argsort(x[finite]))
                colour[finite] = ranks / max(finite.sum() - 1, 1)
            jitter = rng.uniform(-0.3, 0.3, size=len(x))
            ax.scatter(values[:, j], row + jitter, c=colour, cmap="coolwarm", s=4, alpha=0.6, linewidths=0)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels(names[order], fontsize=8)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_xlabel("contribution to the raw score (log-odds)")
        ax.set_title(f"outcome/{variant}: contributions (blue low value, red high)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def lift_plot(result, path: Path) -> Path | None:
    by_variant = {v: fit.metrics.get("by_type") for (lab, v), fit in result.fits.items() if lab == "outcome"}
    by_variant = {v: b for v, b in by_variant.items() if b}
    if not by_variant:
        return None
    plt = _plt()
    types = sorted({t for b in by_variant.values() for t in b})
    x = np.arange(len(types))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    first = next(iter(by_variant.values()))
    ax1.bar(x, [first.get(t, {}).get("base_rate", np.nan) for t in types])
    ax1.set_xticks(x, types, rotation=30, ha="right")
    ax1.set_title("outcome rate per activity type (test window)")
    width = 0.8 / len(by_variant)
    for i, (variant, b) in enumerate(by_variant.items()):
        ax2.bar(x + i * width, [b.get(t, {}).get("lift_top_decile", np.nan) for t in types], width, label=variant)
    ax2.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax2.set_xticks(x + width * (len(by_variant) - 1) / 2, types, rotation=30, ha="right")
    ax2.set_title("top-decile lift within each activity type")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
