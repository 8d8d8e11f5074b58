"""Off-policy evaluation over the /rank prediction log: a hand-built log and dataset, numbers computed by hand.

The log is written by the service's own writer (``PredictionLog.append(rank_record(...))``);
the dataset is five deals whose advances (stage moves, outcome rows) put each logged
decision's reward where the test wants it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.dataset import load_dataset, write_dataset
from reports.offpolicy import (
    VERDICT_BETTER,
    VERDICT_NONE,
    VERDICT_SAME,
    OffPolicyError,
    decision_rewards,
    estimate,
    evaluate_log,
    read_rank_log,
    top1_by_score,
    write_evaluation,
)
from serving.prediction_log import PredictionLog, log_files, rank_record

T0 = pd.Timestamp("2026-03-01T10:00:00Z")
END = pd.Timestamp("2026-03-31T10:00:00Z")  # the dataset's last event
E = 0.5  # exploration: 2 candidates in the pool, so the ranker's pick 0.75, the other 0.25
DAY = pd.Timedelta(days=1)

# deal, at, shown first (0 = the ranker's pick "call", 1 = "email" by exploration), effect (call, email)
STATES = [
    ("d1", T0, 0, (0.2, 0.1)),  # advance 3 days later (stage 1 -> 2): reward 1; new ranker (by effect) picks call
    ("d2", T0, 1, (0.1, 0.2)),  # explored: email shown; an outcome row 10 days later: reward 1; new picks email
    ("d3", T0, 0, (0.1, 0.2)),  # closed-lost 2 days later, an advance 20 days later: reward 0; new picks email
    ("d4", T0, 1, (0.1, 0.2)),  # explored; a stage advance exactly at `at` (not after it): reward 0; new picks email
    ("d5", END - 5 * DAY, 0, (0.2, 0.1)),  # horizon ends after the data: censored
]


def _dataset(root):
    deals = pd.DataFrame({c.DEAL_ID: [s[0] for s in STATES], c.CREATED_AT: [T0 - 30 * DAY] * len(STATES)})
    stages = pd.DataFrame([
        ("d1", "lead", 1, T0 - 20 * DAY), ("d1", "discovery", 2, T0 + 3 * DAY),
        ("d2", "lead", 1, T0 - 20 * DAY),
        ("d3", "lead", 1, T0 - 20 * DAY), ("d3", "discovery", 2, T0 - 5 * DAY),  # an advance before `at`: not counted
        ("d3", "closed_lost", 0, T0 + 2 * DAY), ("d3", "proposal", 3, T0 + 20 * DAY),
        ("d4", "lead", 1, T0 - 20 * DAY), ("d4", "discovery", 2, T0),
        ("d5", "lead", 1, T0 - 20 * DAY),
    ], columns=[c.DEAL_ID, c.STAGE, c.STAGE_ORDER, c.ENTERED_AT])
    outcomes = pd.DataFrame({c.DEAL_ID: ["d2"], c.OUTCOME: ["won"], c.OCCURRED_AT: [T0 + 10 * DAY]})
    acts = pd.DataFrame({c.ACTIVITY_ID: ["a1", "a2"], c.OCCURRED_AT: [T0 - DAY, END], c.TYPE: ["call", "email"],
                         c.DEAL_ID: ["d1", "d5"]})
    write_dataset({c.ACTIVITIES: acts, c.DEALS: deals, c.DEAL_STAGES: stages, c.OUTCOMES: outcomes}, root, fmt="csv")
    return root


def _log(root, states=STATES, exploration=E):
    log = PredictionLog(root)
    for deal, at, shown, effect in states:
        cands = [{"type": "call"}, {"type": "email"}]
        greedy = int(np.argmax(effect)) if exploration == 0 else 0  # the logging ranker always preferred "call"
        prop = np.zeros(2)
        if exploration:
            prop[:] = exploration / 2
            prop[greedy] += 1 - exploration
        else:
            prop[greedy] = 1.0
        order = [shown, 1 - shown]
        scores = {"p_outcome": np.array([0.3, 0.2]), "effect": np.array(effect), "propensity": prop}
        log.append(rank_record({"deal": {"deal_id": deal}}, cands, scores, order, 2, "effect",
                               {"name": "activity-outcome", "version": "3"}, at.isoformat(),
                               explored=shown != greedy, exploration=exploration))
    log.close()
    return root


@pytest.fixture()
def world(tmp_path):
    return _log(tmp_path / "log"), load_dataset(_dataset(tmp_path / "data"))


def test_rewards_are_advances_within_the_horizon_and_censored_at_the_data_end(world):
    log_dir, dataset = world
    log = read_rank_log(log_dir)
    rewards, stats = decision_rewards(log.decisions, dataset, 14)
    assert rewards[:4].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert np.isnan(rewards[4])
    assert (stats.rewarded, stats.censored, stats.unknown_deal) == (4, 1, 0)
    # a 25-day horizon reaches d3's advance on day 20, and censors nothing more than d5
    rewards, _ = decision_rewards(log.decisions, dataset, 25)
    assert rewards[2] == 1.0


def test_unknown_deals_are_counted_and_a_log_without_any_reward_is_an_error(world, tmp_path):
    _, dataset = world
    log = read_rank_log(_log(tmp_path / "other", [("dX", T0, 0, (0.2, 0.1)), ("d5", END - DAY, 0, (0.2, 0.1))]))
    rewards, stats = decision_rewards(log.decisions, dataset, 14)
    assert np.isnan(rewards).all() and (stats.unknown_deal, stats.censored, stats.rewarded) == (1, 1, 0)
    with pytest.raises(OffPolicyError, match=r"no logged decision has a reward yet: 1 censored .* 1 with a deal not in "
                                             r"the dataset"):
        evaluate_log(log, dataset, "data", None, None, 14)


def test_ips_and_snips_are_the_numbers_computed_by_hand(world):
    log_dir, dataset = world
    result = evaluate_log(read_rank_log(log_dir), dataset, "data", "by effect",
                          lambda ds: top1_by_score(ds, "effect"), 14, bootstrap=200, min_matched=1,
                          min_events=1)
    e = result.estimate
    # matched: d1 (call shown with p .75), d2 and d4 (email shown with p .25); d3 showed call, new picks email
    w = np.array([1 / 0.75, 4.0, 0.0, 4.0])
    r = np.array([1.0, 1.0, 0.0, 0.0])
    assert (e.states, e.supported, e.unsupported, e.matched) == (4, 4, 0, 3)
    assert (e.differs, e.explored_matches, e.rewarded_explored) == (3, 2, 1)
    assert e.ips.value == pytest.approx((w * r).sum() / 4)  # 1.3333
    assert e.snips.value == pytest.approx((w * r).sum() / w.sum())  # 0.5714
    assert e.logged.value == pytest.approx(0.5)
    assert e.diff_ips.value == pytest.approx((w * r).sum() / 4 - 0.5)
    assert e.ips.low <= e.ips.value <= e.ips.high
    assert result.rewards.censored == 1 and result.logged_value.value == pytest.approx(0.5)
    assert e.min_weight == pytest.approx(1 / 0.75) and e.max_weight == pytest.approx(4.0)


def test_estimate_leaves_out_states_the_logging_policy_could_never_show():
    # three candidates, the third outside the exploration pool (propensity 0)
    prop = [np.array([0.8, 0.2, 0.0])] * 4
    est = estimate("x", np.array([0, 1, 0, 0]), prop, np.array([1, 1, 2, 0]), np.array([1.0, 1.0, 0.0, 1.0]),
                   bootstrap=0, min_matched=1, min_events=1)
    assert (est.supported, est.unsupported, est.matched) == (3, 1, 2)
    assert est.ips.value == pytest.approx((1 / 0.2 * 1 + 1 / 0.8 * 1) / 3)
    assert est.logged.value == pytest.approx(1.0)  # the unsupported state's 0 is left out
    assert est.verdict == VERDICT_NONE and "bootstrap" in est.reason


def test_no_value_is_claimed_without_exploration_or_with_too_few_matches(world, tmp_path):
    _, dataset = world
    greedy = [(deal, at, int(np.argmax(effect)), effect) for deal, at, _, effect in STATES]
    plain = read_rank_log(_log(tmp_path / "plain", greedy, exploration=0.0))
    e = evaluate_log(plain, dataset, "data", "by effect", lambda ds: top1_by_score(ds, "effect"), 14,
                     min_matched=1).estimate
    assert e.verdict == VERDICT_NONE and "no exploration" in e.reason
    e = evaluate_log(read_rank_log(world[0]), dataset, "data", "by effect",
                     lambda ds: top1_by_score(ds, "effect"), 14, min_matched=4).estimate
    assert e.verdict == VERDICT_NONE and "too few matched states" in e.reason and e.ips.value is None
    # 3 matched, but where the rankers differ exploration showed the new choice twice, with one advance
    e = evaluate_log(read_rank_log(world[0]), dataset, "data", "by effect",
                     lambda ds: top1_by_score(ds, "effect"), 14, min_matched=1, min_events=2).estimate
    assert e.verdict == VERDICT_NONE and "too few rewards where the rankers differ" in e.reason
    assert "showed it in 2 of them, where 1.0 advance(s) are expected" in e.reason


def test_verdict_reads_the_paired_interval_of_the_difference():
    rng = np.random.default_rng(0)
    n = 4000
    prop = [np.array([0.75, 0.25])] * n
    shown = (rng.random(n) < 0.25).astype(int)  # candidate 1 shown a quarter of the time
    true_p = np.array([0.1, 0.4])
    rewards = (rng.random(n) < true_p[shown]).astype(float)
    better = estimate("always 1", shown, prop, np.ones(n, dtype=int), rewards, seed=1)
    assert better.verdict == VERDICT_BETTER and better.diff_ips.low > 0
    assert better.ips.low <= 0.4 <= better.ips.high
    same = estimate("as logged", shown, prop, np.zeros(n, dtype=int), rewards, seed=1)
    # always 0 (true 0.1) against the logging mix (0.175): worse, and the verdict says so
    assert same.verdict == "worse" and same.diff_ips.high < 0
    flat = (rng.random(n) < 0.2).astype(float)  # both candidates 0.2: no policy differs from the log
    assert estimate("always 1", shown, prop, np.ones(n, dtype=int), flat, seed=1).verdict == VERDICT_SAME


def test_a_torn_last_line_is_skipped_and_counted(world):
    log_dir, _ = world
    path = log_files(log_dir)[-1]
    with path.open("ab") as fh:
        fh.write(b'{"endpoint":"rank","state":{"deal_id":"d9"')  # the writer died mid-record
    log = read_rank_log(log_dir)
    assert len(log.decisions) == len(STATES) and log.torn_lines == 1


def test_a_corrupt_line_names_file_and_line(world):
    log_dir, _ = world
    path = log_files(log_dir)[-1]
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(2, "not json\n")
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(OffPolicyError, match=rf"{path.name}: line 3: not a JSON record"):
        read_rank_log(log_dir)


def test_a_record_without_propensities_names_the_field(world):
    log_dir, _ = world
    path = log_files(log_dir)[-1]
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rec = json.loads(lines[1])
    del rec["candidates"][1]["propensity"]
    lines[1] = json.dumps(rec) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(OffPolicyError, match=r"line 2: field 'candidates\[1\]\.propensity'"):
        read_rank_log(log_dir)


def test_a_missing_score_names_the_record(world):
    with pytest.raises(OffPolicyError, match=r"line 1: no candidate has the score 'rank_score'.*effect"):
        top1_by_score(read_rank_log(world[0]).decisions, "rank_score")


def test_outputs_json_and_csv(world, tmp_path):
    log_dir, dataset = world
    result = evaluate_log(read_rank_log(log_dir), dataset, "data", "by effect",
                          lambda ds: top1_by_score(ds, "effect"), 14, bootstrap=50, min_matched=1, min_events=1)
    write_evaluation(result, tmp_path / "o.json")
    doc = json.loads((tmp_path / "o.json").read_text(encoding="utf-8"))
    assert doc["estimate"]["matched"] == 3 and doc["rewards"]["censored"] == 1
    write_evaluation(result, tmp_path / "o.csv")
    table = pd.read_csv(tmp_path / "o.csv")
    assert table.loc[table["estimator"] == "SNIPS", "value"].iloc[0] == pytest.approx(result.estimate.snips.value)
    with pytest.raises(OffPolicyError, match="must end in .json or .csv"):
        write_evaluation(result, tmp_path / "o.txt")


def test_cli_prints_the_table_and_one_red_line_for_a_missing_log(world, tmp_path):
    from training.cli import app

    log_dir, _ = world
    data = tmp_path / "data"
    runner = CliRunner()
    ok = runner.invoke(app, ["evaluate-policy", "--log", str(log_dir), "--data", str(data), "--by", "effect",
                             "--min-matched", "1", "--min-events", "1", "--bootstrap", "100", "--out", str(tmp_path / "e.json")])
    assert ok.exit_code == 0, ok.output
    assert "new ranker, IPS" in ok.output and "1.3333" in ok.output and "1 censored" in ok.output
    assert (tmp_path / "e.json").exists()
    missing = runner.invoke(app, ["evaluate-policy", "--log", str(tmp_path / "nope"), "--data", str(data)])
    assert missing.exit_code == 1
    lines = [ln for ln in missing.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--log" in lines[0] and "no such directory" in lines[0]
    assert "Traceback" not in missing.output


@pytest.mark.slow
def test_bundle_route_reproduces_the_logged_ranker_on_states_rebuilt_from_the_dataset(tmp_path):
    """The command's --bundle route, end to end: /rank answers logged with exploration, then re-ranked by the same
    bundle (no exploration) from the dataset at each logged time: it picks the logged ranker's own choice everywhere."""
    from serving.batch_rank import RequestBuilder
    from serving.model_store import load_bundle_dir
    from serving.rank_policy import RankPolicy
    from serving.schemas import RankRequest, get_limits, set_limits
    from serving.scorer import Scorer
    from tests.reports.report_helpers import simulate_dataset, train_with_effects
    from training.cli import app

    data = simulate_dataset(tmp_path / "data", n_activities=6000, seed=7)
    bundle = train_with_effects(data, tmp_path / "bundle")
    dataset = load_dataset(data)
    builder = RequestBuilder(dataset)
    acts = dataset[c.ACTIVITIES]
    end = acts[c.OCCURRED_AT].max()
    recent = acts[(acts[c.OCCURRED_AT] > end - pd.Timedelta(days=60)).to_numpy(bool)
                  & acts[c.DEAL_ID].notna().to_numpy(bool)]
    picks = recent.drop_duplicates(c.DEAL_ID).head(40)
    scorer = Scorer(load_bundle_dir(bundle), policy=RankPolicy(exploration=0.5))
    log = PredictionLog(tmp_path / "log")
    scorer.rank_log = lambda *args: log.append(rank_record(*args))
    limits = get_limits()
    set_limits(type(limits)(limits.max_items, 1_000_000, limits.max_candidates))
    try:
        for deal, at in zip(picks[c.DEAL_ID], picks[c.OCCURRED_AT], strict=True):
            body = builder.body(str(deal), at)
            body["candidates"] = [{"type": "call"}, {"type": "email", "personalization": 0.9},
                                  {"type": "email", "is_automated": True, "personalization": 0.1}, {"type": "none"}]
            body["top_k"] = 4
            scorer.rank(RankRequest.model_validate_json(json.dumps(body, default=str)))
    finally:
        set_limits(limits)
        log.close()
    decisions = read_rank_log(tmp_path / "log").decisions
    rewards, _ = decision_rewards(decisions, dataset, 14)
    kept = [d for d, r in zip(decisions, rewards, strict=True) if np.isfinite(r)]
    assert len(kept) >= 10
    own = sum(d.shown == int(np.argmax(d.propensity)) for d in kept)

    result = CliRunner().invoke(app, ["evaluate-policy", "--log", str(tmp_path / "log"), "--data", str(data),
                                      "--bundle", str(bundle), "--min-matched", "1", "--bootstrap", "100",
                                      "--out", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))
    est = doc["estimate"]
    assert est["differs"] == 0, "the same bundle re-ranking the rebuilt states chose otherwise than it did live"
    assert (est["states"], est["unsupported"], est["matched"]) == (len(kept), 0, own)
    assert doc["rewards"]["censored"] == len(decisions) - len(kept)
