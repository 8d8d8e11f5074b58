"""Worlds: named simulator settings that differ in mechanism, read from YAML world files.

A world file overrides fields of :class:`~simulator.params.BehaviourParams` (what reps do and
how advances get recorded) and :class:`~simulator.truth.TruthParams` (what an activity is
worth)::

    name: slow_records
    description: advances recorded up to two weeks after the activity that caused them
    behaviour:
      advance_delay_pmf: [0.0, 0.05, 0.1, ...]     # days 0 (same evening), 1, 2, ...
      quality_intensity: 0.9
    truth:
      outcome_quality: 0.6
      outcome_type_stage:                           # merged over the default table
        demo: [0.5, 1.8, 1.6, 0.6, 0.2]

Named worlds ship as package data in ``simulator/worlds/*.yaml`` (:func:`world_names`);
``activity-scorer simulate --world NAME|PATH`` and :func:`load_world` read them. An unknown
key or a bad value is a :class:`WorldError` naming the file and the key. The world's
parameters are saved in ``ground_truth.json`` (``world``, ``behaviour_params``,
``truth_params``), so :class:`simulator.ground_truth.GroundTruth` scores any candidate in
any state of that world.

:func:`tiny_world` is a small world whose effects are known in closed form
(:func:`tiny_effect_table`), for exact-ranking tests.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from simulator import truth as tr
from simulator.params import BehaviourParams, OracleSettings, SimulationConfig
from simulator.truth import TruthParams

logger = logging.getLogger(__name__)

WORLDS_PACKAGE = "simulator.worlds_data"
DEFAULT_WORLD = "default"
MAX_DELAY_DAYS = 30  # longest cause-to-record delay a world may set
TOP_KEYS = ("name", "description", "behaviour", "truth")
# Set by the run, not the world: the history's length and the warm-up before it.
RUN_FIELDS = ("days", "warmup_days")
# Variable-length behaviour tables (the others keep the default's shape).
FREE_LENGTH = {"advance_delay_probs", "advance_delay_pmf", "manual_type_quality"}
PROBABILITY_TABLES = {"advance_delay_probs", "advance_delay_pmf", "manual_type_mix", "automated_type_mix"}
HOUR_PAIRS = {"update_window_hours", "same_day_window_hours", "working_hours"}
# Truth tables keyed by name, and the names they accept.
TRUTH_TABLE_NAMES = {
    "outcome_type_stage": tr.TYPES,
    "outcome_seniority_stage": tr.SENIORITIES,
    "outcome_department_stage": tr.DEPARTMENTS,
    "output_type": tr.TYPES,
    "output_seniority": tr.SENIORITIES,
    "negative_type": tr.TYPES,
    "negative_seniority": tr.SENIORITIES,
}


class WorldError(ValueError):
    """A world file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class World:
    """A named world: the behaviour and truth parameters a simulation runs with.

    Attributes:
        name: the world's name (``default``, ``unseen``, ...).
        description: what mechanism the world exercises, in one or two sentences.
        behaviour: reps' behaviour and how advances get recorded.
        truth: the truth function's coefficients.
        source: the file it came from (``builtin:NAME`` for a shipped world).
    """

    name: str
    description: str
    behaviour: BehaviourParams
    truth: TruthParams
    source: str

    def config(self, n_activities: int, seed: int = 0, start: str = "2025-01-01", days: int = 365,
               ) -> SimulationConfig:
        """The simulation config of this world for one run."""
        return SimulationConfig(n_activities=n_activities, seed=seed, start=start,
                                behaviour=replace(self.behaviour, days=days))

    def to_dict(self) -> dict[str, Any]:
        """What ``ground_truth.json`` stores under ``world`` (the parameters are stored beside it)."""
        return {"name": self.name, "description": self.description, "source": self.source}


def world_names() -> list[str]:
    """Names of the worlds shipped with the package, sorted (``default`` first)."""
    names = sorted(p.name[: -len(".yaml")] for p in resources.files(WORLDS_PACKAGE).iterdir()
                   if p.name.endswith(".yaml"))
    return sorted(names, key=lambda n: (n != DEFAULT_WORLD, n))


