"""Read a simulated dataset's ground truth back and rebuild the truth's deal state at any time.

A next-best-activity evaluation loads a directory written by ``activity-scorer simulate``::

    gt = GroundTruth.load(directory)
    state = gt.state("deal-00042", "2025-06-03T10:00:00Z")
    p = true_outcome_probability(state, gt.candidate("call", "con-00123", personalization=0.8), gt.params)

The state is computed from the contract tables (stage history, activities, responses) with the
same windows the simulator used, plus the latent deal quality and rep skill from the
ground-truth files; for every activity in the data it reproduces the simulator's ``p_outcome``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract as c
from features.dataset import Dataset, load_dataset
from simulator import truth as tr
from simulator.generate import (
    GROUND_TRUTH_DEALS_FILE,
    GROUND_TRUTH_FILE,
    GROUND_TRUTH_META_FILE,
    GROUND_TRUTH_REPS_FILE,
)
from simulator.truth import Candidate, DealState, TruthParams

DAY_NS = 86_400 * 10**9


@dataclass
class _Timeline:
    """Event times per key, sorted, for window counts by binary search."""

    keys: np.ndarray  # sorted distinct keys
    starts: np.ndarray  # offset of each key's run in ``times``
    times: np.ndarray  # int64 ns, sorted within each key

    @classmethod
    def build(cls, keys: pd.Series, times: pd.Series) -> _Timeline:
        frame = pd.DataFrame({"k": keys.to_numpy(), "t": _ns(times)})
        frame = frame.dropna(subset=["k"]).sort_values(["k", "t"], kind="stable")
        k = frame["k"].to_numpy()
        first = np.concatenate([[True], k[1:] != k[:-1]]) if len(k) else np.zeros(0, dtype=bool)
        return cls(keys=k[first], starts=np.append(np.flatnonzero(first), len(k)), times=frame["t"].to_numpy())

    def count(self, key: str, lo: int, hi: int) -> int:
        """Events of ``key`` with time in ``[lo, hi)``."""
        i = np.searchsorted(self.keys, key)
        if i >= len(self.keys) or self.keys[i] != key:
            return 0
        run = self.times[self.starts[i]: self.starts[i + 1]]
        return int(np.searchsorted(run, hi, side="left") - np.searchsorted(run, lo, side="left"))


class GroundTruth:
    """A simulated dataset with its ground truth: probabilities, latents and the truth's parameters."""

    def __init__(self, dataset: Dataset, activities: pd.DataFrame, deals: pd.DataFrame, reps: pd.DataFrame,
                 meta: dict) -> None:
        self.dataset = dataset
        self.activities = activities  # ground_truth.parquet: one row per activity
        self.deals = deals.set_index(c.DEAL_ID)
        self.reps = reps.set_index(c.REP_ID)
        self.meta = meta
        self.params = TruthParams.from_dict(meta["truth_params"])
        self._index()

    @classmethod
    def load(cls, directory: Path | str) -> GroundTruth:
        directory = Path(directory)
        meta = json.loads((directory / GROUND_TRUTH_META_FILE).read_text(encoding="utf-8"))
        return cls(
            load_dataset(directory),
            pd.read_parquet(directory / GROUND_TRUTH_FILE),
            pd.read_parquet(directory / GROUND_TRUTH_DEALS_FILE),
            pd.read_parquet(directory / GROUND_TRUTH_REPS_FILE),
            meta,
        )

    def _index(self) -> None:
        ds = self.dataset
        acts = ds[c.ACTIVITIES]
        touches = acts[acts[c.TYPE] != "none"]
        self._touches = _Timeline.build(touches[c.CONTACT_ID], touches[c.OCCURRED_AT])
        resp = ds[c.RESPONSES].merge(acts[[c.ACTIVITY_ID, c.CONTACT_ID]], on=c.ACTIVITY_ID, how="left")
        meaningful = resp[c.RESPONSE].isin(c.MEANINGFUL_RESPONSES).to_numpy(dtype=bool)
        negative = resp[c.RESPONSE].isin(c.NEGATIVE_RESPONSES).to_numpy(dtype=bool)
        self._outputs = _Timeline.build(resp[c.CONTACT_ID][meaningful], resp[c.OCCURRED_AT][meaningful])
        self._negatives = _Timeline.build(resp[c.CONTACT_ID][negative], resp[c.OCCURRED_AT][negative])
        stages = ds[c.DEAL_STAGES].sort_values([c.DEAL_ID, c.ENTERED_AT], kind="stable")
        self._stages = {d: (_ns(g[c.ENTERED_AT]),
                            g[c.STAGE_ORDER].to_numpy(dtype=np.int64))
                        for d, g in stages.groupby(c.DEAL_ID, sort=False)}
        deals = ds[c.DEALS].set_index(c.DEAL_ID)
        self._deal_account = deals[c.ACCOUNT_ID]
        self._deal_owner = deals[c.OWNER_REP_ID]
        contacts = ds[c.CONTACTS]
        self._contacts = contacts.set_index(c.CONTACT_ID)
        self._account_contacts = {a: list(g[c.CONTACT_ID]) for a, g in contacts.groupby(c.ACCOUNT_ID, sort=False)}

    def state(self, deal_id: str, at) -> DealState:
        """The truth's state of ``deal_id`` at ``at``: facts strictly before ``at``, plus the latents."""
        ts = tr._timestamp(at)
        t = ts.value
        entered, orders = self._stages[deal_id]
        i = int(np.searchsorted(entered, t, side="left")) - 1
        if i < 0:
            raise ValueError(f"{deal_id} does not exist yet at {ts}")
        contacts = self._account_contacts.get(self._deal_account[deal_id], [])
        week, month = t - tr.TOUCH_WINDOW_DAYS * DAY_NS, t - tr.RESPONSE_WINDOW_DAYS * DAY_NS
        return DealState(
            deal_id=deal_id,
            at=ts,
            stage_order=int(orders[i]),
            days_in_stage=(t - entered[i]) / DAY_NS,
            quality=float(self.deals.at[deal_id, "quality"]),
            rep_skill=float(self.reps.at[self._deal_owner[deal_id], "skill"]),
            touches_7d={k: self._touches.count(k, week, t) for k in contacts},
            outputs_30d={k: self._outputs.count(k, month, t) for k in contacts},
            negatives_30d={k: self._negatives.count(k, month, t) for k in contacts},
        )

    def candidate(self, type: str, contact_id: str | None = None, **fields) -> Candidate:  # noqa: A002
        """A candidate activity; the contact's seniority and department come from the contacts table."""
        if contact_id is not None and contact_id in self._contacts.index:
            row = self._contacts.loc[contact_id]
            fields.setdefault("seniority", _text(row.get(c.SENIORITY), "unknown"))
            fields.setdefault("department", _text(row.get(c.DEPARTMENT), "other"))
        return Candidate(type=type, contact_id=contact_id, **fields)

    def outcome_probability(self, deal_id: str, at, candidate: Candidate) -> float:
        """True outcome probability of ``candidate`` on ``deal_id`` at ``at``."""
        return tr.true_outcome_probability(self.state(deal_id, at), candidate, self.params)

    def outcome_effects(self, deal_id: str, at, candidates: list[Candidate]) -> np.ndarray:
        """True effect of each candidate on ``deal_id`` at ``at``: its outcome probability minus waiting's.

        The effect of a candidate is what doing it now adds to the probability that it triggers an
        advance, against ``none`` (a deliberate wait) in the same state.
        """
        state = self.state(deal_id, at)
        p = tr.true_outcome_probabilities(state, [*candidates, Candidate(type="none")], self.params)
        return p[:-1] - p[-1]

    @property
    def world(self) -> str:
        """The name of the world the dataset was simulated in (``default`` when not recorded)."""
        return str((self.meta.get("world") or {}).get("name", "default"))

    def candidate_for(self, activity_id: str) -> Candidate:
        """The candidate that describes an activity of the dataset (to replay its truth)."""
        acts = self.dataset[c.ACTIVITIES]
        row = acts.loc[acts[c.ACTIVITY_ID] == activity_id].iloc[0]
        at = row[c.OCCURRED_AT]
        pers = row[c.PERSONALIZATION]
        return self.candidate(
            row[c.TYPE], _text(row[c.CONTACT_ID], None),
            personalization=None if pd.isna(pers) else float(pers),
            is_automated=bool(row[c.IS_AUTOMATED]) if not pd.isna(row[c.IS_AUTOMATED]) else False,
            direction=_text(row[c.DIRECTION], "outbound"),
            hour=at.hour + at.minute / 60 + at.second / 3600, weekday=at.weekday(),
        )


def _ns(times: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds since the epoch."""
    return pd.DatetimeIndex(times).as_unit("ns").asi8


def _text(value, default):
    return default if value is None or pd.isna(value) else str(value)
