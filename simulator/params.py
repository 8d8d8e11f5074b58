"""How reps and buyers behave in the simulation (everything that is not the truth function).

:class:`~simulator.truth.TruthParams` says what an activity is worth; :class:`BehaviourParams`
says what reps actually do: how much, to whom, how tailored, and how deals go cold. Both are
saved in ``ground_truth.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class BehaviourParams:
    """Behaviour of the simulated sales team and its buyers."""

    days: int = 365
    # The sales team was already at work before the history starts: the simulation begins this
    # many days earlier, so that the pipeline the data shows is in a steady state from day one
    # (activities before the start are not written; the deals' stage history is).
    warmup_days: int = 180
    # Size: one rep per this many activities; deals per account 1 or 2.
    activities_per_rep: int = 2500
    second_deal_share: float = 0.3

    # Hand-made activities per open deal per weekday, before the multipliers below.
    manual_rate: float = 0.5
    # Confounding: reps work promising deals harder (log-rate per unit of latent quality).
    quality_intensity: float = 0.45
    stage_intensity: tuple[float, ...] = (0.9, 0.7, 0.6, 0.5, 0.5)
    # Going cold: effort decays with the days since the deal last advanced.
    cold_halflife_days: float = 45.0
    cold_floor: float = 0.2
    weekend_manual: float = 0.08

    # Automated sequences: per open deal per day, mostly early in the funnel, also on weekends.
    automated_rate: float = 0.15
    automated_stage: tuple[float, ...] = (1.0, 0.4, 0.15, 0.05, 0.05)
    weekend_automated: float = 0.5

    # Type mix of hand-made activities per open stage 1..5, in the order of truth.TYPES
    # (call email meeting demo inmail social proposal workshop none).
    manual_type_mix: tuple[tuple[float, ...], ...] = (
        (0.30, 0.33, 0.06, 0.03, 0.10, 0.10, 0.01, 0.02, 0.05),
        (0.25, 0.30, 0.12, 0.10, 0.04, 0.06, 0.03, 0.05, 0.05),
        (0.22, 0.30, 0.14, 0.08, 0.02, 0.04, 0.09, 0.06, 0.05),
        (0.22, 0.32, 0.14, 0.04, 0.01, 0.03, 0.12, 0.03, 0.09),
        (0.25, 0.33, 0.15, 0.02, 0.01, 0.02, 0.08, 0.02, 0.12),
    )
    automated_type_mix: tuple[float, ...] = (0.0, 0.85, 0.0, 0.0, 0.10, 0.05, 0.0, 0.0, 0.0)

    # Whom reps reach per open stage, weights in the order of truth.SENIORITIES
    # (c_level vp director manager individual_contributor unknown); the deal's primary
    # contact gets an extra factor, which is what tires people out.
    contact_preference: tuple[tuple[float, ...], ...] = (
        (0.3, 0.6, 1.0, 1.3, 1.0, 0.5),
        (0.3, 0.7, 1.1, 1.2, 0.8, 0.4),
        (0.5, 0.9, 1.1, 1.0, 0.6, 0.3),
        (0.7, 1.0, 1.0, 0.9, 0.5, 0.3),
        (0.8, 1.0, 1.0, 0.8, 0.4, 0.3),
    )
    primary_contact_weight: float = 4.0

    inbound_share: float = 0.06  # of hand-made calls, emails and meetings; more on good deals
    automated_personalization: tuple[float, float] = (1.0, 14.0)  # Beta(a, b): near zero
    personalization_concentration: float = 6.0

    # An advance triggered by an activity lands the next morning (update window); probabilities of
    # 1, 2, ... days. One day keeps the advances still pending at an activity few and visible.
    advance_delay_probs: tuple[float, ...] = (1.0,)
    update_window_hours: tuple[float, float] = (5.0, 8.0)
    # Worlds (simulator/worlds.py): the delay from the triggering activity to the recorded advance
    # as probabilities of 0, 1, 2, ... days; day 0 lands the same evening (``same_day_window_hours``,
    # after every activity of the day), later days in the morning update window. Empty: the delay
    # is ``advance_delay_probs`` (1, 2, ... days, never the same day).
    advance_delay_pmf: tuple[float, ...] = ()
    same_day_window_hours: tuple[float, float] = (22.25, 23.75)
    # Worlds: automated sequences run more (> 0) or less on promising deals (log-rate per unit of
    # latent quality), and the hand-made type mix tilts with quality: one log-weight per type in
    # the order of truth.TYPES (empty: no tilt). With both, the naive association can point the
    # wrong way (adversarial worlds).
    automated_quality: float = 0.0
    manual_type_quality: tuple[float, ...] = ()
    # Worlds: rep style. Reps' volume habit spreads with this sd (log scale), and their automation
    # habit is multiplied by volume ** elasticity (> 1: busier reps automate a larger share).
    rep_volume_sd: float = 0.25
    automation_volume_elasticity: float = 0.0
    working_hours: tuple[float, float] = (8.0, 22.0)

    # Losing a deal: daily hazard while nothing is pending, rising as the deal goes cold.
    loss_base: float = 0.001
    loss_cold: float = 0.03
    loss_cold_midpoint_days: float = 100.0
    loss_cold_scale_days: float = 15.0
    loss_quality: float = -0.4
    loss_max_age_days: int = 300

    late_log_share: float = 0.03  # logged 1..10 days after the fact
    open_rate: float = 0.45  # opens are nearly meaningless: barely related to anything
    click_rate: float = 0.08

    def delay_pmf(self) -> tuple[float, ...]:
        """Probabilities that an advance lands 0, 1, 2, ... days after the activity that triggered it."""
        if self.advance_delay_pmf:
            return tuple(self.advance_delay_pmf)
        return (0.0, *self.advance_delay_probs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> BehaviourParams:
        def tup(v):
            return tuple(tup(x) for x in v) if isinstance(v, list) else v

        return cls(**{k: tup(v) for k, v in values.items()})


@dataclass(frozen=True)
class OracleSettings:
    """Which activities get the ex-ante label probability, and from how many continuations.

    The continuations draw from their own random stream: the dataset is the same whatever
    these settings are.
    """

    share: float = 0.2
    rollouts: int = 8


# The demo size: 80 reps over a year (one rep per 2,500 activities). At 60k the
# most recent tenth (the test window, ~5,800 rows) is too small to measure calibration to
# 0.02: a perfectly calibrated predictor scores an ECE of 0.010-0.019 there (docs/training.md).
DEFAULT_ACTIVITIES = 200_000


@dataclass(frozen=True)
class SimulationConfig:
    """One simulation run."""

    n_activities: int = DEFAULT_ACTIVITIES
    seed: int = 0
    start: str = "2025-01-01"
    behaviour: BehaviourParams = field(default_factory=BehaviourParams)
