"""Split a dataset into partitions that each hold whole accounts.

Event tables (activities, responses, deal stages, outcomes) are split; entity tables (deals,
contacts, accounts, reps: one row per entity, small beside the events) go whole to every
partition. An activity goes where its deal's account is; an activity without a deal goes where
its own account is (filled from its contact, as ``features.build`` fills it). Every deal and
every contact then has its whole history in one partition, which the features need; a contact
whose activities name deals of different accounts breaks that and is refused by name.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import contract as c
from features.dataset import Dataset

logger = logging.getLogger(__name__)

EVENT_TABLES = (c.ACTIVITIES, c.RESPONSES, c.DEAL_STAGES, c.OUTCOMES)
ENTITY_TABLES = (c.DEALS, c.CONTACTS, c.ACCOUNTS, c.REPS)
ROWS_PER_PARTITION = 250_000  # activities; a partition's features take ~3 KB per activity at peak


class PartitionError(ValueError):
    """The history cannot be split by account (names the entity that crosses accounts)."""


@dataclass
class Partition:
    """The event rows of one partition.

    Attributes:
        index: partition number.
        events: event tables, rows in the dataset's order.
        rows: position of each activity in the whole activities table (the dataset's order).
    """

    index: int
    events: dict[str, pd.DataFrame]
    rows: np.ndarray

    @property
    def n_activities(self) -> int:
        return len(self.rows)


def partition_count(n_activities: int, workers: int, requested: int | None = None) -> int:
    """Partitions for a history: ``requested``, else one per ~250k activities and at least one per worker."""
    if requested is not None:
        if requested < 1:
            raise PartitionError(f"partitions: {requested} is not a positive number")
        return requested
    return max(workers, math.ceil(n_activities / ROWS_PER_PARTITION), 1)


def _stable_bucket(keys: pd.Series, n: int) -> np.ndarray:
    """Partition number per key: a hash that is the same in every process and run."""
    hashed = pd.util.hash_pandas_object(keys.astype("string").fillna(""), index=False).to_numpy(np.uint64)
    return (hashed % np.uint64(n)).astype(np.int64)


def _owner_map(frame: pd.DataFrame | None, key: str, value: str) -> pd.Series:
    """``key -> value`` of an entity table (last row wins, missing values dropped)."""
    if frame is None or key not in frame.columns or value not in frame.columns:
        return pd.Series(dtype="string")
    pairs = frame[[key, value]].dropna()
    return pd.Series(pairs[value].astype("string").to_numpy(), index=pairs[key].astype("string").to_numpy(),
                     dtype="string").pipe(lambda s: s[~s.index.duplicated(keep="last")])


def activity_groups(dataset: Dataset) -> tuple[pd.Series, pd.Series]:
    """The account group of every activity and of every deal.

    Returns:
        (group per activity row, group per deal id). A group is an account id, or
        ``"deal|<id>"`` / ``"contact|<id>"`` / ``"activity|<id>"`` when no account is known.
    """
    acts = dataset[c.ACTIVITIES]
    n = len(acts)

    def col(name: str) -> pd.Series:
        if name in acts.columns:
            return acts[name].astype("string").reset_index(drop=True)
        return pd.Series(pd.array([pd.NA] * n, dtype="string"))

    deal, contact, account = col(c.DEAL_ID), col(c.CONTACT_ID), col(c.ACCOUNT_ID)
    deal_acc = _owner_map(dataset.get(c.DEALS), c.DEAL_ID, c.ACCOUNT_ID)
    contact_acc = _owner_map(dataset.get(c.CONTACTS), c.CONTACT_ID, c.ACCOUNT_ID)
    filled = account.fillna(deal.map(deal_acc)).fillna(contact.map(contact_acc))
    # a deal's group: its account in the deals table, else the first account its activities name
    first_acc = pd.DataFrame({"deal": deal, "acc": filled}).dropna().drop_duplicates("deal").set_index("deal")["acc"]
    deal_ids = pd.Index(deal.dropna().unique()).union(pd.Index(deal_acc.index))
    if dataset.get(c.DEALS) is not None:
        deal_ids = deal_ids.union(pd.Index(dataset[c.DEALS][c.DEAL_ID].dropna().astype("string").unique()))
    deal_group = pd.Series(pd.array(deal_ids.to_numpy(object), dtype="string"), index=deal_ids, dtype="string")
    deal_group = deal_acc.reindex(deal_ids).fillna(first_acc.reindex(deal_ids)).fillna("deal|" + deal_group)
    group = deal.map(deal_group)
    group = group.fillna(filled).fillna("contact|" + contact)
    ids = col(c.ACTIVITY_ID)
    group = group.fillna("activity|" + ids.fillna(pd.Series(np.arange(n).astype(str), dtype="string")))
    return group, deal_group


def split_dataset(dataset: Dataset, n_partitions: int) -> list[Partition]:
    """The event rows of ``dataset`` in ``n_partitions`` partitions of whole accounts (empty ones dropped).

    Raises:
        PartitionError: a contact's activities lie on deals of different accounts, or an
            activity id repeats (both would make one entity's history cross partitions).
    """
    acts = dataset[c.ACTIVITIES]
    ids = acts[c.ACTIVITY_ID].astype("string")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise PartitionError(f"{c.ACTIVITIES}: activity_id {dup.iloc[0]!r} repeats (row {int(dup.index[0]) + 2}); "
                             f"the Dask engine needs unique activity ids")
    group, deal_group = activity_groups(dataset)
    part = _stable_bucket(group, n_partitions)
    if c.CONTACT_ID in acts.columns:
        by_contact = pd.DataFrame({"contact": acts[c.CONTACT_ID].astype("string").to_numpy(), "part": part,
                                   "group": group.to_numpy()}).dropna(subset=["contact"])
        spread = by_contact.groupby("contact")["part"].nunique()
        crossing = spread[spread > 1]
        if len(crossing):
            name = crossing.index[0]
            groups = sorted(set(by_contact.loc[by_contact["contact"] == name, "group"].astype(str)))[:3]
            raise PartitionError(f"{c.ACTIVITIES}: contact {name!r} has activities on deals of different accounts "
                                 f"({', '.join(groups)}): the Dask engine keeps each contact's history within one "
                                 f"account; fix the contact's deals or use --engine local "
                                 f"({len(crossing):,} contacts like it)")
    deal_part = pd.Series(_stable_bucket(deal_group.reset_index(drop=True), n_partitions), index=deal_group.index)
    act_part = pd.Series(part, index=ids.to_numpy())

    def by_deal(frame: pd.DataFrame) -> np.ndarray:
        d = frame[c.DEAL_ID].astype("string")
        known = d.map(deal_part)
        fallback = _stable_bucket("deal|" + d.fillna(""), n_partitions)
        return np.where(known.isna().to_numpy(), fallback, known.fillna(0).to_numpy(np.int64))

    assign: dict[str, np.ndarray] = {c.ACTIVITIES: part}
    if dataset.get(c.RESPONSES) is not None:
        r = dataset[c.RESPONSES][c.ACTIVITY_ID].astype("string").map(act_part)
        assign[c.RESPONSES] = r.fillna(0).to_numpy(np.int64)  # unknown activity: never joined, any partition
    for name in (c.DEAL_STAGES, c.OUTCOMES):
        if dataset.get(name) is not None:
            assign[name] = by_deal(dataset[name])
    # rows no activity joins (a stage of an unknown deal, a response to an unknown activity) are
    # never read, but kept: in the first partition that has activities
    used = np.unique(part)
    for name, where in assign.items():
        if name != c.ACTIVITIES and len(used):
            assign[name] = np.where(np.isin(where, used), where, used[0])
    out = []
    for k in range(n_partitions):
        rows = np.flatnonzero(part == k)
        if not len(rows):
            continue
        events = {name: dataset[name].iloc[np.flatnonzero(where == k)].reset_index(drop=True)
                  for name, where in assign.items()}
        out.append(Partition(k, events, rows))
    logger.info("split %d activities into %d partitions (largest %d)", len(acts), len(out),
                max((p.n_activities for p in out), default=0))
    return out


def entity_tables(dataset: Dataset) -> dict[str, pd.DataFrame]:
    """The entity tables every partition receives whole."""
    return {name: dataset[name] for name in ENTITY_TABLES if dataset.get(name) is not None}
