"""The truth function behaves as designed: each phenomenon, on hand-built states and candidates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from simulator import truth as tr
from simulator.truth import Candidate, DealState, TruthParams

AT = pd.Timestamp("2025-03-12T10:30:00Z")  # a Wednesday morning
SATURDAY = pd.Timestamp("2025-03-15T10:30:00Z")
VP = dict(contact_id="vp", seniority="vp", department="finance")
IC = dict(contact_id="ic", seniority="individual_contributor", department="hr")


def state(stage=3, days_in_stage=10.0, quality=0.0, skill=0.0, touches=0, outputs=0, negatives=0, at=AT):
    return DealState(deal_id="d", at=at, stage_order=stage, days_in_stage=days_in_stage, quality=quality,
                     rep_skill=skill, touches_7d={"vp": touches, "ic": touches},
                     outputs_30d={"vp": outputs, "ic": outputs}, negatives_30d={"vp": negatives, "ic": negatives})


def p(st: DealState, **candidate) -> float:
    return tr.true_outcome_probability(st, Candidate(**candidate))


def probs(st: DealState, **candidate) -> tr.Probabilities:
    """All three probabilities of one candidate (through the vectorized core)."""
    cand = Candidate(**candidate)
    return tr.true_probabilities(
        TruthParams(), type_code=tr.encode([cand.type], tr.TYPES, "none"), stage_order=st.stage_order,
        days_in_stage=st.days_in_stage, quality=st.quality, rep_skill=st.rep_skill,
        seniority_code=tr.encode([cand.seniority], tr.SENIORITIES, "unknown"),
        department_code=tr.encode([cand.department], tr.DEPARTMENTS, "other"),
        personalization=np.nan if cand.personalization is None else cand.personalization,
        is_automated=cand.is_automated, inbound=cand.direction == "inbound",
        touches_contact_7d=st.touches_7d.get(cand.contact_id, 0),
        outputs_contact_30d=st.outputs_30d.get(cand.contact_id, 0),
        negatives_contact_30d=st.negatives_30d.get(cand.contact_id, 0),
        hour=st.at.hour + st.at.minute / 60, weekday=st.at.weekday(),
    )


def test_tailored_vp_call_mid_funnel_beats_fifth_automated_email_this_week():
    tailored_call = p(state(stage=3, touches=0), type="call", personalization=0.9, **VP)
    fifth_email = p(state(stage=3, touches=4), type="email", personalization=0.05, is_automated=True, **VP)
    assert tailored_call > 10 * fifth_email


def test_value_of_a_type_depends_on_the_stage():
    def ratio(kind: str, stage: int) -> float:  # against a call in the same stage: later stages move easier
        return (p(state(stage=stage), type=kind, personalization=0.7, **VP)
                / p(state(stage=stage), type="call", personalization=0.7, **VP))

    assert ratio("proposal", 4) > 5 * ratio("proposal", 1)  # a proposal in discovery is premature
    assert ratio("demo", 2) > 2 * ratio("demo", 5)  # demos belong mid-funnel
    assert ratio("demo", 2) > ratio("demo", 1)
    assert ratio("email", 1) < 0.6  # a call beats an email at the same contact


def test_value_depends_on_who_is_reached():
    def meeting(stage: int, **who) -> float:
        return p(state(stage=stage), type="meeting", personalization=0.7, **who)

    assert meeting(4, **VP) > 2 * meeting(4, **IC)  # late in the funnel the budget holder matters
    assert meeting(4, **VP) / meeting(4, **IC) > meeting(1, **VP) / meeting(1, **IC)

    def director(stage: int, department: str) -> float:
        return meeting(stage, contact_id="vp", seniority="director", department=department)

    assert director(5, "finance") / director(5, "hr") > director(1, "finance") / director(1, "hr")
    assert director(5, "procurement") > director(5, "marketing")


def test_tailored_beats_template_and_automation_costs_outcomes_and_raises_negatives():
    ps = [p(state(), type="email", personalization=x, **VP) for x in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(b > a for a, b in zip(ps, ps[1:], strict=False))
    manual = probs(state(), type="email", personalization=0.1, **VP)
    bulk = probs(state(), type="email", personalization=0.1, is_automated=True, **VP)
    assert bulk.p_outcome[0] < 0.5 * manual.p_outcome[0]
    assert bulk.p_negative[0] > 1.8 * manual.p_negative[0]
    assert bulk.p_output[0] < manual.p_output[0]


def test_fatigue_lowers_each_touch_and_raises_negatives():
    out = [probs(state(touches=n), type="email", personalization=0.5, **VP) for n in range(0, 8)]
    p_outcome = [x.p_outcome[0] for x in out]
    p_negative = [x.p_negative[0] for x in out]
    assert all(b < a for a, b in zip(p_outcome, p_outcome[1:], strict=False))
    assert all(b > a for a, b in zip(p_negative, p_negative[1:], strict=False))
    assert p_outcome[6] < 0.4 * p_outcome[0]


def test_a_wait_beats_another_touch_on_a_saturated_contact_but_not_a_fresh_one():
    wait = p(state(stage=2, touches=8), type="none", **VP)
    spam = p(state(stage=2, touches=8), type="email", personalization=0.05, is_automated=True, **VP)
    fresh = p(state(stage=2, touches=0), type="call", personalization=0.8, **VP)
    assert wait > spam and fresh > 5 * wait
    assert probs(state(), type="none", **VP).p_output[0] == 0.0


def test_an_engaged_contact_is_worth_more_and_a_negative_one_less():
    base = p(state(), type="call", personalization=0.5, **VP)
    assert p(state(outputs=2), type="call", personalization=0.5, **VP) > 1.5 * base
    assert p(state(negatives=1), type="call", personalization=0.5, **VP) < 0.7 * base


def test_weekend_and_off_hours_are_worse():
    weekday = p(state(), type="call", personalization=0.5, **VP)
    assert p(state(at=SATURDAY), type="call", personalization=0.5, **VP) < 0.7 * weekday
    assert p(state(), type="call", personalization=0.5, hour=20.5, **VP) < weekday


def test_rep_skill_and_latent_quality_raise_the_odds_stalling_lowers_them():
    base = p(state(), type="meeting", personalization=0.5, **VP)
    assert p(state(skill=0.3), type="meeting", personalization=0.5, **VP) > 1.2 * base
    q_up = p(state(quality=1.0), type="meeting", personalization=0.5, **VP)
    assert base < q_up < 1.5 * base  # moderate: latent quality works mostly through effort
    assert p(state(days_in_stage=90), type="meeting", personalization=0.5, **VP) < 0.5 * base


def test_a_closed_deal_does_not_advance():
    assert p(state(stage=6), type="call", **VP) == 0.0
    assert p(state(stage=0), type="call", **VP) == 0.0


def test_vectorized_variant_equals_the_scalar_function():
    st = state(touches=2, outputs=1)
    cands = [Candidate(type=t, personalization=x, is_automated=a, **VP)
             for t in ("call", "email", "demo", "none") for x in (0.1, 0.9) for a in (False, True)]
    vec = tr.true_outcome_probabilities(st, cands)
    assert np.allclose(vec, [tr.true_outcome_probability(st, cand) for cand in cands], rtol=0, atol=0)
    frame = pd.DataFrame([vars(cand) for cand in cands])
    assert np.array_equal(tr.true_outcome_probabilities(st, frame), vec)


def test_probabilities_are_probabilities():
    rng = np.random.default_rng(0)
    n = 5000
    out = tr.true_probabilities(
        TruthParams(), type_code=rng.integers(0, len(tr.TYPES), n), stage_order=rng.integers(1, 6, n),
        days_in_stage=rng.uniform(0, 200, n), quality=rng.normal(0, 2, n), rep_skill=rng.normal(0, 1, n),
        seniority_code=rng.integers(0, len(tr.SENIORITIES), n),
        department_code=rng.integers(0, len(tr.DEPARTMENTS), n), personalization=rng.uniform(0, 1, n),
        is_automated=rng.random(n) < 0.5, inbound=rng.random(n) < 0.1, touches_contact_7d=rng.integers(0, 30, n),
        outputs_contact_30d=rng.integers(0, 5, n), negatives_contact_30d=rng.integers(0, 3, n),
        hour=rng.uniform(0, 24, n), weekday=rng.integers(0, 7, n))
    for values in out:
        assert np.all((values >= 0) & (values <= 1)) and not np.isnan(values).any()
    assert np.all(out.p_output + out.p_negative <= 1.0 + 1e-12)


def test_parameters_survive_json():
    params = TruthParams()
    back = TruthParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert back.output_type["none"] == -np.inf
    st = state()
    cand = Candidate(type="workshop", personalization=0.6, **VP)
    assert tr.true_outcome_probability(st, cand, back) == pytest.approx(tr.true_outcome_probability(st, cand))