def load_world(name_or_path: str | Path) -> World:
    """A shipped world by name, or a world file by path.

    Raises:
        WorldError: no such world or file, unreadable YAML, an unknown key or a bad value.
    """
    text_name = str(name_or_path)
    if text_name in world_names():
        res = resources.files(WORLDS_PACKAGE) / f"{text_name}.yaml"
        return parse_world(res.read_text(encoding="utf-8"), f"builtin:{text_name}", default_name=text_name)
    path = Path(name_or_path)
    if path.suffix.lower() not in (".yaml", ".yml") and not path.exists():
        raise WorldError(f"no world named {text_name!r}: the shipped worlds are {', '.join(world_names())}, "
                         "or give the path of a world file (.yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise WorldError(f"{path}: cannot read the world file ({err.strerror or err})") from err
    return parse_world(text, str(path), default_name=path.stem)


def parse_world(text: str, source: str, default_name: str = "world") -> World:
    """A world from the text of a world file; ``source`` names it in errors.

    Raises:
        WorldError: unreadable YAML, an unknown key or a bad value.
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise WorldError(f"{source}: not valid YAML ({str(err).splitlines()[0]})") from err
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise WorldError(f"{source}: a world file is a mapping with keys {', '.join(TOP_KEYS)}")
    for key in doc:
        if key not in TOP_KEYS:
            raise WorldError(f"{source}: unknown key {key!r} (a world file has {', '.join(TOP_KEYS)})")
    name = doc.get("name", default_name)
    description = doc.get("description", "")
    if not isinstance(name, str) or not name:
        raise WorldError(f"{source}: 'name' must be a non-empty text")
    if not isinstance(description, str):
        raise WorldError(f"{source}: 'description' must be a text")
    behaviour = _behaviour(_section(doc, "behaviour", source), source)
    truth = _truth(_section(doc, "truth", source), source)
    return World(name=name, description=" ".join(description.split()), behaviour=behaviour, truth=truth,
                 source=source)


def _section(doc: dict, key: str, source: str) -> dict:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise WorldError(f"{source}: {key!r} must be a mapping of parameter names to values")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WorldError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _numbers(value: Any, where: str, length: int | None) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise WorldError(f"{where}: expected a list of numbers, got {value!r}")
    if length is not None and len(value) != length:
        raise WorldError(f"{where}: expected {length} numbers, got {len(value)}")
    return tuple(_number(v, f"{where}[{i}]") for i, v in enumerate(value))


def _probabilities(values: tuple[float, ...], where: str) -> None:
    if not values or min(values) < 0 or sum(values) <= 0:
        raise WorldError(f"{where}: expected non-negative weights with a positive sum, got {list(values)}")


def _behaviour(values: dict, source: str) -> BehaviourParams:
    default = BehaviourParams()
    known = {f.name: f for f in fields(BehaviourParams)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{source}: behaviour.{key}"
        if key in RUN_FIELDS:
            raise WorldError(f"{where}: set by the run, not the world (use --days)")
        if key not in known:
            raise WorldError(f"{where}: unknown behaviour parameter (see simulator/params.py BehaviourParams)")
        base = getattr(default, key)
        if key == "manual_type_quality":
            out[key] = _per_type(value, where)
        elif isinstance(base, tuple) and base and isinstance(base[0], tuple):
            if not isinstance(value, list) or len(value) != len(base):
                raise WorldError(f"{where}: expected {len(base)} rows of {len(base[0])} numbers")
            out[key] = tuple(_numbers(row, f"{where}[{i}]", len(base[0])) for i, row in enumerate(value))
        elif isinstance(base, tuple):
            out[key] = _numbers(value, where, None if key in FREE_LENGTH else len(base))
        elif isinstance(base, int) and not isinstance(base, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise WorldError(f"{where}: expected a whole number, got {value!r}")
            out[key] = value
        else:
            out[key] = _number(value, where)
        if key in PROBABILITY_TABLES:
            rows = out[key] if out[key] and isinstance(out[key][0], tuple) else (out[key],)
            for i, row in enumerate(rows):
                _probabilities(row, where if len(rows) == 1 else f"{where}[{i}]")
        if key in HOUR_PAIRS:
            lo, hi = out[key]
            if not 0 <= lo < hi <= 24:
                raise WorldError(f"{where}: expected [from, to] hours with 0 <= from < to <= 24, got {list(out[key])}")
    if "advance_delay_pmf" in out and "advance_delay_probs" in out:
        raise WorldError(f"{source}: behaviour sets both advance_delay_pmf and advance_delay_probs; "
                         "give one (advance_delay_pmf counts from day 0, the same evening)")
    beh = replace(default, **out)
    pmf = beh.delay_pmf()
    if len(pmf) > MAX_DELAY_DAYS + 1:
        raise WorldError(f"{source}: behaviour.advance_delay_pmf: at most {MAX_DELAY_DAYS + 1} days (0..{MAX_DELAY_DAYS})")
    if pmf[0] > 0 and beh.same_day_window_hours[0] < beh.working_hours[1]:
        raise WorldError(f"{source}: behaviour.same_day_window_hours must start after working_hours end "
                         f"({beh.working_hours[1]}): a same-day advance is recorded after the day's activities")
    return beh


def _per_type(value: Any, where: str) -> tuple[float, ...]:
    if isinstance(value, dict):
        for k in value:
            if k not in tr.TYPES:
                raise WorldError(f"{where}: unknown activity type {k!r} (one of {', '.join(tr.TYPES)})")
        return tuple(_number(value.get(t, 0.0), f"{where}.{t}") for t in tr.TYPES)
    return _numbers(value, where, len(tr.TYPES))


def _truth(values: dict, source: str) -> TruthParams:
    default = TruthParams()
    known = {f.name for f in fields(TruthParams)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{source}: truth.{key}"
        if key not in known:
            raise WorldError(f"{where}: unknown truth parameter (see simulator/truth.py TruthParams)")
        base = getattr(default, key)
        if key in TRUTH_TABLE_NAMES:
            if not isinstance(value, dict):
                raise WorldError(f"{where}: expected a mapping of names to values")
            table = dict(base)
            for name, v in value.items():
                if name not in TRUTH_TABLE_NAMES[key]:
                    raise WorldError(f"{where}.{name}: unknown name (one of {', '.join(TRUTH_TABLE_NAMES[key])})")
                if isinstance(base[name], tuple):
                    table[name] = _numbers(v, f"{where}.{name}", len(base[name]))
                elif v is None and np.isneginf(base[name]):
                    table[name] = base[name]
                else:
                    table[name] = _number(v, f"{where}.{name}")
            out[key] = table
        elif isinstance(base, tuple):
            out[key] = _numbers(value, where, len(base))
        else:
            out[key] = _number(value, where)
    return replace(default, **out)


# --- a tiny world whose effects are known in closed form -----------------------------------------

TINY_TYPE_STAGE = {  # log-odds per open stage 1..5; the best type changes with the stage
    "call": (1.5, 0.5, 0.0, 0.0, 0.0),
    "email": (0.8, 0.8, 0.2, 0.0, 0.0),
    "meeting": (0.5, 1.8, 1.0, 0.5, 0.3),
    "demo": (0.0, 1.0, 2.0, 0.5, 0.0),
    "inmail": (0.3, 0.0, -0.5, -0.5, -0.5),
    "social": (-0.5, -0.5, -0.5, -0.5, -0.5),
    "proposal": (-1.0, -0.5, 0.5, 2.0, 1.0),
    "workshop": (0.0, 0.5, 1.0, 1.0, 2.0),
    "none": (-1.5, -1.5, -1.5, -1.5, -1.5),
}


def tiny_world(automated: float = -1.0) -> World:
    """A world whose outcome truth depends only on the stage, the type and the automated flag.

    No fatigue, no latent-quality effect on the outcome and no confounding of attention by
    quality, no rep-skill, seniority, department, personalization, timing or response-history
    terms; advances recorded 0-2 days later. The true probability of a candidate in any state
    is therefore ``sigmoid(intercept + stage[s] + type_stage[type][s] + automated * is_automated)``
    and its true effect that minus the same for ``none`` (:func:`tiny_effect_table`).
    Simulate it with :func:`simulate_world` (about 30k activities take a few seconds).

    Args:
        automated: log-odds of an automated touch against the same touch by hand.
    """
    zero5 = (0.0,) * tr.N_OPEN_STAGES
    truth = replace(
        TruthParams(),
        outcome_intercept=-3.5,
        outcome_stage=(0.0, 0.3, 0.5, 0.7, 0.9),
        outcome_type_stage=dict(TINY_TYPE_STAGE),
        outcome_seniority_stage={s: zero5 for s in tr.SENIORITIES},
        outcome_department_stage={d: zero5 for d in tr.DEPARTMENTS},
        outcome_personalization=0.0, outcome_automated=automated, outcome_per_touch_7d=0.0,
        outcome_per_output_30d=0.0, outcome_per_negative_30d=0.0, outcome_inbound=0.0,
        outcome_per_day_in_stage=0.0, outcome_rep_skill=0.0, outcome_quality=0.0, outcome_weekend=0.0,
        outcome_off_hours=0.0,
    )
    # Every kind is common in every stage (reps pick types uniformly), so each cell of the
    # closed form has data: a test of the estimator, not of how much data a rare kind needs.
    uniform = tuple((1.0 / len(tr.TYPES),) * len(tr.TYPES) for _ in range(tr.N_OPEN_STAGES))
    automated_mix = tuple(0.4 if t == "email" else 0.3 if t in ("inmail", "social") else 0.0 for t in tr.TYPES)
    behaviour = replace(BehaviourParams(), quality_intensity=0.0, advance_delay_pmf=(0.3, 0.4, 0.3),
                        manual_type_mix=uniform, automated_type_mix=automated_mix)
    return World(name="tiny", description="effects known in closed form: stage x type x automated only",
                 behaviour=behaviour, truth=truth, source="simulator.worlds.tiny_world")


def tiny_effect_table(world: World | None = None) -> pd.DataFrame:
    """True outcome probability and effect (against ``none``) per stage, type and automated flag.

    Valid for :func:`tiny_world` (whose truth reads nothing else); one row per
    (``stage_order`` 1..5, ``type``, ``is_automated``), with ``p_outcome``, ``effect`` and
    ``rank`` (1 = the largest effect of the stage; ``none`` has effect 0).
    """
    p = (world or tiny_world()).truth
    tb = p.tables()
    rows = []
    for s in range(1, tr.N_OPEN_STAGES + 1):
        base = p.outcome_intercept + tb.stage[s - 1]
        wait = 1 / (1 + math.exp(-(base + tb.type_stage[tr.NONE_CODE, s - 1])))
        for t in tr.TYPES:
            for auto in ((False,) if t == "none" else (False, True)):
                z = base + tb.type_stage[tr.TYPE_CODE[t], s - 1] + p.outcome_automated * auto
                prob = 1 / (1 + math.exp(-z))
                rows.append({"stage_order": s, "type": t, "is_automated": auto, "p_outcome": prob,
                             "effect": prob - wait})
    table = pd.DataFrame(rows)
    table["rank"] = table.groupby("stage_order")["effect"].rank(ascending=False, method="first").astype(int)
    return table


def simulate_world(world: World, n_activities: int, seed: int = 0, oracle: OracleSettings | None = None,
                   start: str = "2025-01-01", days: int = 365):
    """Simulate ``world``; returns a :class:`simulator.generate.Simulation` whose meta names the world."""
    from simulator.generate import simulate

    sim = simulate(world.config(n_activities, seed, start, days), truth=world.truth, oracle=oracle)
    sim.meta["world"] = world.to_dict()
    return sim
