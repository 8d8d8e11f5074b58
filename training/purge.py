"""Purge what can leak, not everything: when is a label settled?

Before the test window, training drops (*purges*) every row whose label was not yet known
when a model deployed at the test start would have been trained: its label could still
change through events at or after that instant. The safe default takes every label to need
its whole horizon (14 days for outcome, 7 for output / negative). That is right for a CRM
history, where a deal advances weeks after the activities that led there, and wrong where
the data shows a label settles sooner:

- **outputs and negatives** are responses to the activity itself. When every response the
  data has came within ``d`` of its activity, a label is settled ``d`` after the activity
  (a flat export writes responses one second after their row).
- **outcome**, when every deal has exactly one activity (a flat leads export: each row its
  own deal, the outcome written beside the row): the deal can only advance after that one
  activity, so when every advance came within ``d`` of its deal's activity, the outcome
  label is settled ``d`` after the activity. With several activities per deal an advance can
  follow any of them much later: the whole horizon is kept.

:func:`settle_days` returns, per label, the days after an activity by which its label is
taken as settled, and why; ``run_training`` purges with them and reports what was purged.
A settled time is never longer than the horizon and needs ``MIN_EVENTS`` observed events.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from features import contract as c

logger = logging.getLogger(__name__)

MIN_EVENTS = 20  # observed events needed before the data may shorten a label's horizon
MIN_SETTLE_DAYS = 1.0 / 86_400  # one second: an event at the activity's own instant still settles after it


@dataclass(frozen=True)
class Settle:
    """When one label is settled after its activity, and why.

    Attributes:
        horizon_days: the label's horizon.
        settle_days: days after the activity by which the label can no longer change.
        reason: one plain sentence for the training summary.
        rows_purged: rows before the test window left out because their label was not settled
            at its start (set by ``run_training``).
    """

    horizon_days: float
    settle_days: float
    reason: str
    rows_purged: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _ns(values: pd.Series) -> np.ndarray:
    return values.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy()


def _days(ns: float) -> float:
    return float(ns) / 86_400e9


def _before(frame: pd.DataFrame | None, column: str, until: pd.Timestamp | None) -> pd.DataFrame | None:
    if frame is None or until is None:
        return frame
    return frame[(frame[column] < until).to_numpy(dtype=bool, na_value=False)]


def response_settle(dataset, horizon_days: float, until: pd.Timestamp | None = None  # noqa: ANN001
                    ) -> tuple[float, str]:
    """Settle time of output / negative labels from the response delays the data shows (before ``until``)."""
    acts = _before(dataset.get(c.ACTIVITIES), c.OCCURRED_AT, until)
    resp = _before(dataset.get(c.RESPONSES), c.OCCURRED_AT, until)
    if resp is None or not len(resp):
        return horizon_days, "no responses in the data: the whole horizon is kept"
    t_act = pd.Series(_ns(acts[c.OCCURRED_AT]), index=acts[c.ACTIVITY_ID].astype("string"))
    t_act = t_act[~t_act.index.duplicated()]
    ids = resp[c.ACTIVITY_ID].astype("string")
    known = ids.isin(t_act.index).to_numpy(dtype=bool)
    lag = _ns(resp[c.OCCURRED_AT])[known] - t_act.reindex(ids[known]).to_numpy()
    horizon_ns = horizon_days * 86_400e9
    lag = lag[(lag >= 0) & (lag <= horizon_ns)]
    if len(lag) < MIN_EVENTS:
        return horizon_days, f"only {len(lag)} responses within the horizon: the whole horizon is kept"
    settle = max(_days(lag.max()), MIN_SETTLE_DAYS)
    if settle >= horizon_days:
        return horizon_days, "responses arrive up to the end of the horizon: the whole horizon is kept"
    return settle, (f"every one of the {len(lag):,} responses came within {_fmt(settle)} of its activity: "
                    f"a label is settled {_fmt(settle)} after its activity")


def outcome_settle(dataset, horizon_days: float, until: pd.Timestamp | None = None  # noqa: ANN001
                   ) -> tuple[float, str]:
    """Settle time of the outcome label: shorter than the horizon only for one-activity deals."""
    from features.advances import advance_events

    acts = _before(dataset.get(c.ACTIVITIES), c.OCCURRED_AT, until)
    if c.DEAL_ID not in acts.columns:
        return horizon_days, "activities have no deal: the whole horizon is kept"
    deals = acts[c.DEAL_ID].astype("string")
    if deals.isna().any():
        return horizon_days, "some activities have no deal (their label follows the account's deals): whole horizon"
    if deals.duplicated().any():
        return horizon_days, "deals have several activities (an advance may follow any of them): whole horizon"
    events = _before(advance_events(dataset), c.OCCURRED_AT, until)
    if len(events) < MIN_EVENTS:
        return horizon_days, f"only {len(events)} advance events: the whole horizon is kept"
    t_act = pd.Series(_ns(acts[c.OCCURRED_AT]), index=deals)
    ev_deal = events[c.DEAL_ID].astype("string")
    known = ev_deal.isin(t_act.index).to_numpy(dtype=bool)
    lag = _ns(events[c.OCCURRED_AT])[known] - t_act.reindex(ev_deal[known]).to_numpy()
    horizon_ns = horizon_days * 86_400e9
    if (lag < 0).any():
        return horizon_days, "some deals advance before their activity: the whole horizon is kept"
    lag = lag[lag <= horizon_ns]
    if len(lag) < MIN_EVENTS:
        return horizon_days, f"only {len(lag)} advances within the horizon: the whole horizon is kept"
    settle = max(_days(lag.max()), MIN_SETTLE_DAYS)
    if settle >= horizon_days:
        return horizon_days, "advances come up to the end of the horizon: the whole horizon is kept"
    return settle, (f"every deal has one activity and each of the {len(lag):,} advances came within "
                    f"{_fmt(settle)} of it: an outcome label is settled {_fmt(settle)} after its activity")


def settle_days(dataset, horizons: dict[str, float], labels: list[str], enabled: bool = True,  # noqa: ANN001
                until: pd.Timestamp | None = None) -> dict[str, Settle]:
    """Per label, the days after an activity by which its label is settled (see module docstring).

    Args:
        dataset: the ``features.dataset.Dataset`` trained on (None: every label keeps its horizon).
        horizons: ``{"outcome_days": .., "output_days": ..}``.
        labels: the labels trained.
        enabled: config ``splits.purge_settled_labels``; False keeps every horizon.
        until: only events before this instant are read (``train --until``).
    """
    out = {}
    for label in labels:
        horizon = float(horizons["outcome_days" if label == "outcome" else "output_days"])
        if not enabled:
            out[label] = Settle(horizon, horizon, "splits.purge_settled_labels is off: the whole horizon is kept")
        elif dataset is None:
            out[label] = Settle(horizon, horizon, "no dataset to read event delays from: the whole horizon is kept")
        else:
            settle, why = (outcome_settle if label == "outcome" else response_settle)(dataset, horizon, until)
            out[label] = Settle(horizon, settle, why)
        logger.info("label %s: settled %.6g days after the activity (%s)", label, out[label].settle_days,
                    out[label].reason)
    return out


def _fmt(days: float) -> str:
    seconds = days * 86_400
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if days < 2:
        return f"{seconds / 3600:.1f} h"
    return f"{days:.1f} days"


def fill_settled_labels(frame: pd.DataFrame, dataset, settles: dict[str, Settle], data_end: pd.Timestamp,  # noqa: ANN001
                        label_columns: dict[str, str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Label the rows censored at the end of the data whose label had settled by then.

    The feature pipeline blanks every label whose horizon passes the end of the data. When
    a label settles sooner (:func:`settle_days`), a row whose settle time has passed is
    known: it is labelled here exactly as the pipeline would (an advance of its deal / a
    response to it within the horizon, events before ``data_end`` only). A two-week
    campaign has no row whose 14-day horizon closed; every row whose conversion had a
    second to be written is labelled.

    Returns:
        The frame (a copy when anything changed) and the rows filled per label.
    """
    filled: dict[str, int] = {}
    if dataset is None:
        return frame, filled
    end_ns = pd.Timestamp(data_end).value
    t = _ns(frame[c.OCCURRED_AT])
    ids = frame[c.ACTIVITY_ID].astype("string")
    out = {}
    for label, st in settles.items():
        col = label_columns.get(label)
        if col is None or col not in frame.columns or not st.settle_days < st.horizon_days:
            continue
        y = frame[col].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        settle_ns, horizon_ns = st.settle_days * 86_400e9, st.horizon_days * 86_400e9
        todo = np.isnan(y) & (t + settle_ns < end_ns) & (t + horizon_ns >= end_ns)
        if label == "outcome" and c.DEAL_ID in frame.columns:
            todo &= frame[c.DEAL_ID].notna().to_numpy(dtype=bool)
        if not todo.any():
            continue
        lag = _first_lag(dataset, label, ids[todo], frame[c.DEAL_ID].astype("string")[todo] if label == "outcome"
                         else None, t[todo], end_ns)
        y[todo] = ((lag >= 0) & (lag <= horizon_ns)).astype(np.float64)
        out[col] = y
        filled[label] = int(todo.sum())
        logger.info("label %s: %d rows censored at the end of the data had settled: labelled", label, filled[label])
    return (frame.assign(**out) if out else frame), filled


