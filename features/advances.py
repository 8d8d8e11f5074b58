"""What counts as an *advance*: the one definition the outcome label and the dataset summary share.

A deal **advances** when

- a ``deal_stages`` row takes it to a stage order higher than any it had reached before.
  A deal's first stage row is where its known history starts, not an advance (a CRM export
  whose stage history starts mid-life would otherwise label the 14 days before its first
  row positive); a move to closed-lost (order ``CLOSED_LOST_ORDER``, 0) never is; or
- an ``outcomes`` row is recorded for it (any outcome).

The outcome label of an activity is 1 when its deal has an advance event within the
outcome horizon after the activity (``features.build``); the ``validate`` summary counts
the stage advances (``features.validation.stage_advances``). Both call
:func:`stage_advance_mask`, and :func:`advance_events` lists every event, e.g. for the
effect estimator.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from features import contract as c

logger = logging.getLogger(__name__)

STAGE_ADVANCE = "stage_advance"
OUTCOME_RECORDED = "outcome"


def stage_advance_mask(deal: np.ndarray, entered: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Which stage rows are advances (see module docstring), in the input's row order.

    Args:
        deal: integer deal code per row (>= 0; rows without a deal must be filtered out first).
        entered: entry time per row (any sortable integer, e.g. epoch ms).
        order: stage order per row (finite).

    Returns:
        A boolean array aligned with the inputs. Rows of one deal are taken by time; rows at
        the same instant lower order first, so a deal whose first instant has several rows
        starts at the lowest and the higher ones at that instant are advances.
    """
    deal = np.asarray(deal, dtype=np.int64)
    n = len(deal)
    out = np.zeros(n, dtype=bool)
    if n == 0:
        return out
    r_all = np.asarray(order, dtype=np.float64).astype(np.int64)
    o = np.lexsort((r_all, np.asarray(entered), deal))  # by deal, then time (ties: lower order first)
    d, r = deal[o], r_all[o]
    levels = int(max(r.max(), 0)) + 2
    comb = d * levels + np.maximum(r, 0)
    run = np.maximum.accumulate(comb)  # deal codes ascend, so the running max stays inside a deal
    first = np.ones(n, dtype=bool)
    first[1:] = d[1:] != d[:-1]
    prev = np.empty_like(run)
    prev[0] = 0
    prev[1:] = run[:-1]
    prev_max = np.where(first, 0, prev - d * levels)
    adv = (r != c.CLOSED_LOST_ORDER) & (r > 0) & (r > prev_max) & ~first
    out[o] = adv
    return out


def advance_events(dataset) -> pd.DataFrame:  # noqa: ANN001 - features.dataset.Dataset
    """Every advance event of a dataset: ``deal_id``, ``occurred_at`` (UTC) and ``kind``.

    ``kind`` is ``"stage_advance"`` (a ``deal_stages`` row that is an advance) or
    ``"outcome"`` (an ``outcomes`` row). Rows without a deal or a time are left out.
    Sorted by deal, then time. This is exactly the set of events that makes an activity's
    outcome label positive when one falls within the horizon after it.
    """
    parts = []
    stages = dataset.get(c.DEAL_STAGES)
    if stages is not None and len(stages):
        adv = stage_advances_frame(stages)
        parts.append(pd.DataFrame({c.DEAL_ID: stages.loc[adv, c.DEAL_ID].astype("string"),
                                   c.OCCURRED_AT: stages.loc[adv, c.ENTERED_AT], "kind": STAGE_ADVANCE}))
    outcomes = dataset.get(c.OUTCOMES)
    if outcomes is not None and len(outcomes):
        ok = outcomes[c.DEAL_ID].notna() & outcomes[c.OCCURRED_AT].notna()
        parts.append(pd.DataFrame({c.DEAL_ID: outcomes.loc[ok, c.DEAL_ID].astype("string"),
                                   c.OCCURRED_AT: outcomes.loc[ok, c.OCCURRED_AT], "kind": OUTCOME_RECORDED}))
    if not parts:
        return pd.DataFrame({c.DEAL_ID: pd.Series(dtype="string"),
                             c.OCCURRED_AT: pd.Series(dtype=c.TIMESTAMP_DTYPE), "kind": pd.Series(dtype="string")})
    out = pd.concat(parts, ignore_index=True)
    out["kind"] = out["kind"].astype("string")
    return out.sort_values([c.DEAL_ID, c.OCCURRED_AT], kind="stable").reset_index(drop=True)


def stage_advances_frame(stages: pd.DataFrame) -> pd.Series:
    """:func:`stage_advance_mask` over a ``deal_stages`` frame: a boolean Series aligned with it.

    Rows without a deal, an entry time or a stage order are never advances (and do not
    start a deal's history).
    """
    out = pd.Series(False, index=stages.index, dtype=bool)
    if not len(stages):
        return out
    order = pd.to_numeric(stages[c.STAGE_ORDER], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    entered = stages[c.ENTERED_AT]
    ok = stages[c.DEAL_ID].notna().to_numpy(dtype=bool) & entered.notna().to_numpy(dtype=bool) & ~np.isnan(order)
    if not ok.any():
        return out
    codes, _ = pd.factorize(stages[c.DEAL_ID].astype("string")[ok])
    t = entered[ok].dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy()
    mask = stage_advance_mask(codes.astype(np.int64), t, order[ok])
    values = out.to_numpy(copy=True)
    values[ok] = mask
    return pd.Series(values, index=stages.index, dtype=bool)
