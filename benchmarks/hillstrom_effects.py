"""Real randomized data: the effect model on Hillstrom's e-mail experiment (issue 17).

Kevin Hillstrom's MineThatData e-mail challenge (``../shared/data/hillstrom/hillstrom.csv``,
64,000 customers randomly assigned to a men's e-mail, a women's e-mail or no e-mail; see
``../shared/data/README.md``) is the one place where the effect of an activity, and so the
value of a next-best-activity policy, can be measured without bias. This script:

1. imports the file with ``import-flat``'s library (``importers.flat.read_flat`` +
   ``convert_flat`` under :data:`MAPPING`, written and read back with ``load_dataset``): each
   customer is a contact with its own deal; the e-mail is an ``email`` activity whose custom
   field ``email`` says which arm (``mens``/``womens``); "No E-Mail" is a ``none`` activity
   (no ``email`` field); ``visit`` is the outcome (``visited``, a second after the activity:
   :data:`VISIT_OFFSET_S`);
   ``conversion`` and ``spend`` happen after the visit and are not imported. The file has
   neither a time nor a customer key, which ``import-flat`` cannot derive: three columns are
   added in memory before the conversion (``customer`` = ``customer-<data row>``, ``sent_at``
   = one instant for every row, :data:`SENT_AT`, and ``email``); the file is not copied.
2. splits the customers at random in two halves (``--seed``): the effect model
   (``training.effects.fit_effect_model`` with the default training config's ``effects``
   section: the product's EM and boosters, what ``train`` puts in a bundle) learns on one half;
3. on the other half builds, for every customer, the candidate rows /rank would compare (the
   same customer with a men's e-mail, with a women's e-mail, and ``none``) through the
   product's feature code (``features.build.build_training_frame`` on the held-out
   customers with their activity replaced: the ``_compute`` that ``build_serving_frame``
   shares) and calls ``EffectModel.predict(candidates, none)``; for ``--check-rank`` of them it
   also asks ``serving.scorer.Scorer.rank`` (the ``/rank`` code, in-process) and compares;
4. reports, on the held-out half, the inverse-propensity value (propensity = the arm's
   empirical share in the held-out half) of the policy "send the arm with the larger
   positive effect, else none" against always-mens, always-womens, never and random
   (uniform over the three arms), with 90% bootstrap intervals (``--bootstrap`` resamples of
   the held-out customers) and paired differences; the normalized Qini per arm (each arm
   against ``none``; scikit-uplift's ``qini_auc_score`` definition, the usual one, which the
   data README's reference figure is assumed to use); and the arm-level truth (difference of visit rates) against the mean
   predicted effect per arm;
5. reports the same for a plain reference fitted on the same half in the same run: a
   LightGBM S-learner and T-learner on the customer columns.

It writes ``--out`` (``row``: 1-based data row of the file, ``arm``, ``effect``, then
``effect_low``, ``effect_high``, ``overlap``) for every held-out customer and both arms, and
``--json`` with every figure. It exits 1 only on errors (a missing or malformed file, a fit
that fails), never because the data shows no reliable gain.

    .venv/bin/python benchmarks/hillstrom_effects.py --out hillstrom_effects.csv [--seed 0]
        [--bootstrap 200] [--rows N] [--json FILE] [--data FILE] [--check-rank 200]
        [--customer-fields contact|account] [--visit-offset 1] [--effect-setting KEY=VALUE]

Figures and what they mean: docs/effects.md, "Real randomized data: Hillstrom".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from features import contract as c  # noqa: E402
from features.build import ServingContext  # noqa: E402

logger = logging.getLogger("hillstrom_effects")

SHARED = Path(os.environ.get("ACTIVITY_SCORER_SHARED") or ROOT / ".." / "shared")  # beside the repository
HILLSTROM_FILE = (SHARED / "data" / "hillstrom" / "hillstrom.csv").resolve()
ARMS = ("mens", "womens")
NONE = "none"
SEGMENTS = {"Mens E-Mail": "mens", "Womens E-Mail": "womens", "No E-Mail": NONE}
SENT_AT = "2008-03-03T09:00:00Z"  # invented: the file has no date; every e-mail went out at once
UNTIL = pd.Timestamp("2008-04-03T09:00:00Z")  # past the effect model's 28-day lag window: every label complete
CUSTOMER_COLUMNS = ("recency", "history_segment", "history", "mens", "womens", "zip_code", "newbie", "channel")
DERIVED = ("customer", "sent_at", "email")  # added in memory: the file has no key, no time, no arm column
MAPPING: dict[str, Any] = {
    "description": "Hillstrom e-mail experiment: one customer = one contact and deal; the e-mail (or none) its "
                   "one activity; visit the outcome",
    "delimiter": ",",
    "outcome_column": "visit",
    "positive": ["1"],
    "negative": ["0"],
    "outcome_name": "visited",
    "time_column": "sent_at",
    "type_column": "segment",
    "type_values": {"Mens E-Mail": "email", "Womens E-Mail": "email", "No E-Mail": "none"},
    "contact_column": "customer",
    "contact_fields": list(CUSTOMER_COLUMNS),
    "drop": ["conversion", "spend"],  # after the visit: outcomes, not facts known when the e-mail is sent
    "outcome_offset_seconds": 1,  # see VISIT_OFFSET_S
}
# The visit is recorded one second after the e-mail (import-flat's default). The file does not say when
# within two weeks a customer visited; the effect is about whether, within the horizon.
VISIT_OFFSET_S = 1
EMAIL_FIELD = "email"  # the activity's custom field that names the arm
LEVEL = 0.90
REFERENCE_PARAMS = {"objective": "binary", "learning_rate": 0.03, "num_leaves": 15, "min_data_in_leaf": 200,
                    "feature_fraction": 0.9, "lambda_l2": 1.0, "num_threads": 1, "seed": 7, "deterministic": True,
                    "force_row_wise": True, "verbose": -1}
REFERENCE_ROUNDS = 200


class HillstromError(Exception):
    """A problem with the input or a fit; the message names the file, row or step."""


# -- import -----------------------------------------------------------------------------------------


def mapping_for(customer_fields: str, visit_offset: float) -> dict[str, Any]:
    """:data:`MAPPING`, the customer columns on the ``contact`` (default) or on the ``account``."""
    m = {**MAPPING, "outcome_offset_seconds": visit_offset}
    if customer_fields == "account":
        for key in ("contact_column", "contact_fields"):
            m.pop(key)
        m |= {"account_column": "customer", "account_fields": list(CUSTOMER_COLUMNS)}
    elif customer_fields != "contact":
        raise HillstromError(f"--customer-fields {customer_fields!r}: expected 'contact' or 'account'")
    return m


def import_hillstrom(source: Path, out: Path, visit_offset: float = VISIT_OFFSET_S,
                     customer_fields: str = "contact") -> tuple[Any, Any, pd.DataFrame]:
    """The file as a dataset, through ``import-flat``'s reader and converter.

    Args:
        source: the Hillstrom CSV.
        out: an empty directory for the dataset.
        visit_offset: seconds from the e-mail to the recorded visit (the outcome row).
        customer_fields: ``contact`` (the customer columns describe the contact: candidate features the
            effect may vary with) or ``account`` (context features: the effect's logit is the same for
            every customer, its size varies only with the baseline).

    Returns:
        The loaded ``features.dataset.Dataset``, the import report, and the file's customer
        columns plus ``arm`` and ``visit`` (one row per data row, in file order).

    Raises:
        HillstromError: the file is missing or does not fit the mapping (file, row and column named).
    """
    from features.dataset import DatasetError, load_dataset, write_dataset
    from importers.flat import FlatImportError, convert_flat, mapping_from_dict, read_flat

    if not source.is_file():
        raise HillstromError(f"{source}: no such file (Hillstrom's e-mail data, see ../shared/data/README.md; "
                             f"set ACTIVITY_SCORER_SHARED or --data)")
    try:
        flat = read_flat(source, delimiter=MAPPING["delimiter"])
        clash = [d for d in DERIVED if d in flat.header]
        if clash:
            raise HillstromError(f"{source}: the file already has a column {clash[0]!r}; expected Hillstrom's columns")
        if "segment" not in flat.header:
            raise HillstromError(f"{source}: no column 'segment' (the arm); the header has: {', '.join(flat.header)}")
        seg = flat.data["segment"]
        bad = ~seg.isin(list(SEGMENTS)).to_numpy(bool, na_value=False)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise HillstromError(f"{source}: data row {i + 1} (line {int(flat.lines[i])}), column 'segment': "
                                 f"{seg.iloc[i]!r} is not one of {', '.join(map(repr, SEGMENTS))}")
        n = len(flat.data)
        data = flat.data.assign(
            customer=pd.array([f"customer-{i + 1}" for i in range(n)], dtype="string"),
            sent_at=pd.array([SENT_AT] * n, dtype="string"),
            email=seg.map({k: v for k, v in SEGMENTS.items() if v != NONE}).astype("string"),
        )
        flat.data = data
        flat.header = [*flat.header, *DERIVED]
        conversion = convert_flat(flat, mapping_from_dict(mapping_for(customer_fields, visit_offset),
                                                          "hillstrom mapping"))
    except FlatImportError as err:
        raise HillstromError(str(err)) from None
    write_dataset(conversion.tables, out, meta=conversion.meta)
    try:
        dataset = load_dataset(out)
    except DatasetError as err:
        raise HillstromError(f"the imported dataset in {out} breaks the contract: {err}") from None
    customers = data[list(CUSTOMER_COLUMNS)].copy()
    customers["arm"] = seg.map(SEGMENTS).astype("string")
    customers["visit"] = pd.to_numeric(data["visit"], errors="coerce").to_numpy(dtype=np.float64)
    return dataset, conversion.report, customers


def subset(dataset, rows: np.ndarray):  # noqa: ANN001, ANN201
    """The dataset restricted to the customers at 0-based data rows ``rows`` (their deals, contacts, accounts)."""
    from features.dataset import Dataset

    acts = dataset[c.ACTIVITIES]
    mine = acts[c.ACTIVITY_ID].isin(pd.Index([f"row-{r + 1}" for r in rows])).to_numpy(bool)
    keys = {col: pd.Index(acts.loc[mine, col].dropna()) for col in (c.DEAL_ID, c.CONTACT_ID, c.ACCOUNT_ID)
            if col in acts.columns}
    by_table = {c.CONTACTS: c.CONTACT_ID, c.ACCOUNTS: c.ACCOUNT_ID}
    tables = {}
    for name, frame in dataset.tables.items():
        col = c.DEAL_ID if c.DEAL_ID in frame.columns else by_table.get(name)
        if col is None or col not in keys:
            tables[name] = frame
            continue
        tables[name] = frame[frame[col].isin(keys[col]).to_numpy(bool, na_value=False)].reset_index(drop=True)
    return Dataset(tables, dataset.custom_fields, dataset.execution_time_fields, dataset.source)


# -- the product's effects ----------------------------------------------------------------------------


@dataclass
class ProductFit:
    """The fitted effect model with its feature spec, and what fitting it took."""

    model: Any
    spec: Any
    seconds: float


def effect_settings(pairs: list[str] | None):  # noqa: ANN201
    """The training config's ``effects`` section (what ``train`` fits with), ``KEY=VALUE`` overrides on top.

    The overrides are for diagnostics; the documented figures use none.
    """
    from dataclasses import fields, replace

    from models.effects import EffectSettings
    from training.config import load_config

    settings = load_config().effects
    known = {f.name: f.type for f in fields(EffectSettings)}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise HillstromError(f"--effect-setting {pair!r}: expected KEY=VALUE with KEY one of {', '.join(known)}")
        current = getattr(settings, key)
        try:
            typed = type(current)(value) if not isinstance(current, bool) else value.lower() in ("1", "true", "yes")
        except ValueError:
            raise HillstromError(f"--effect-setting {pair!r}: {value!r} is not a {type(current).__name__}") from None
        try:
            settings = replace(settings, **{key: typed})
        except ValueError as err:  # EffectSettings checks its own values
            raise HillstromError(f"--effect-setting {pair!r}: {err}") from None
    return settings


def fit_product(train_ds, settings=None) -> ProductFit:  # noqa: ANN001
    """The effect model on the training half, as ``train`` fits it (default settings, the spec's features)."""
    from features.build import build_training_frame
    from models.bundle import FeatureSpec
    from training.config import load_config
    from training.effects import fit_effect_model
    from training.train import model_features

    t0 = time.perf_counter()
    cfg = load_config()
    table = build_training_frame(train_ds, until=UNTIL)
    feats, _ = model_features(list(table.features), cfg, set(train_ds.execution_time_fields), table.frame.columns)
    spec = FeatureSpec.fit(feats, table.frame, cfg.categories.max_levels, cfg.categories.min_count)
    try:
        model = fit_effect_model(train_ds, table.frame, spec, until=UNTIL, horizon_days=cfg.horizons.outcome_days,
                                 settings=settings, threads=cfg.lightgbm.num_threads)
    except ValueError as err:
        raise HillstromError(f"the effect model cannot be fitted on the training half: {err}") from None
    return ProductFit(model, spec, time.perf_counter() - t0)


def candidate_matrix(test_ds, spec, arm: str) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Encoded plan rows of every held-out customer with the activity ``arm`` (``mens``, ``womens``, ``none``).

    Returns:
        The matrix and the 0-based data rows its lines belong to.
    """
    from features.build import build_training_frame
    from features.dataset import Dataset

    acts = test_ds[c.ACTIVITIES]
    n = len(acts)
    acts = acts.assign(**{
        c.TYPE: pd.array([NONE if arm == NONE else "email"] * n, dtype=acts[c.TYPE].dtype),
        EMAIL_FIELD: pd.array([None if arm == NONE else arm] * n, dtype=acts[EMAIL_FIELD].dtype),
    })
    tables = {k: v for k, v in test_ds.tables.items() if k not in (c.OUTCOMES, c.RESPONSES, c.ACTIVITIES)}
    tables[c.ACTIVITIES] = acts  # no outcomes: a candidate is scored before anything happened
    ds = Dataset(tables, test_ds.custom_fields, test_ds.execution_time_fields, test_ds.source)
    frame = build_training_frame(ds, until=UNTIL).frame
    matrix = spec.encode(frame)
    if spec.execution_indices:
        matrix[:, spec.execution_indices] = np.nan  # plan rows, as /rank sends them
    rows = frame[c.ACTIVITY_ID].astype("string").str.removeprefix("row-").astype(int).to_numpy() - 1
    return matrix, rows


def product_effects(fit: ProductFit, test_ds, test_rows: np.ndarray) -> dict[str, dict[str, np.ndarray]]:  # noqa: ANN001
    """Per arm: effect, low, high, overlap for every held-out customer, in the order of ``test_rows``."""
    none_m, none_rows = candidate_matrix(test_ds, fit.spec, NONE)
    pos = pd.Series(np.arange(len(none_rows)), index=none_rows)
    base = none_m[pos.loc[test_rows].to_numpy()]
    out = {}
    for arm in ARMS:
        m, rows = candidate_matrix(test_ds, fit.spec, arm)
        m = m[pd.Series(np.arange(len(rows)), index=rows).loc[test_rows].to_numpy()]
        est = fit.model.predict(m, base)
        out[arm] = {"effect": est.effect, "low": est.low, "high": est.high, "overlap": est.overlap}
    return out


class _PlanStub:
    """Stands in for a bundle's plan models in :func:`rank_check`: p_outcome etc. are not part of the effect.

    ``Scorer.rank`` reads ``spec``, ``manifest`` and ``predict_proba`` of a bundle; the effect,
    its interval and overlap come from the effect model alone, which is the real one.
    """

    def __init__(self, spec) -> None:  # noqa: ANN001
        from models.bundle import Manifest

        self.spec = spec
        self.manifest = Manifest("hillstrom-effects", pd.Timestamp(UNTIL).isoformat(), ("outcome",),
                                 {"plan": "plan"}, {"outcome_days": c.OUTCOME_HORIZON_DAYS}, "UTC")

    def predict_proba(self, matrix: np.ndarray, variant: str) -> dict[str, np.ndarray]:  # noqa: ARG002
        return {"outcome": np.zeros(len(matrix))}


def _with_key_columns(dataset):  # noqa: ANN001, ANN202
    """The dataset with empty ``activities.contact_id`` / ``contacts.account_id`` columns where absent.

    ``serving.batch_rank.RequestBuilder`` groups activities by contact and contacts by account,
    and raises KeyError on a dataset without those optional columns (as import-flat writes
    without a contact or account key).
    """
    from features.dataset import Dataset

    tables = dict(dataset.tables)
    for name, col in ((c.ACTIVITIES, c.CONTACT_ID), (c.CONTACTS, c.ACCOUNT_ID)):
        frame = tables.get(name)
        if frame is not None and col not in frame.columns:
            tables[name] = frame.assign(**{col: pd.array([None] * len(frame), dtype="string")})
    return Dataset(tables, dataset.custom_fields, dataset.execution_time_fields, dataset.source)


def rank_check(fit: ProductFit, train_ds, test_ds, rows: np.ndarray,  # noqa: ANN001
               effects: dict[str, dict[str, np.ndarray]], test_rows: np.ndarray) -> dict[str, Any]:
    """``/rank``'s own answer for some held-out customers against the effects computed here.

    For each customer: the request a CRM would send when the e-mail goes out
    (``serving.batch_rank.RequestBuilder``, the customer as the request's contact) with the two
    e-mails as explicit candidates, answered by ``serving.scorer.Scorer.rank`` in-process with
    the fitted effect model (the plan models are a stub, :class:`_PlanStub`).

    Returns:
        Customers checked and the largest absolute difference of ``effect``, ``effect_low``,
        ``effect_high`` and the number of ``overlap`` disagreements.
    """
    from features.build import custom_fields_of
    from serving.batch_rank import RequestBuilder
    from serving.model_store import LoadedModel
    from serving.schemas import RankRequest
    from serving.scorer import Scorer

    context = ServingContext(custom_fields=custom_fields_of(train_ds))
    scorer = Scorer(LoadedModel(_PlanStub(fit.spec), context, Path("."), "hillstrom", True, None, fit.model))
    builder = RequestBuilder(_with_key_columns(test_ds))
    at = pd.Timestamp(SENT_AT)
    where = pd.Series(np.arange(len(test_rows)), index=test_rows)
    worst = {"effect": 0.0, "effect_low": 0.0, "effect_high": 0.0}
    overlap_diff = 0
    acts = test_ds[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    for r in rows:
        act = acts.loc[f"row-{r + 1}"]
        contact = act.get(c.CONTACT_ID) if c.CONTACT_ID in acts.columns else None
        body = builder.body(act[c.DEAL_ID], at, fallback_contact=contact)
        body["candidates"] = [{"type": "email", EMAIL_FIELD: a} for a in ARMS]
        body["top_k"] = len(ARMS)
        answer = scorer.rank(RankRequest.model_validate(body))
        if answer.ranked_by != "effect":
            raise HillstromError(f"/rank answered ranked_by {answer.ranked_by!r}, not 'effect'")
        i = int(where.loc[r])
        for item in answer.ranked:
            e = effects[item.activity[EMAIL_FIELD]]
            for key, mine in (("effect", e["effect"]), ("effect_low", e["low"]), ("effect_high", e["high"])):
                worst[key] = max(worst[key], abs(float(getattr(item, key)) - float(mine[i])))
            overlap_diff += int(bool(item.overlap) != bool(e["overlap"][i]))
    return {"customers": len(rows), "max_abs_difference": worst, "overlap_disagreements": overlap_diff}


# -- the plain reference ------------------------------------------------------------------------------


def customer_matrix(customers: pd.DataFrame) -> tuple[np.ndarray, list[int]]:
    """The customer columns as numbers (text columns as codes of their sorted values) and the categorical indices."""
    cols, cats = [], []
    for i, name in enumerate(CUSTOMER_COLUMNS):
        v = customers[name]
        num = pd.to_numeric(v, errors="coerce")
        if num.notna().sum() == v.notna().sum():
            cols.append(num.to_numpy(dtype=np.float64, na_value=np.nan))
        else:
            levels = sorted(v.dropna().unique())
            cols.append(v.map({lv: float(k) for k, lv in enumerate(levels)}).to_numpy(dtype=np.float64,
                                                                                      na_value=np.nan))
            cats.append(i)
    return np.column_stack(cols), cats


def _train(x: np.ndarray, y: np.ndarray, cats: list[int]):  # noqa: ANN202
    import lightgbm as lgb

    ds = lgb.Dataset(x, label=y, categorical_feature=cats, params={"verbose": -1})
    return lgb.train(REFERENCE_PARAMS, ds, num_boost_round=REFERENCE_ROUNDS)


def reference_effects(customers: pd.DataFrame, train_rows: np.ndarray, test_rows: np.ndarray
                      ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """S- and T-learner uplifts (P(visit | arm) - P(visit | none)) of the held-out customers, per arm."""
    x, cats = customer_matrix(customers)
    arm = customers["arm"].to_numpy(dtype=object)
    y = customers["visit"].to_numpy(dtype=np.float64)
    codes = {NONE: 0.0, "mens": 1.0, "womens": 2.0}
    xa = np.column_stack([x, np.array([codes[a] for a in arm])])
    s_model = _train(xa[train_rows], y[train_rows], [*cats, x.shape[1]])
    xt = x[test_rows]

    def s_pred(a: str) -> np.ndarray:
        return s_model.predict(np.column_stack([xt, np.full(len(xt), codes[a])]))

    s_none = s_pred(NONE)
    t_models = {a: _train(x[train_rows][arm[train_rows] == a], y[train_rows][arm[train_rows] == a], cats)
                for a in (NONE, *ARMS)}
    t_none = t_models[NONE].predict(xt)
    return {
        "S-learner": {a: {"effect": s_pred(a) - s_none} for a in ARMS},
        "T-learner": {a: {"effect": t_models[a].predict(xt) - t_none} for a in ARMS},
    }


# -- evaluation ---------------------------------------------------------------------------------------


def qini_auc(y: np.ndarray, uplift: np.ndarray, treated: np.ndarray) -> float:
    """Normalized Qini (scikit-uplift's ``qini_auc_score``, ``negative_effect=True``).

    The area between the model's Qini curve and the random line, over the same area of the
    perfect curve (customers ordered by ``y * (2 * treated - 1)``). 0 is random, 1 perfect.
    """
    def curve(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(score, kind="mergesort")[::-1]
        ys, ss, ts = y[order], score[order], treated[order].astype(np.float64)
        idx = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]  # the last row of each tie group
        n_t = np.cumsum(ts)[idx]
        y_t = np.cumsum(ys * ts)[idx]
        y_c = np.cumsum(ys * (1 - ts))[idx]
        n_all = idx + 1.0
        n_c = n_all - n_t
        values = y_t - y_c * np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c != 0)
        return np.r_[0.0, n_all], np.r_[0.0, values]

    x_p, y_p = curve(y * treated - y * (1 - treated))
    x_a, y_a = curve(uplift)
    base = 0.5 * x_p[-1] * y_p[-1]
    perfect = np.trapezoid(y_p, x_p) - base
    actual = np.trapezoid(y_a, x_a) - base
    return float(actual / perfect) if perfect != 0 else float("nan")


def policy_choices(effects: dict[str, dict[str, np.ndarray]], use_low: bool = False) -> np.ndarray:
    """Per customer: the arm with the larger positive effect, else ``none`` (``use_low``: the interval's low end)."""
    key = "low" if use_low else "effect"
    e = np.column_stack([effects[a][key] for a in ARMS])
    best = np.argmax(e, axis=1)
    out = np.array(ARMS, dtype=object)[best]
    out[e.max(axis=1) <= 0] = NONE
    return out


@dataclass
class Evaluation:
    """Figures on the held-out half: point estimates and 90% bootstrap intervals."""

    policies: dict[str, dict[str, float]] = field(default_factory=dict)
    differences: dict[str, dict[str, float]] = field(default_factory=dict)
    qini: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    calibration: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    shares: dict[str, dict[str, float]] = field(default_factory=dict)


def _interval(point: float, draws: np.ndarray) -> dict[str, float]:
    lo, hi = np.nanquantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return {"value": float(point), "low": float(lo), "high": float(hi)}


def evaluate(arm: np.ndarray, y: np.ndarray, methods: dict[str, dict[str, dict[str, np.ndarray]]],
             n_boot: int, seed: int) -> Evaluation:
    """IPS policy values, paired differences, Qini per arm and calibration per arm, with bootstrap intervals.

    Args:
        arm: the arm each held-out customer was randomized to (``mens``, ``womens``, ``none``).
        y: visit (0/1).
        methods: per method, per arm, ``effect`` (and for the product ``low``) per customer.
        n_boot: bootstrap resamples of the held-out customers.
        seed: the resampling seed.
    """
    n = len(y)
    choices: dict[str, Any] = {"never": NONE, "always-mens": "mens", "always-womens": "womens", "random": None}
    for name, eff in methods.items():
        choices[f"{name}: best positive arm"] = policy_choices(eff)
        if "low" in next(iter(eff.values())):
            choices[f"{name}: best arm with low > 0"] = policy_choices(eff, use_low=True)

    def values(idx: np.ndarray) -> dict[str, float]:
        a, yy = arm[idx], y[idx]
        share = {k: float(np.mean(a == k)) for k in (NONE, *ARMS)}
        p = np.array([share[k] for k in a])
        out = {}
        for name, choice in choices.items():
            if choice is None:
                out[name] = float(np.mean(yy / 3.0 / p))
            else:
                ch = choice if isinstance(choice, str) else choice[idx]
                out[name] = float(np.mean(yy * (a == ch) / p))
        return out

    def qinis(idx: np.ndarray) -> dict[str, float]:
        out = {}
        for name, eff in methods.items():
            for t in ARMS:
                keep = (arm[idx] == t) | (arm[idx] == NONE)
                sel = idx[keep]
                out[f"{name}|{t}"] = qini_auc(y[sel], eff[t]["effect"][sel], (arm[sel] == t).astype(np.float64))
        return out

    def calib(idx: np.ndarray) -> dict[str, float]:
        out = {}
        base = y[idx][arm[idx] == NONE].mean()
        for t in ARMS:
            out[f"truth|{t}"] = float(y[idx][arm[idx] == t].mean() - base)
            for name, eff in methods.items():
                out[f"{name}|{t}"] = float(eff[t]["effect"][idx].mean())
        return out

    every = np.arange(n)
    v0, q0, c0 = values(every), qinis(every), calib(every)
    rng = np.random.default_rng(seed)
    vb, qb, cb = [], [], []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        vb.append(values(idx))
        qb.append(qinis(idx))
        cb.append(calib(idx))
    ev = Evaluation()
    for k in v0:
        ev.policies[k] = _interval(v0[k], np.array([b[k] for b in vb]))
    for k in v0:
        for ref in ("never", "always-mens"):
            if k == ref:
                continue
            d = np.array([b[k] - b[ref] for b in vb])
            ev.differences[f"{k} - {ref}"] = _interval(v0[k] - v0[ref], d)
    for k in q0:
        name, t = k.split("|")
        ev.qini.setdefault(name, {})[t] = _interval(q0[k], np.array([b[k] for b in qb]))
    for k in c0:
        name, t = k.split("|")
        ev.calibration.setdefault(name, {})[t] = _interval(c0[k], np.array([b[k] for b in cb]))
    for name, ch in choices.items():
        if isinstance(ch, np.ndarray):
            ev.shares[name] = {k: float(np.mean(ch == k)) for k in (NONE, *ARMS)}
    return ev


def learning_truth(customers: pd.DataFrame, rows: np.ndarray, n_boot: int, seed: int) -> dict[str, dict[str, float]]:
    """Per arm, the difference of visit rates against none on the learning half (what the models saw)."""
    arm = customers["arm"].to_numpy(dtype=object)[rows]
    y = customers["visit"].to_numpy(dtype=np.float64)[rows]

    def diff(idx: np.ndarray) -> dict[str, float]:
        base = y[idx][arm[idx] == NONE].mean()
        return {t: float(y[idx][arm[idx] == t].mean() - base) for t in ARMS}

    rng = np.random.default_rng(seed + 1)
    draws = [diff(rng.integers(0, len(y), len(y))) for _ in range(n_boot)]
    point = diff(np.arange(len(y)))
    return {t: _interval(point[t], np.array([d[t] for d in draws])) for t in ARMS}


# -- report -------------------------------------------------------------------------------------------


def _fmt(d: dict[str, float], digits: int = 4) -> str:
    return f"{d['value']:.{digits}f} [{d['low']:.{digits}f}, {d['high']:.{digits}f}]"


def verdicts(ev: Evaluation, product: str = "product") -> list[str]:
    """Plain sentences: where the data shows a reliable gain and where it does not."""
    out = []
    for ref in ("never", "always-mens"):
        key = f"{product}: best positive arm - {ref}"
        d = ev.differences[key]
        if d["low"] > 0:
            out.append(f"{product}'s policy beats {ref}: +{d['value']:.4f} visits per customer, 90% interval "
                       f"[{d['low']:.4f}, {d['high']:.4f}] above 0.")
        elif d["low"] == d["high"] == 0:
            out.append(f"{product}'s policy makes the same choice as {ref} for every customer (no gain, no loss).")
        elif d["high"] < 0:
            out.append(f"{product}'s policy is worse than {ref}: {d['value']:.4f}, 90% interval "
                       f"[{d['low']:.4f}, {d['high']:.4f}] below 0.")
        else:
            out.append(f"no reliable gain of {product}'s policy over {ref}: {d['value']:+.4f}, 90% interval "
                       f"[{d['low']:.4f}, {d['high']:.4f}] includes 0.")
    for t in ARMS:
        q = ev.qini[product][t]
        word = "above random" if q["low"] > 0 else "not reliably above random (interval includes 0)" \
            if q["high"] > 0 else "at or below random"
        out.append(f"{product}'s Qini for {t} vs none: {_fmt(q)}, {word}.")
    return out


def render(ev: Evaluation, info: dict[str, Any]) -> str:
    """The printed table."""
    lines = [f"Hillstrom, visit: {info['train']} customers to learn, {info['test']} held out (seed {info['seed']}, "
             f"{info['bootstrap']} bootstrap resamples, {LEVEL:.0%} intervals)",
             "", "policy value (IPS, visits per customer)          value  [90% interval]   share none/mens/womens"]
    for name, v in ev.policies.items():
        sh = ev.shares.get(name)
        s = f"  {sh[NONE]:.2f}/{sh['mens']:.2f}/{sh['womens']:.2f}" if sh else ""
        lines.append(f"  {name:<44} {_fmt(v)}{s}")
    lines += ["", "difference (paired bootstrap)"]
    for name, v in ev.differences.items():
        if name.endswith("- never") and not name.startswith(("always", "random")) or name.endswith("always-mens"):
            lines.append(f"  {name:<58} {_fmt(v)}")
    lines += ["", "normalized Qini per arm (vs none)        mens                          womens"]
    for name, q in ev.qini.items():
        lines.append(f"  {name:<38} {_fmt(q['mens'])}   {_fmt(q['womens'])}")
    lines += ["", "mean effect per arm (truth: difference of visit rates)   mens                      womens"]
    for name, q in ev.calibration.items():
        lines.append(f"  {name:<54} {_fmt(q['mens'])}   {_fmt(q['womens'])}")
    lines += [""] + verdicts(ev)
    return "\n".join(lines)


def write_effects(path: Path, test_rows: np.ndarray, effects: dict[str, dict[str, np.ndarray]]) -> int:
    """``row`` (1-based data row), ``arm``, ``effect`` (and its interval, overlap) per held-out customer and arm."""
    parts = []
    for a in ARMS:
        e = effects[a]
        parts.append(pd.DataFrame({"row": test_rows + 1, "arm": a, "effect": e["effect"], "effect_low": e["low"],
                                   "effect_high": e["high"], "overlap": e["overlap"]}))
    out = pd.concat(parts).sort_values(["row", "arm"], kind="stable")
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False, float_format="%.6g")
    return len(out)


def split(n: int, seed: int, rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    """0-based data rows of the learning half and the held-out half (of ``rows`` sampled customers, or all)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    if rows is not None:
        perm = perm[: min(rows, n)]
    half = len(perm) // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Import, fit, predict, evaluate; returns every figure (what ``--json`` writes)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hillstrom-") as tmp:
        dataset, report, customers = import_hillstrom(Path(args.data), Path(tmp) / "dataset", args.visit_offset,
                                                      args.customer_fields)
    t_import = time.perf_counter() - t0
    train_rows, test_rows = split(len(customers), args.seed, args.rows)
    if len(test_rows) < 300:
        raise HillstromError(f"{args.data}: {len(train_rows) + len(test_rows)} customers"
                             f"{' (--rows)' if args.rows else ''} are too few to learn from and evaluate on; "
                             f"need at least 600")
    train_ds, test_ds = subset(dataset, train_rows), subset(dataset, test_rows)
    fit = fit_product(train_ds, effect_settings(args.effect_setting))
    t = time.perf_counter()
    product = product_effects(fit, test_ds, test_rows)
    t_predict = time.perf_counter() - t
    t = time.perf_counter()
    sample = np.sort(np.random.default_rng(args.seed + 2).choice(test_rows, min(args.check_rank, len(test_rows)),
                                                                 replace=False))
    check = rank_check(fit, train_ds, test_ds, sample, product, test_rows) if len(sample) else None
    t_check = time.perf_counter() - t
    t = time.perf_counter()
    methods = {"product": product, **reference_effects(customers, train_rows, test_rows)}
    t_reference = time.perf_counter() - t
    arm = customers["arm"].to_numpy(dtype=object)[test_rows]
    y = customers["visit"].to_numpy(dtype=np.float64)[test_rows]
    t = time.perf_counter()
    ev = evaluate(arm, y, methods, args.bootstrap, args.seed)
    ev.calibration = {"truth (learning half)": learning_truth(customers, train_rows, args.bootstrap, args.seed),
                      **ev.calibration}
    t_eval = time.perf_counter() - t
    n_written = write_effects(Path(args.out), test_rows, product)
    info = {"seed": args.seed, "bootstrap": args.bootstrap, "train": len(train_rows), "test": len(test_rows),
            "rows": args.rows, "visit_offset_s": args.visit_offset, "customer_fields": args.customer_fields}
    text = render(ev, info)
    m = fit.model.metrics
    return {
        "info": info, "text": text, "policies": ev.policies, "differences": ev.differences, "qini": ev.qini,
        "calibration": ev.calibration, "policy_shares": ev.shares, "verdicts": verdicts(ev),
        "effects_csv": {"path": str(args.out), "rows": n_written},
        "rank_check": check,
        "overlap_share": {a: float(np.mean(product[a]["overlap"])) for a in ARMS},
        "effect_model": {k: m.get(k) for k in ("activities", "advances", "em_iterations", "horizon_share",
                                                "advances_attributed_to_activities", "deal_offset_sd",
                                                "rep_offset_sd", "best_iteration", "delay_median_days")},
        "import": {"rows": report.rows_written, "outcome_rate": report.outcome_rate, "sha256": report.sha256},
        "seconds": {"import": round(t_import, 1), "effect_model": round(fit.seconds, 1),
                    "predict": round(t_predict, 1), "rank_check": round(t_check, 1), "reference": round(t_reference, 1),
                    "evaluate": round(t_eval, 1), "total": round(time.perf_counter() - t0, 1)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the per-customer effects CSV (row, arm, effect, ...)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random halves and of the bootstrap")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the held-out half")
    parser.add_argument("--rows", type=int, help="use a random sample of this many customers (quick runs, tests)")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON to this file")
    parser.add_argument("--data", type=Path, default=HILLSTROM_FILE, help="the Hillstrom CSV")
    parser.add_argument("--check-rank", type=int, default=200, metavar="N",
                        help="ask Scorer.rank (the /rank code, in-process) for N held-out customers and compare")
    parser.add_argument("--effect-setting", action="append", metavar="KEY=VALUE",
                        help="override one field of the config's effects section (diagnostics; the documented "
                             "figures use none)")
    parser.add_argument("--customer-fields", choices=("contact", "account"), default="contact",
                        help="import the customer columns as contact (default) or account attributes")
    parser.add_argument("--visit-offset", type=float, default=VISIT_OFFSET_S,
                        help="seconds from the e-mail to the recorded visit (see VISIT_OFFSET_S)")
    parser.add_argument("--verbose", action="store_true", help="log progress, and show the traceback of a bug")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.bootstrap < 1:
        print("--bootstrap must be at least 1", file=sys.stderr)
        return 1
    try:
        result = run(args)
    except HillstromError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug, not the data: one line, the traceback with --verbose
        if args.verbose:
            raise
        print(f"error: unexpected {type(err).__name__}: {err} (run again with --verbose for the traceback)",
              file=sys.stderr)
        return 1
    print(result["text"])
    check = result["rank_check"]
    if check:
        d = check["max_abs_difference"]
        print(f"\n/rank (Scorer.rank in-process) for {check['customers']} held-out customers: largest difference "
              f"from the effects above {max(d.values()):.2g} (effect {d['effect']:.2g}, low {d['effect_low']:.2g}, "
              f"high {d['effect_high']:.2g}); overlap disagreements {check['overlap_disagreements']}")
    print(f"\nwrote {result['effects_csv']['rows']} rows to {args.out}; {result['seconds']['total']:.0f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in result['seconds'].items() if k != 'total')})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({k: v for k, v in result.items() if k != "text"}, indent=2) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