def _first_lag(dataset, label: str, ids: pd.Series, deals: pd.Series | None, t: np.ndarray,  # noqa: ANN001
               end_ns: int) -> np.ndarray:
    """Per row, the delay to the first event that makes its label positive (-1 where none, before ``end_ns``)."""
    from features.advances import advance_events

    if label == "outcome":
        ev = advance_events(dataset)
        keys, ev_key = deals.to_numpy(dtype=object), ev[c.DEAL_ID].astype("string").to_numpy(dtype=object)
        ev_t = _ns(ev[c.OCCURRED_AT])
    else:
        resp = dataset.get(c.RESPONSES)
        if resp is None or not len(resp):
            return np.full(len(t), -1.0)
        kinds = c.MEANINGFUL_RESPONSES if label == "output" else c.NEGATIVE_RESPONSES
        resp = resp[resp[c.RESPONSE].isin(sorted(kinds)).to_numpy(dtype=bool, na_value=False)]
        keys, ev_key = ids.to_numpy(dtype=object), resp[c.ACTIVITY_ID].astype("string").to_numpy(dtype=object)
        ev_t = _ns(resp[c.OCCURRED_AT])
    keep = ev_t < end_ns
    events = pd.DataFrame({"key": ev_key[keep], "te": ev_t[keep]})
    rows = pd.DataFrame({"key": keys, "t": t, "row": np.arange(len(t))})
    merged = rows.merge(events, on="key", how="inner")
    merged = merged[merged["te"] >= merged["t"]]
    lag = np.full(len(t), -1.0)
    if len(merged):
        first = (merged["te"] - merged["t"]).groupby(merged["row"]).min()
        lag[first.index.to_numpy()] = first.to_numpy(dtype=np.float64)
    return lag
