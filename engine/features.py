"""Features and labels on Dask: ``features.build`` per partition of whole accounts, plus one pass for reps.

Three steps, all on the cluster:

1. **Partitions** (two tasks each: the table, then its reps' facts):
   ``features.build.build_training_frame`` on the partition's events with every entity table, censored at the end of the whole dataset. Every deal,
   contact and account feature, every label and the amount baselines (from the whole deals
   table) are then what the local engine computes. The partition also hands back, per
   activity, the few facts a rep's features need: rep, time, when known, outcome label and
   the deal's attention.
2. **Reps** (one task): those facts of every partition, in the dataset's order, give each
   activity its rep's track record and usual attention with the same named steps as the
   local engine (``features.build.rep_track_record`` / ``rep_usual_attention``), so even the
   floating-point sums are the same.
3. **Partitions again**: the three rep features are replaced by the ones from step 2.

The result equals the local engine's table exactly, rows in partition order (sort by
``activity_id``, or by ``occurred_at, activity_id`` as :func:`gather_table` does, to compare).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.partition import Partition, entity_tables, partition_count, split_dataset
from features import contract as c
from features import schema as s
from features.build import (
    NO_TIME,
    Horizons,
    TrainingTable,
    attention_vs_rep,
    build_training_frame,
    custom_fields_of,
    dataset_end,
    feature_list,
    rep_margin_ms,
    rep_rate_features,
    rep_track_record,
    rep_usual_attention,
)
from features.dataset import Dataset
from features.transforms import MS_PER_DAY, Query, make_keyer

logger = logging.getLogger(__name__)

ATTENTION = "hand_touches_deal_per_day"
REP_FEATURES = ("rep_outcome_rate", "rep_labelled_activities", "deal_attention_vs_rep")


@dataclass
class DistributedTable:
    """A training table held on the cluster, one frame future per partition.

    Attributes:
        parts: futures of the partition frames (the local engine's columns).
        features: the feature catalogue of the table.
        data_end: where labels are censored.
        stats: counts as in ``features.build.TrainingTable.stats``.
        seconds: time per step.
    """

    parts: list[Any]
    features: list[s.Feature]
    data_end: pd.Timestamp
    stats: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _ms(values: pd.Series) -> np.ndarray:
    ns = values.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT")).astype(np.int64)
    out = ns // 1_000_000
    out[ns == np.iinfo(np.int64).min] = NO_TIME
    return out


def _partition_table(events: dict[str, pd.DataFrame], entities: dict[str, pd.DataFrame], meta: dict[str, Any],
                     until: pd.Timestamp | None, horizons: Horizons, timezone: str,
                     data_end: pd.Timestamp) -> pd.DataFrame:
    """Step 1 on a worker: the partition's table."""
    dataset = Dataset({**events, **entities}, custom_fields=meta["custom_fields"],
                      execution_time_fields=meta["execution_time_fields"])
    return build_training_frame(dataset, until=until, horizons=horizons, timezone=timezone,
                                data_end=None if until is not None else data_end).frame


def _partition_facts(frame: pd.DataFrame, events: dict[str, pd.DataFrame], rows: np.ndarray) -> pd.DataFrame:
    """Step 1 on a worker: the per-activity facts of the partition's reps (a task of its own, see below)."""
    acts = events[c.ACTIVITIES]
    ids = acts[c.ACTIVITY_ID].astype("string")
    at = pd.Index(ids.to_numpy(object)).get_indexer(frame[c.ACTIVITY_ID].to_numpy(object))
    t = _ms(frame[c.OCCURRED_AT])
    if c.LOGGED_AT in acts.columns:
        logged = _ms(acts[c.LOGGED_AT])[at]
        avail = np.where(logged == NO_TIME, t, np.maximum(t, logged))
    else:
        avail = t
    facts = pd.DataFrame({
        "row": rows[at],
        "rep": frame[c.REP_ID].to_numpy(object, na_value=None),
        "t": t,
        "avail": avail,
        "y": frame[s.LABEL_OUTCOME].to_numpy(np.float64, na_value=np.nan),
        "attention": frame[ATTENTION].to_numpy(np.float64, na_value=np.nan),
    })
    return facts


def _rep_pass(facts: list[pd.DataFrame], horizons: Horizons) -> list[dict[str, np.ndarray]]:
    """Step 2 on a worker: rep track record and usual attention of every activity, in the dataset's order."""
    sizes = [len(f) for f in facts]
    every = pd.concat(facts, ignore_index=True)
    del facts
    order = np.argsort(every["row"].to_numpy(np.int64), kind="stable")
    rep = every["rep"].to_numpy(object)[order]
    t = every["t"].to_numpy(np.int64)[order]
    avail = every["avail"].to_numpy(np.int64)[order]
    y = every["y"].to_numpy(np.float64)[order]
    attention = every["attention"].to_numpy(np.float64)[order]
    del every
    codes, uniques = pd.factorize(rep, use_na_sentinel=True)
    codes = codes.astype(np.int64)
    horizon_ms = horizons.outcome_days * MS_PER_DAY
    keyer = make_keyer([t, avail], max(len(uniques), 1), rep_margin_ms(horizons))
    q_rep = Query(codes, t)
    rep_sum, rep_n, prior_sum, prior_n = rep_track_record(codes, t, avail, y, horizon_ms, keyer, q_rep)
    usual_sum, usual_n = rep_usual_attention(codes, t, avail, attention, keyer, q_rep)
    # back to each partition's own row order
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    out, start = [], 0
    for n in sizes:
        idx = back[start:start + n]
        start += n
        out.append({"rep_sum": rep_sum[idx], "rep_n": rep_n[idx], "prior_sum": prior_sum[idx],
                    "prior_n": prior_n[idx], "usual_sum": usual_sum[idx], "usual_n": usual_n[idx]})
    return out


def _finish_partition(frame: pd.DataFrame, cross: dict[str, np.ndarray]) -> pd.DataFrame:
    """Step 3 on a worker: the rep features from the pass over every partition."""
    has_rep = frame[c.REP_ID].notna().to_numpy(bool)
    rate, labelled = rep_rate_features(has_rep, cross["rep_sum"], cross["rep_n"], cross["prior_sum"],
                                       cross["prior_n"])
    attention = frame[ATTENTION].to_numpy(np.float64, na_value=np.nan)
    vs_rep = attention_vs_rep(attention, cross["usual_sum"], cross["usual_n"])
    return frame.assign(rep_outcome_rate=rate, rep_labelled_activities=labelled, deal_attention_vs_rep=vs_rep)


def _stats(frame: pd.DataFrame) -> dict[str, int]:
    return {
        "activities": len(frame),
        "outcome_labelled": int(frame[s.LABEL_OUTCOME].notna().sum()),
        "output_labelled": int(frame[s.LABEL_OUTPUT].notna().sum()),
        "logged_after_outcome": int(frame[s.LEAK_FLAG].sum()),
    }


def build_distributed_table(client: Any, dataset: Dataset, *, until: pd.Timestamp | str | None = None,
                            horizons: Horizons = Horizons(), timezone: str = "UTC",
                            n_partitions: int | None = None, partitions: list[Partition] | None = None
                            ) -> DistributedTable:
    """The training table of ``dataset`` computed on the cluster of ``client``, left there in partitions.

    Args:
        client: a ``distributed.Client``.
        dataset: the whole dataset (its entity tables go to every partition).
        until: use only what was known before this instant (as ``features.build``).
        horizons: label horizons.
        timezone: for hour and weekday features.
        n_partitions: default one per ~250k activities, at least one per worker.
        partitions: an existing split of ``dataset`` (else split here).

    Raises:
        engine.partition.PartitionError: the history cannot be split by account.
    """
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if until is not None:
        until = pd.Timestamp(until)
        until = until.tz_localize("UTC") if until.tzinfo is None else until.tz_convert("UTC")
    workers = max(len(client.scheduler_info().get("workers", {})), 1)
    if partitions is None:
        n = partition_count(len(dataset[c.ACTIVITIES]), workers, n_partitions)
        partitions = split_dataset(dataset, n)
    end = until if until is not None else dataset_end(dataset)
    meta = {"custom_fields": dataset.custom_fields, "execution_time_fields": set(dataset.execution_time_fields)}
    seconds["split"] = time.perf_counter() - t0

    t = time.perf_counter()
    [entities] = client.scatter([entity_tables(dataset)], broadcast=True)
    # The table and the facts are separate results, never one tuple taken apart: a frame held both
    # in a tuple and on its own is counted twice by Dask and cannot be freed by spilling either, and
    # at 10M that sent a 6 GiB worker over its limit in step 1 (docs/scale.md). Dask can spill the
    # step-1 frames while the rep pass waits for every partition's facts.
    frames, facts = [], []
    for p in partitions:
        [events] = client.scatter([p.events])
        frame = client.submit(_partition_table, events, entities, meta, until, horizons, timezone, end,
                              pure=False, key=f"features-partition-{p.index}-{time.time_ns()}")
        frames.append(frame)
        facts.append(client.submit(_partition_facts, frame, events, p.rows, pure=False))
        del events, frame
    cross = client.submit(_rep_pass, facts, horizons, pure=False)
    parts = [client.submit(_finish_partition, fr, client.submit(_take, cross, i, pure=False), pure=False)
             for i, fr in enumerate(frames)]
    del frames, facts, cross
    stats_f = [client.submit(_stats, p, pure=False) for p in parts]
    stats_list = client.gather(stats_f)
    seconds["features"] = time.perf_counter() - t
    stats = {k: int(sum(st[k] for st in stats_list)) for k in stats_list[0]} if stats_list else {}
    features = feature_list(custom_fields_of(dataset))
    logger.info("features on Dask: %d activities in %d partitions in %.1fs", stats.get("activities", 0),
                len(parts), time.perf_counter() - t0)
    return DistributedTable(parts, features, pd.Timestamp(end), stats, seconds)


def _take(pair: Any, i: int) -> Any:
    return pair[i]


def _keys_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The two columns the gathered table is ordered by (a task on the worker that holds ``frame``)."""
    return frame[[c.OCCURRED_AT, c.ACTIVITY_ID]]


def _columns_of(frame: pd.DataFrame) -> list[str]:
    return list(frame.columns)


def _column_of(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name]


def gather_table(client: Any, table: DistributedTable) -> TrainingTable:
    """The whole table on this process, rows ordered as the local engine orders them.

    The order comes from the two key columns of every partition; then the table is gathered
    one column at a time, each taken into that order as it arrives. So this process holds the
    table once plus one column twice, where gathering whole partitions held the table twice
    (the parts, then their concatenation) and a third copy while it was put in order.
    """
    lengths = client.gather([client.submit(len, part, pure=False) for part in table.parts])
    parts = [part for part, n in zip(table.parts, lengths) if n]
    if not parts:
        return TrainingTable(pd.DataFrame(), table.features, table.data_end, dict(table.stats))
    names = client.submit(_columns_of, parts[0], pure=False).result()
    shapes = client.gather([client.submit(_columns_of, part, pure=False) for part in parts[1:]])
    if any(other != names for other in shapes):
        # not expected (every partition is built by the same code); concatenate as pandas would
        frames = client.gather(parts)
        frame = pd.concat(frames, ignore_index=True)
        del frames
        order = _order(frame[[c.OCCURRED_AT, c.ACTIVITY_ID]])
        frame = frame.take(order).reset_index(drop=True)
        return TrainingTable(frame, table.features, table.data_end, dict(table.stats))
    keys = pd.concat(client.gather([client.submit(_keys_of, part, pure=False) for part in parts]), ignore_index=True)
    order = _order(keys)
    del keys
    columns: dict[str, pd.Series] = {}
    for name in names:
        columns[name] = _gathered_column(client, parts, name, order)
    frame = pd.DataFrame(columns, copy=False)
    del columns
    return TrainingTable(frame, table.features, table.data_end, dict(table.stats))


@dataclass
class ClusterRows:
    """A few columns of a distributed table here, in the local engine's row order; the rest
    stays on the workers, which encode the rows asked for (:meth:`encode_rows`).

    What ``models.ranking`` needs of its own table: it chooses its rows from the label, the
    leak flag and the time, and encodes only those. Gathering the whole table to encode it
    here held the table and its matrix at once (18.1 GB on the client at 10M activities).

    Attributes:
        frame: the columns asked for, rows as :func:`gather_table` orders them.
        features, data_end, stats: as in ``features.build.TrainingTable``.
    """

    frame: pd.DataFrame
    features: list[s.Feature]
    data_end: pd.Timestamp
    stats: dict[str, int]
    client: Any
    parts: list[Any]  # the non-empty partitions' futures, in partition order
    offsets: np.ndarray  # where each part starts in the parts' concatenation (and its length at the end)
    order: np.ndarray  # row i of ``frame`` is row ``order[i]`` of the parts' concatenation

    def encode_rows(self, spec: Any, rows: np.ndarray) -> np.ndarray:
        """``spec.encode(frame, rows=rows)`` of the whole table, encoded on the workers.

        Each partition encodes its own rows among ``rows`` (encoding is row by row, so the
        values are the same as encoding the whole table here); the blocks come back one at a
        time, as they finish, into one matrix.
        """
        from distributed import as_completed

        rows = np.asarray(rows, dtype=np.int64)
        where = self.order[rows]
        part_of = np.searchsorted(self.offsets, where, side="right") - 1
        matrix = np.empty((len(rows), len(spec)), dtype=np.float64)
        spec_f = self.client.scatter(spec, broadcast=True, hash=False)
        slots: dict[Any, np.ndarray] = {}
        for p, part in enumerate(self.parts):
            sel = np.flatnonzero(part_of == p)
            if len(sel):
                local = where[sel] - self.offsets[p]
                slots[self.client.submit(_encode_rows_of, part, spec_f, local, pure=False)] = sel
        for fut in as_completed(list(slots)):
            matrix[slots.pop(fut)] = fut.result()
            del fut
        return matrix


def _encode_rows_of(frame: pd.DataFrame, spec: Any, rows: np.ndarray) -> np.ndarray:
    return spec.encode(frame, rows=rows)


def gather_rows(client: Any, table: DistributedTable, columns: list[str]) -> ClusterRows | TrainingTable:
    """``columns`` of the table here, in :func:`gather_table`'s order, the rest left on the workers.

    Falls back to :func:`gather_table` (the whole table here) when the partitions' columns
    differ, which the partitions, built by the same code, are not expected to do.
    """
    lengths = client.gather([client.submit(len, part, pure=False) for part in table.parts])
    parts = [part for part, n in zip(table.parts, lengths) if n]
    if not parts:
        return gather_table(client, table)
    names = client.gather([client.submit(_columns_of, part, pure=False) for part in parts])
    if any(other != names[0] for other in names[1:]):
        return gather_table(client, table)
    missing = [name for name in columns if name not in names[0]]
    if missing:
        raise KeyError(f"the distributed table lacks column(s) {', '.join(missing)}")
    keys = pd.concat(client.gather([client.submit(_keys_of, part, pure=False) for part in parts]), ignore_index=True)
    order = _order(keys)
    del keys
    frame = pd.DataFrame({name: _gathered_column(client, parts, name, order) for name in columns}, copy=False)
    offsets = np.concatenate([[0], np.cumsum([n for n in lengths if n])]).astype(np.int64)
    return ClusterRows(frame, table.features, table.data_end, dict(table.stats), client, parts, offsets, order)


def _gathered_column(client: Any, parts: list[Any], name: str, order: np.ndarray) -> pd.Series:
    """One column from every partition, in ``order``."""
    pieces = client.gather([client.submit(_column_of, part, name, pure=False) for part in parts])
    whole = pd.concat(pieces, ignore_index=True)
    del pieces
    return whole.take(order).reset_index(drop=True)


def _order(keys: pd.DataFrame) -> np.ndarray:
    """Row positions that put ``keys`` (partition order) into ``occurred_at, activity_id`` order, stably."""
    return keys.sort_values([c.OCCURRED_AT, c.ACTIVITY_ID], kind="stable").index.to_numpy()


def write_distributed_table(client: Any, table: DistributedTable, out: Path) -> None:
    """Write the table to ``out`` (.parquet or .csv) one partition at a time (bounded memory here).

    Rows come in partition order; within a partition, by ``occurred_at`` then ``activity_id``.
    """
    from engine.output import write_frames

    write_frames((fut.result() for fut in table.parts), out, {"date_format": "%Y-%m-%dT%H:%M:%S.%fZ"})
