"""How ``/rank`` turns effect estimates into an order: cost, overlap, the automation guardrail, exploration.

Every decision of the ordering is named here (the scorer only computes numbers):

- **net effect** = effect - cost, with cost = rep minutes of the type x the value of a rep hour
  (in the effect's unit: probability of an advance) + ``p_negative`` x the cost of a negative
  response. The value of a rep hour is 0 by default: trading a rep's hour against a share of an
  advance is a team's decision, so it is a setting (``ACTIVITY_SCORER_RANK_HOUR_VALUE``), not a
  guess; the cost of a negative response (an unsubscribe loses the contact) is 0.05 by default.
- **overlap**: candidates whose kind the history barely saw at this stage are ranked after every
  candidate with overlap: their effect is an extrapolation.
- **guardrail**: an automated touch never ranks above the same touch (type, contact) done by
  hand unless the data shows it does better: its effect interval lies wholly above the hand
  version's (``effect_low`` of the automated > ``effect_high`` of the hand-made). Otherwise it is
  placed right after the hand-made one (its ordering score capped at the hand-made one's).
- **exploration**: with probability ``exploration`` (0 by default) the first entry is drawn at
  random among the candidates with overlap; every entry carries its propensity of being shown
  first, and the prediction log keeps it, so a team can evaluate another ranker off-policy.

Settings come from the environment (``ACTIVITY_SCORER_RANK_*``) or from ``activity-scorer rank``'s options.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

PREFIX = "ACTIVITY_SCORER_RANK_"

# Rep minutes per activity type, done by hand; an automated touch costs AUTOMATED_MINUTES.
DEFAULT_MINUTES: dict[str, float] = {
    "call": 15, "email": 10, "meeting": 45, "demo": 60, "inmail": 10, "social": 5, "proposal": 90,
    "workshop": 120, "none": 0,
}
AUTOMATED_MINUTES = 1.0
UNKNOWN_TYPE_MINUTES = 15.0


class PolicyError(ValueError):
    """A ranking setting that cannot be used (names the variable or option)."""


@dataclass(frozen=True)
class RankPolicy:
    """The ordering's settings (see the module docstring)."""

    hour_value: float = 0.0
    negative_cost: float = 0.05
    exploration: float = 0.0
    minutes: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MINUTES))

    def __post_init__(self) -> None:
        for name, value in (("hour_value", self.hour_value), ("negative_cost", self.negative_cost)):
            if not (np.isfinite(value) and value >= 0):
                raise PolicyError(f"{PREFIX}{name.upper()}={value!r}: must be a number >= 0")
        if not (0 <= self.exploration < 1):
            raise PolicyError(f"{PREFIX}EXPLORATION={self.exploration!r}: must be >= 0 and < 1")
        for t, m in self.minutes.items():
            if not (np.isfinite(m) and m >= 0):
                raise PolicyError(f"{PREFIX}MINUTES: {t}={m!r}: minutes must be a number >= 0")

    def cost(self, types: list[str], automated: list[bool], p_negative: np.ndarray) -> np.ndarray:
        """Cost per candidate in probability units."""
        minutes = np.array([AUTOMATED_MINUTES if a and t != "none" else self.minutes.get(t, UNKNOWN_TYPE_MINUTES)
                            for t, a in zip(types, automated)], dtype=np.float64)
        neg = np.nan_to_num(np.asarray(p_negative, dtype=np.float64), nan=0.0)
        return minutes / 60.0 * self.hour_value + neg * self.negative_cost


def parse_minutes(text: str, where: str) -> dict[str, float]:
    """``"call=15,email=10"`` -> minutes per type (merged over the defaults)."""
    out = dict(DEFAULT_MINUTES)
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise PolicyError(f"{where}: {part!r} is not type=minutes (e.g. call=15,email=10)")
        t, _, m = part.partition("=")
        try:
            out[t.strip()] = float(m)
        except ValueError:
            raise PolicyError(f"{where}: {part!r}: minutes must be a number") from None
    return out


def load_policy(environ: Mapping[str, str] | None = None) -> RankPolicy:
    """The policy from ``ACTIVITY_SCORER_RANK_HOUR_VALUE``, ``_NEGATIVE_COST``, ``_EXPLORATION``, ``_MINUTES``.

    Raises:
        PolicyError: a value that does not parse or is out of range (names the variable).
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name in ("hour_value", "negative_cost", "exploration"):
        raw = (env.get(PREFIX + name.upper()) or "").strip()
        if raw:
            try:
                values[name] = float(raw)
            except ValueError:
                raise PolicyError(f"{PREFIX}{name.upper()}={raw!r}: expected a number") from None
    raw = (env.get(PREFIX + "MINUTES") or "").strip()
    if raw:
        values["minutes"] = parse_minutes(raw, PREFIX + "MINUTES")
    return RankPolicy(**values)  # type: ignore[arg-type]


@dataclass
class Ordering:
    """The order shown and why: indices best first, per-candidate scores and notes."""

    order: list[int]
    net: np.ndarray
    cost: np.ndarray
    guardrail: list[str | None]
    propensity: np.ndarray
    explored: bool


def order_by_effect(policy: RankPolicy, types: list[str], automated: list[bool], contacts: list[str | None],
                    effect: np.ndarray, low: np.ndarray, high: np.ndarray, overlap: np.ndarray,
                    p_negative: np.ndarray, hand: dict[int, tuple[float, float, float]] | None = None,
                    rng: random.Random | None = None) -> Ordering:
    """Order candidates by net effect with overlap first, the guardrail, and optional exploration.

    Args:
        hand: for automated candidates whose hand-made version is not among the candidates, that
            version's (net effect, effect, effect_high), computed by the caller.
    """
    n = len(types)
    cost = policy.cost(types, automated, p_negative)
    net = effect - cost
    key = net.copy()
    notes: list[str | None] = [None] * n
    by_touch = {(types[i], contacts[i]): i for i in range(n) if not automated[i]}
    for i in range(n):
        if not automated[i] or types[i] == "none":
            continue
        j = by_touch.get((types[i], contacts[i]))
        if j is not None:
            h_net, h_high = net[j], high[j]
        elif hand is not None and i in hand:
            h_net, _, h_high = hand[i]
        else:
            continue
        if key[i] > h_net and not low[i] > h_high:
            key[i] = h_net - 1e-12
            notes[i] = ("automated: not shown above the same touch by hand, since its effect interval does not lie "
                        "above the hand-made one's")
    order = sorted(range(n), key=lambda i: (not bool(overlap[i]), -key[i], i))
    propensity = np.zeros(n)
    explored = False
    if order:
        propensity[order[0]] = 1.0
    pool = [i for i in range(n) if overlap[i]]
    if policy.exploration > 0 and len(pool) > 1:
        eps = policy.exploration
        propensity[:] = 0.0
        propensity[pool] = eps / len(pool)
        propensity[order[0]] += 1.0 - eps
        rng = rng or random.Random()
        if rng.random() < eps:
            pick = rng.choice(pool)
            explored = pick != order[0]
            order.remove(pick)
            order.insert(0, pick)
    return Ordering(order, net, cost, notes, propensity, explored)
