"""How /rank orders by effect (``serving.rank_policy``): net of cost, overlap, the guardrail, exploration."""

from __future__ import annotations

import random

import numpy as np
import pytest

from serving.rank_policy import (
    AUTOMATED_MINUTES,
    DEFAULT_MINUTES,
    PolicyError,
    RankPolicy,
    load_policy,
    order_by_effect,
    parse_minutes,
)


def _order(policy, rows, hand=None, rng=None):  # noqa: ANN001, ANN202
    """rows: (type, automated, contact, effect, low, high, overlap, p_negative)."""
    types, auto, contacts, eff, low, high, ov, neg = (list(x) for x in zip(*rows))
    return order_by_effect(policy, types, auto, contacts, np.array(eff), np.array(low), np.array(high),
                           np.array(ov), np.array(neg), hand, rng)


def test_order_is_by_effect_net_of_cost():
    rows = [("call", False, "c1", 0.020, 0.01, 0.03, True, 0.0),
            ("meeting", False, "c1", 0.030, 0.02, 0.04, True, 0.0),
            ("email", False, "c1", 0.025, 0.02, 0.03, True, 0.0)]
    assert _order(RankPolicy(), rows).order == [1, 2, 0]  # no cost of time by default: by effect
    # a rep hour worth 0.02 of an advance: the 45-minute meeting now costs 0.015, the email 0.0033
    priced = _order(RankPolicy(hour_value=0.02), rows)
    assert priced.order == [2, 0, 1]
    assert priced.cost.tolist() == pytest.approx([15 / 60 * 0.02, 45 / 60 * 0.02, 10 / 60 * 0.02])
    assert priced.net.tolist() == pytest.approx([0.02 - 0.005, 0.03 - 0.015, 0.025 - 10 / 60 * 0.02])


def test_risk_of_a_negative_response_is_a_cost():
    rows = [("email", False, "c1", 0.030, 0.02, 0.04, True, 0.20),  # 20% chance of "stop emailing me"
            ("call", False, "c1", 0.025, 0.02, 0.03, True, 0.01)]
    out = _order(RankPolicy(negative_cost=0.05), rows)
    assert out.order == [1, 0]
    assert out.cost.tolist() == pytest.approx([0.01, 0.0005])
    assert _order(RankPolicy(negative_cost=0.0), rows).order == [0, 1]


def test_candidates_without_overlap_go_last_whatever_their_effect():
    rows = [("workshop", False, "c1", 0.50, 0.1, 0.9, False, 0.0),
            ("call", False, "c1", 0.01, 0.0, 0.02, True, 0.0),
            ("none", False, None, 0.0, 0.0, 0.0, True, 0.0)]
    assert _order(RankPolicy(), rows).order == [1, 2, 0]


def test_guardrail_keeps_automation_below_the_same_touch_by_hand():
    rows = [("email", True, "c1", 0.040, 0.01, 0.07, True, 0.0),   # automated: higher point estimate ...
            ("email", False, "c1", 0.030, 0.02, 0.04, True, 0.0),  # ... but its interval overlaps the hand one
            ("call", False, "c1", 0.035, 0.03, 0.04, True, 0.0)]
    out = _order(RankPolicy(), rows)
    assert out.order == [2, 1, 0]  # right after the hand-made email, not above it
    assert out.guardrail[0] and "not shown above the same touch by hand" in out.guardrail[0]
    assert out.guardrail[1] is None and out.guardrail[2] is None
    assert out.net[0] == pytest.approx(0.040)  # the reported net effect is not altered, only the order


def test_guardrail_lets_automation_lead_when_its_interval_is_wholly_above():
    rows = [("email", True, "c1", 0.060, 0.045, 0.07, True, 0.0),
            ("email", False, "c1", 0.030, 0.02, 0.04, True, 0.0)]
    out = _order(RankPolicy(), rows)
    assert out.order == [0, 1] and out.guardrail == [None, None]


