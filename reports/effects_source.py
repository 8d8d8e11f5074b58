"""Where the report's effect estimates come from: the bundle's effects model, when it has one.

The effects model (``models/effects.py``, stored in the bundle directory under ``effects/``)
estimates, per activity, the change in the probability that the deal advances within the
outcome horizon if the activity is done, against waiting (type ``none``), with a 90%
interval and an ``overlap`` flag (``False`` when similar states never saw such an
activity, so the estimate is an extrapolation). It reads the bundle's encoded *plan*
matrix, the same matrix ``models/ranking.py`` reads (execution-time columns blanked).

When the bundle has no effects model (or the installed code has no ``models.effects``),
:func:`load_effect_source` returns ``None`` and a sentence saying why: the report then
shows every other figure and says which figures wait for effect estimates. Nothing here
invents an effect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c

logger = logging.getLogger(__name__)

WAIT_TYPE = "none"


class EffectSourceError(ValueError):
    """The bundle's effects model exists but cannot be used with this bundle or data."""


@dataclass
class Effects:
    """Effect estimates, one per row of the matrix they were asked for.

    Attributes:
        effect: estimated change in P(deal advances within the horizon) if done, vs waiting.
        low: lower end of the 90% interval.
        high: upper end of the 90% interval.
        overlap: ``False`` where the estimate is an extrapolation (no similar states saw it).
    """

    effect: np.ndarray
    low: np.ndarray
    high: np.ndarray
    overlap: np.ndarray

    def __len__(self) -> int:
        return len(self.effect)

    def take(self, rows: np.ndarray) -> Effects:
        return Effects(self.effect[rows], self.low[rows], self.high[rows], self.overlap[rows])


@dataclass
class EffectSource:
    """Asks one bundle's effects model for effects of feature rows or encoded plan rows."""

    bundle: Any  # models.bundle.ModelBundle
    model: Any  # models.effects.EffectModel
    description: str

    def plan_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The bundle's encoded plan matrix of a feature frame (execution-time columns blanked)."""
        matrix = self.bundle.encode(frame)
        return blank_execution(matrix, self.bundle.spec)

    def waiting(self, matrix: np.ndarray) -> np.ndarray | None:
        """Encoded rows of waiting (type ``none``) in the states of ``matrix`` (see :func:`waiting_rows`)."""
        return waiting_rows(matrix, self.bundle.spec)

    def predict(self, matrix: np.ndarray) -> Effects:
        """Effects of encoded plan rows (see :meth:`plan_matrix`).

        The baseline is waiting in the same state (type ``none``), when the model knows it.

        Raises:
            EffectSourceError: the effects model refuses the matrix or answers with other lengths.
        """
        n = len(matrix)
        if n == 0:
            empty = np.zeros(0)
            return Effects(empty, empty, empty, np.zeros(0, dtype=bool))
        try:
            est = self.model.predict(matrix, self.waiting(matrix))
        except (ValueError, KeyError, IndexError) as err:
            raise EffectSourceError(f"the effects model cannot read this data: {err}") from None
        arrays = [np.asarray(getattr(est, name), dtype=np.float64) for name in ("effect", "low", "high")]
        overlap = np.asarray(getattr(est, "overlap"), dtype=bool)
        if any(len(a) != n for a in (*arrays, overlap)):
            raise EffectSourceError(f"the effects model answered for {len(arrays[0])} rows, asked for {n}")
        effect, low, high = arrays
        return Effects(effect, np.minimum(low, effect), np.maximum(high, effect), overlap)


def waiting_rows(matrix: np.ndarray, spec) -> np.ndarray | None:  # noqa: ANN001
    """The same states with the activity replaced by a deliberate wait (type ``none``), as ``/rank`` builds it.

    None when the model never saw a ``none`` activity: waiting then triggers no advance of its own.
    """
    names = list(spec.names)
    if c.TYPE not in names or WAIT_TYPE not in (spec[c.TYPE].levels or ()):
        return None
    wait = np.array(matrix, dtype=np.float64, copy=True)
    wait[:, names.index(c.TYPE)] = float(list(spec[c.TYPE].levels).index(WAIT_TYPE))
    for name, value in ((c.IS_AUTOMATED, 0.0), (c.PERSONALIZATION, np.nan), (c.DIRECTION, np.nan),
                        (c.SEQUENCE_STEP, np.nan)):
        if name in names:
            wait[:, names.index(name)] = value
    return wait


def blank_execution(matrix: np.ndarray, spec) -> np.ndarray:  # noqa: ANN001
    """``matrix`` with the execution-time columns set to NaN, as the plan models read it."""
    if spec.execution_indices:
        matrix = np.array(matrix, dtype=np.float64, copy=True)
        matrix[:, spec.execution_indices] = np.nan
    return matrix


def load_effect_source(bundle, bundle_dir: Path | None) -> tuple[EffectSource | None, str]:  # noqa: ANN001
    """The bundle's effects model, or ``None`` with the reason there is none.

    Args:
        bundle: the loaded ``ModelBundle``.
        bundle_dir: its directory (the effects model lives in ``<bundle_dir>/effects/``).

    Returns:
        ``(source, description)``: ``source`` is None when the bundle carries no effects
        model; ``description`` says which model answers, or why none does.

    Raises:
        EffectSourceError: the bundle has an effects model that cannot be loaded.
    """
    try:
        from models import effects as effects_mod
    except ImportError:
        return None, ("this installation has no effects model yet (models/effects.py, the next-best-activity "
                      "issue): figures that need effect estimates are left out")
    if bundle_dir is None:
        return None, "no bundle directory to read an effects model from"
    try:
        model = effects_mod.load_effects(Path(bundle_dir), bundle.spec)
    except (OSError, ValueError) as err:  # models.bundle.BundleError is a ValueError
        raise EffectSourceError(f"{bundle_dir}: the effects model cannot be loaded ({err})") from None
    if model is None:
        return None, (f"the model bundle has no effects model ({Path(bundle_dir).name}/effects/ is absent; it was "
                      f"trained before effect estimation existed): figures that need effect estimates are left out")
    logger.info("effects model loaded from %s", bundle_dir)
    n_boot = len(getattr(model, "bootstraps", []) or [])
    horizon = getattr(model, "horizon_days", None)
    note = ("the bundle's effects model (effects/): the change in P(the deal advances within "
            f"{horizon if horizon is not None else 'the'} days) if an activity is done rather than waiting; "
            f"90% intervals from {n_boot} bootstrap refits")
    return EffectSource(bundle, model, note), note