def test_guardrail_compares_with_the_hidden_hand_version_and_only_the_same_contact():
    rows = [("email", True, "c1", 0.040, 0.01, 0.07, True, 0.0),
            ("email", False, "c2", 0.030, 0.02, 0.04, True, 0.0),  # another contact: not the same touch
            ("call", False, "c1", 0.035, 0.03, 0.04, True, 0.0)]
    assert _order(RankPolicy(), rows).order == [0, 2, 1]  # no hand version known: by net effect
    hidden = {0: (0.032, 0.032, 0.045)}  # the service's own hand-made email to c1: net, effect, high
    out = _order(RankPolicy(), rows, hand=hidden)
    assert out.order == [2, 0, 1] and out.guardrail[0]


def test_without_exploration_the_top_one_has_propensity_one():
    rows = [("call", False, "c1", 0.02, 0.01, 0.03, True, 0.0), ("email", False, "c1", 0.03, 0.02, 0.04, True, 0.0)]
    out = _order(RankPolicy(), rows)
    assert out.propensity.tolist() == [0.0, 1.0] and not out.explored


def test_exploration_propensities_match_how_often_each_candidate_is_shown_first():
    rows = [("call", False, "c1", 0.02, 0.01, 0.03, True, 0.0),
            ("email", False, "c1", 0.03, 0.02, 0.04, True, 0.0),
            ("meeting", False, "c1", 0.01, 0.00, 0.02, True, 0.0),
            ("demo", False, "c1", 0.09, 0.00, 0.20, False, 0.0)]  # no overlap: never explored
    policy = RankPolicy(exploration=0.3)
    rng = random.Random(5)
    first = np.zeros(4)
    n = 6000
    for _ in range(n):
        out = _order(policy, rows, rng=rng)
        first[out.order[0]] += 1
        assert sorted(out.order) == [0, 1, 2, 3] and out.order[-1] == 3
    assert out.propensity.tolist() == pytest.approx([0.1, 0.8, 0.1, 0.0])
    assert out.propensity.sum() == pytest.approx(1.0)
    assert (first / n).tolist() == pytest.approx(out.propensity.tolist(), abs=0.02)


def test_settings_parse_and_bad_values_name_the_variable():
    p = load_policy({"ACTIVITY_SCORER_RANK_HOUR_VALUE": "0.01", "ACTIVITY_SCORER_RANK_EXPLORATION": "0.05",
                     "ACTIVITY_SCORER_RANK_MINUTES": "call=20, workshop=200"})
    assert (p.hour_value, p.exploration, p.minutes["call"], p.minutes["workshop"]) == (0.01, 0.05, 20.0, 200.0)
    assert p.minutes["email"] == DEFAULT_MINUTES["email"]
    assert load_policy({}) == RankPolicy()
    with pytest.raises(PolicyError, match="ACTIVITY_SCORER_RANK_EXPLORATION=1.5: must be >= 0 and < 1"):
        load_policy({"ACTIVITY_SCORER_RANK_EXPLORATION": "1.5"})
    with pytest.raises(PolicyError, match="ACTIVITY_SCORER_RANK_NEGATIVE_COST='lots': expected a number"):
        load_policy({"ACTIVITY_SCORER_RANK_NEGATIVE_COST": "lots"})
    with pytest.raises(PolicyError, match="'call:15' is not type=minutes"):
        parse_minutes("call:15", "--minutes")
    with pytest.raises(PolicyError, match="call=-3"):
        RankPolicy(minutes={"call": -3})


def test_an_automated_touch_costs_a_minute_of_the_rep():
    cost = RankPolicy(hour_value=0.6).cost(["email", "email", "none"], [True, False, True], np.zeros(3))
    assert cost.tolist() == pytest.approx([AUTOMATED_MINUTES / 60 * 0.6, 10 / 60 * 0.6, 0.0])
