"""Run a simulation and turn it into the contract tables plus the ground-truth files.

:func:`simulate` returns a :class:`Simulation` (typed contract frames and ground-truth frames);
:func:`write_simulation` writes it to a dataset directory. Same config, same bytes.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract as c
from features.dataset import coerce_table, write_dataset
from simulator import engine as en
from simulator import truth as tr
from simulator.params import BehaviourParams, OracleSettings, SimulationConfig
from simulator.truth import TruthParams

logger = logging.getLogger(__name__)

GROUND_TRUTH_FILE = "ground_truth.parquet"
GROUND_TRUTH_DEALS_FILE = "ground_truth_deals.parquet"
GROUND_TRUTH_REPS_FILE = "ground_truth_reps.parquet"
GROUND_TRUTH_META_FILE = "ground_truth.json"
FORMAT_VERSION = 2

# Custom fields (beyond the contract) the simulated CRM carries; all known at plan time.
TEMPLATE_ID = "template_id"  # activities: the template of automated or near-mass written work
TIER = "tier"  # accounts
LEAD_SOURCE = "lead_source"  # deals: partly reveals latent quality
TENURE_MONTHS = "tenure_months"  # contacts: numeric, no effect

# A first guess of activities per account (about 46 with the default behaviour), refined
# after the first chunk; the first chunk aims 5% over the target, later ones 15%.
ACTIVITIES_PER_ACCOUNT_GUESS = 46.0
MAX_CHUNK_ACCOUNTS = 50_000

TITLE_DEPARTMENT = {"sales": "Sales", "marketing": "Marketing", "it": "IT", "finance": "Finance",
                    "operations": "Operations", "hr": "HR", "procurement": "Procurement",
                    "executive": "Executive", "other": "General"}
C_LEVEL_TITLE = {"executive": "CEO", "finance": "CFO", "it": "CIO", "sales": "CRO", "operations": "COO"}
OUTPUT_NAMES = {  # type -> (names, probabilities) of the one meaningful response row
    "call": (("connected",), (1.0,)),
    "email": (("replied", "positive_reply", "meeting_booked"), (0.55, 0.30, 0.15)),
    "inmail": (("replied", "positive_reply", "meeting_booked"), (0.55, 0.30, 0.15)),
    "social": (("replied", "positive_reply"), (0.8, 0.2)),
    "meeting": (("meeting_booked", "positive_reply"), (0.6, 0.4)),
    "demo": (("meeting_booked", "positive_reply"), (0.6, 0.4)),
    "workshop": (("meeting_booked", "positive_reply"), (0.6, 0.4)),
    "proposal": (("positive_reply", "replied"), (0.7, 0.3)),
    "none": (("replied",), (1.0,)),
}


@dataclass
class Simulation:
    """A simulated dataset: typed contract tables and the ground truth behind them."""

    tables: dict[str, pd.DataFrame]
    ground_truth: pd.DataFrame  # one row per activity
    deals_truth: pd.DataFrame  # one row per deal
    reps_truth: pd.DataFrame  # one row per rep
    meta: dict


def n_reps_for(n_activities: int, beh: BehaviourParams) -> int:
    return max(6, round(n_activities / beh.activities_per_rep))


def simulate(config: SimulationConfig, truth: TruthParams | None = None,
             oracle: OracleSettings | None = OracleSettings()) -> Simulation:
    """Simulate about ``config.n_activities`` activities (at most that many, within one account's).

    ``oracle`` sets which share of the activities gets the ex-ante label probability
    (Monte-Carlo continuations with their own random stream, so the dataset is the same with
    any share; None or share 0 skips them).
    """
    truth = truth or TruthParams()
    beh = config.behaviour
    start = pd.Timestamp(config.start, tz="UTC").normalize()
    origin = start - pd.Timedelta(days=beh.warmup_days)  # the simulation's time zero
    first_sec = beh.warmup_days * en.DAY  # activities before this are not written
    target = int(config.n_activities)
    reps = en.make_reps(np.random.default_rng([config.seed, 0]), n_reps_for(target, beh), beh)

    chunks: list[en.Chunk] = []
    total, per_account = 0, ACTIVITIES_PER_ACCOUNT_GUESS
    while total < target:
        k = len(chunks)
        need = (target - total) / per_account * (1.05 if k == 0 else 1.15) + 3
        n_accounts = int(min(MAX_CHUNK_ACCOUNTS, math.ceil(need)))
        chunk = en.make_chunk(np.random.default_rng([config.seed, 1, k]), n_accounts, reps, beh)
        en.simulate_chunk(np.random.default_rng([config.seed, 2, k]), chunk, reps, truth, beh, origin.weekday(),
                          oracle, np.random.default_rng([config.seed, 4, k]))
        n = int((chunk.acts["time"] >= first_sec).sum())
        total += n
        if k == 0 and n:
            per_account = n / n_accounts
        chunks.append(chunk)
        logger.info("chunk %d: %d accounts, %d activities (total %d of %d)", k, n_accounts, n, total, target)

    # keep whole accounts, in order, up to the target
    # (each chunk is dropped as soon as its trimmed copy exists: holding both raised the peak, 1.96
    # instead of 2.15 GB at 1M)
    kept = []
    remaining = target
    chunks.reverse()
    while chunks:
        chunk = chunks.pop()
        written = chunk.acts["time"] >= first_sec
        per_acc = np.bincount(chunk.deal_account[chunk.acts["deal"][written]], minlength=len(chunk.acc_team))
        n_keep = int(np.searchsorted(np.cumsum(per_acc), remaining, side="right"))
        kept.append(_trim(chunk, n_keep))
        del chunk, written
        remaining -= int(per_acc[:n_keep].sum())
        if n_keep < len(per_acc):
            break
    chunks.clear()

    return _assemble(kept, reps, config, truth, origin)


def _trim(chunk: en.Chunk, n_accounts: int) -> en.Chunk:
    """The first ``n_accounts`` accounts of a chunk with their contacts, deals and activities."""
    n_con = int(chunk.acc_n_contacts[:n_accounts].sum())
    n_deal = int(np.searchsorted(chunk.deal_account, n_accounts))
    acc_fields = [f for f in vars(chunk) if f.startswith("acc_")]
    con_fields = [f for f in vars(chunk) if f.startswith("con_")]
    deal_fields = [f for f in vars(chunk) if f.startswith("deal_")]
    out = en.Chunk(**{f: getattr(chunk, f)[:n_accounts] for f in acc_fields},
                   **{f: getattr(chunk, f)[:n_con] for f in con_fields},
                   **{f: getattr(chunk, f)[:n_deal] for f in deal_fields})
    keep = chunk.acts["deal"] < n_deal
    out.acts = {k: v[keep] for k, v in chunk.acts.items()}
    out.events = {k: v[chunk.events["deal"] < n_deal] for k, v in chunk.events.items()}
    out.losses = {k: v[chunk.losses["deal"] < n_deal] for k, v in chunk.losses.items()}
    if chunk.oracle is not None:
        new_index = np.cumsum(keep) - 1
        inside = keep[chunk.oracle["act"]]
        out.oracle = {"act": new_index[chunk.oracle["act"][inside]], "p": chunk.oracle["p"][inside]}
    return out


def _ids(prefix: str, n: int, width: int | None = None) -> np.ndarray:
    width = width or max(4, len(str(n)))
    return np.char.add(prefix, np.char.zfill(np.arange(1, n + 1).astype(str), width))


def _ts(start: pd.Timestamp, seconds: np.ndarray) -> pd.Series:
    """Seconds from ``start`` as UTC timestamps; NaN becomes NaT."""
    s = np.asarray(seconds, dtype=np.float64)
    ns = start.value + np.where(np.isnan(s), 0, s).astype(np.int64) * 1_000_000_000
    out = pd.Series(pd.to_datetime(ns, utc=True))
    return out.mask(np.isnan(s))


def _assemble(chunks: list[en.Chunk], reps: en.Reps, config: SimulationConfig,
              truth: TruthParams, origin: pd.Timestamp) -> Simulation:
    """The contract tables and the ground truth of the simulated chunks.

    Times are seconds from ``origin``, the start of the warm-up. Activities of the warm-up
    are not written (nor their responses); deals closed during it are left out; the stage
    history and outcomes of the others are written in full.
    """
    beh = config.behaviour
    first_sec = beh.warmup_days * en.DAY
    end_sec = (beh.warmup_days + beh.days) * en.DAY
    start = origin + pd.Timedelta(days=beh.warmup_days)
    acc_off = np.concatenate([[0], np.cumsum([len(ch.acc_team) for ch in chunks])])
    con_off = np.concatenate([[0], np.cumsum([len(ch.con_account) for ch in chunks])])
    deal_off = np.concatenate([[0], np.cumsum([len(ch.deal_account) for ch in chunks])])

    def join(attr, offsets=None):
        return np.concatenate([getattr(ch, attr) + (0 if offsets is None else offsets[i])
                               for i, ch in enumerate(chunks)])

    def join_dict(attr, key, offsets=None):
        return np.concatenate([getattr(ch, attr)[key] + (0 if offsets is None else offsets[i])
                               for i, ch in enumerate(chunks)])

    def ts(seconds):
        return _ts(origin, seconds)

    # --- entities ----------------------------------------------------------------------------
    rep_ids = _ids("rep-", len(reps), 3)
    acc_ids = _ids("acc-", int(acc_off[-1]))
    con_ids = _ids("con-", int(con_off[-1]))
    accounts = pd.DataFrame({
        c.ACCOUNT_ID: acc_ids,
        c.INDUSTRY: np.array(en.INDUSTRIES)[join("acc_industry")],
        c.EMPLOYEES: join("acc_employees"),
        c.REGION: np.array(en.REGIONS)[join("acc_region")],
        TIER: np.array(["strategic", "key", "standard"])[join("acc_tier")],
    })
    con_account = join("con_account", acc_off)
    con_sen = join("con_seniority")
    con_dep = join("con_department")
    contacts = pd.DataFrame({
        c.CONTACT_ID: con_ids,
        c.ACCOUNT_ID: acc_ids[con_account],
        c.TITLE: _titles(con_sen, con_dep),
        c.SENIORITY: np.array(tr.SENIORITIES)[con_sen],
        c.DEPARTMENT: np.array(tr.DEPARTMENTS)[con_dep],
        TENURE_MONTHS: join("con_tenure_months").astype(float),
    })
    reps_frame = pd.DataFrame({
        c.REP_ID: rep_ids,
        c.TEAM: np.array(en.TEAMS)[reps.team],
        c.HIRED_AT: ts(reps.hired_sec),
    })

    # deals closed before the history starts are not in the extract
    status = join("deal_status")
    closed_sec = join("deal_closed_sec")
    kept = (status == en.OPEN) | (closed_sec >= first_sec)
    deal_new = np.cumsum(kept) - 1  # index among the kept deals
    deal_ids = _ids("deal-", int(kept.sum()))
    deal_rep = join("deal_rep")[kept]
    deal_status = status[kept]
    deal_quality = join("deal_quality")[kept]
    deals = pd.DataFrame({
        c.DEAL_ID: deal_ids,
        c.ACCOUNT_ID: acc_ids[join("deal_account", acc_off)[kept]],
        c.OWNER_REP_ID: rep_ids[deal_rep],
        c.CREATED_AT: ts(join("deal_created_sec")[kept]),
        c.AMOUNT: join("deal_amount")[kept].astype(float),
        c.PRODUCT: np.array(en.PRODUCTS)[join("deal_product")[kept]],
        c.CLOSED_AT: ts(np.where(deal_status == en.OPEN, np.nan, closed_sec[kept])),
        c.WON: pd.array(np.where(deal_status == en.OPEN, None, deal_status == en.WON), dtype="boolean"),
        LEAD_SOURCE: np.array(en.LEAD_SOURCES)[join("deal_source")[kept]],
    })

    # --- all activities, ordered by time; labels and oracles need the warm-up's too ------------
    everything = {k: join_dict("acts", k) for k in chunks[0].acts}
    everything["deal"] = join_dict("acts", "deal", deal_off)
    everything["contact"] = join_dict("acts", "contact", con_off)
    order = np.lexsort((everything["contact"], everything["deal"], everything["time"]))
    everything = {k: v[order] for k, v in everything.items()}
    ev_deal = join_dict("events", "deal", deal_off)
    ev_index = join_dict("events", "index")
    ev_time = join_dict("events", "time")
    labels = _labels(everything, ev_deal, ev_time, end_sec)
    ex_ante = np.full(len(order), np.nan)
    if all(ch.oracle is not None for ch in chunks):
        act_off = np.concatenate([[0], np.cumsum([len(ch.acts["deal"]) for ch in chunks])])
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        ex_ante[position[join_dict("oracle", "act", act_off)]] = join_dict("oracle", "p")
    trigger_act = _triggering_activity(everything, ev_deal, ev_time)

    # --- the written activities and their responses ------------------------------------------
    written = everything["time"] >= first_sec
    acts = {k: v[written] for k, v in everything.items()}
    acts["deal"] = deal_new[acts["deal"]]  # a deal with activity after the start is kept
    n = len(acts["time"])
    act_ids = _ids("act-", n, max(7, len(str(n))))
    post = _post_process(np.random.default_rng([config.seed, 3]), acts, reps, deal_rep, beh, end_sec)
    is_none = acts["type"] == tr.NONE_CODE
    automated = acts["automated"].astype(bool)
    activities = pd.DataFrame({
        c.ACTIVITY_ID: act_ids,
        c.OCCURRED_AT: ts(acts["time"]),
        c.TYPE: np.array(tr.TYPES)[acts["type"]],
        c.REP_ID: rep_ids[deal_rep[acts["deal"]]],
        c.DEAL_ID: deal_ids[acts["deal"]],
        c.CONTACT_ID: con_ids[acts["contact"]],
        c.ACCOUNT_ID: acc_ids[con_account[acts["contact"]]],
        c.DIRECTION: np.where(is_none, None, np.where(acts["inbound"].astype(bool), "inbound", "outbound")),
        c.DURATION_S: post["duration"],
        c.PERSONALIZATION: acts["personalization"],
        c.IS_AUTOMATED: automated,
        c.SEQUENCE_STEP: pd.array(np.where(automated, acts["seq_step"], None), dtype="Int64"),
        c.LOGGED_AT: ts(post["logged"]),
        TEMPLATE_ID: post["template"],
    })
    responses = pd.DataFrame({
        c.ACTIVITY_ID: act_ids[post["resp_act"]],
        c.RESPONSE: post["resp_name"],
        c.OCCURRED_AT: ts(post["resp_time"]),
    })

    # --- stage history and outcomes of the kept deals ------------------------------------------
    stage_rows = [(deal_ids, en.FIRST_STAGE[0], en.FIRST_STAGE[1], join("deal_created_sec")[kept])]
    outcome_rows = []
    for e, (_, rows) in enumerate(en.PROGRESS_SCRIPT):
        m = (ev_index == e) & kept[ev_deal]
        d, t, a = deal_new[ev_deal[m]], ev_time[m], trigger_act[m]
        for row in rows:
            if row[0] == "stage":
                stage_rows.append((deal_ids[d], row[1], row[2], t))
            else:
                name = np.full(len(d), row[1], dtype=object)
                if e in en.WORKSHOP_EVENTS:
                    name[everything["type"][a] == tr.TYPE_CODE["workshop"]] = "workshop_sponsored"
                outcome_rows.append((deal_ids[d], name, t, con_ids[everything["contact"][a]]))
    loss_deal = join_dict("losses", "deal", deal_off)
    loss_kept = kept[loss_deal]
    stage_rows.append((deal_ids[deal_new[loss_deal[loss_kept]]], en.CLOSED_LOST[0], en.CLOSED_LOST[1],
                       join_dict("losses", "time")[loss_kept]))
    deal_stages = pd.DataFrame({
        c.DEAL_ID: np.concatenate([r[0] for r in stage_rows]),
        c.STAGE: np.concatenate([np.full(len(r[0]), r[1], dtype=object) for r in stage_rows]),
        c.STAGE_ORDER: np.concatenate([np.full(len(r[0]), r[2], dtype=np.int64) for r in stage_rows]),
        c.ENTERED_AT: np.concatenate([r[3] for r in stage_rows]),
    }).sort_values([c.ENTERED_AT, c.DEAL_ID, c.STAGE_ORDER], kind="stable")
    deal_stages[c.ENTERED_AT] = ts(deal_stages[c.ENTERED_AT].to_numpy()).to_numpy()
    outcomes = pd.DataFrame({
        c.DEAL_ID: np.concatenate([r[0] for r in outcome_rows]),
        c.OUTCOME: np.concatenate([r[1] for r in outcome_rows]),
        c.OCCURRED_AT: np.concatenate([r[2] for r in outcome_rows]),
        c.CONTACT_ID: np.concatenate([r[3] for r in outcome_rows]),
    }).sort_values([c.OCCURRED_AT, c.DEAL_ID, c.OUTCOME], kind="stable")
    outcomes[c.OCCURRED_AT] = ts(outcomes[c.OCCURRED_AT].to_numpy()).to_numpy()

    tables = {
        c.ACTIVITIES: activities, c.RESPONSES: responses, c.DEAL_STAGES: deal_stages,
        c.OUTCOMES: outcomes, c.DEALS: deals, c.CONTACTS: contacts, c.ACCOUNTS: accounts, c.REPS: reps_frame,
    }
    tables = {name: coerce_table(name, frame) for name, frame in tables.items()}

    # --- ground truth ------------------------------------------------------------------------------
    ground_truth = pd.DataFrame({
        c.ACTIVITY_ID: act_ids,
        c.DEAL_ID: deal_ids[acts["deal"]],
        "p_outcome": acts["p_outcome"],
        "p_output": acts["p_output"],
        "p_negative": acts["p_negative"],
        "p_outcome_label": labels["p_outcome_label"][written],
        "p_outcome_label_ex_ante": ex_ante[written],
        "triggered_advance": acts["triggered"].astype(bool),
        "advance_lands_at": ts(acts["land_time"]).astype(c.TIMESTAMP_DTYPE),
        "output": acts["output"].astype(bool),
        "negative": acts["negative"].astype(bool),
        "label_outcome": labels["outcome"][written],
        "label_output": labels["output"][written],
        "label_negative": labels["negative"][written],
        c.STAGE_ORDER: acts["stage"].astype(np.int64),
        "days_in_stage": acts["days_in_stage"],
        "touches_contact_7d": np.minimum(acts["touches"], tr.TOUCH_CAP).astype(np.int64),
        "outputs_contact_30d": np.minimum(acts["outputs"], tr.OUTPUT_CAP).astype(np.int64),
        "negatives_contact_30d": np.minimum(acts["negatives"], tr.NEGATIVE_CAP).astype(np.int64),
        "quality": deal_quality[acts["deal"]],
        "rep_skill": reps.skill[deal_rep[acts["deal"]]],
    })
    deals_truth = pd.DataFrame({
        c.DEAL_ID: deal_ids,
        "quality": deal_quality,
        "rep_skill": reps.skill[deal_rep],
        "n_activities": np.bincount(acts["deal"], minlength=len(deal_ids)),
        "n_advances": np.bincount(deal_new[ev_deal[kept[ev_deal]]], minlength=len(deal_ids)),
        "status": np.array(["open", "won", "lost"])[deal_status],
    })
    reps_truth = pd.DataFrame({
        c.REP_ID: rep_ids,
        "skill": reps.skill,
        "volume": reps.volume,
        "automation": reps.automation,
        "personalization": reps.personalization,
    })
    meta = {
        "format_version": FORMAT_VERSION,
        "generator": "activity-scorer simulate",
        "seed": config.seed,
        "n_activities_requested": config.n_activities,
        "n_activities": int(n),
        "start": str(start.date()),
        "end": str((start + pd.Timedelta(days=beh.days)).date()),
        "days": beh.days,
        "warmup_days": beh.warmup_days,
        "files": {
            "activities": GROUND_TRUTH_FILE,
            "deals": GROUND_TRUTH_DEALS_FILE,
            "reps": GROUND_TRUTH_REPS_FILE,
        },
        "truth_params": truth.to_dict(),
        "behaviour_params": beh.to_dict(),
    }
    return Simulation(tables, ground_truth, deals_truth, reps_truth, meta)


def _titles(seniority: np.ndarray, department: np.ndarray) -> np.ndarray:
    sen = np.array(tr.SENIORITIES)[seniority]
    label = np.array([TITLE_DEPARTMENT[d] for d in tr.DEPARTMENTS])[department]
    chief = np.array([C_LEVEL_TITLE.get(d, "Chief Officer") for d in tr.DEPARTMENTS])[department]
    return np.select(
        [sen == "c_level", sen == "vp", sen == "director", sen == "manager", sen == "individual_contributor"],
        [chief, np.char.add("VP ", label), np.char.add("Director of ", label), np.char.add(label, " Manager"),
         np.char.add(label, " Specialist")],
        "Team Member",
    ).astype(object)


def _triggering_activity(acts: dict, ev_deal: np.ndarray, ev_time: np.ndarray) -> np.ndarray:
    """For each applied event, the triggered activity whose advance landed at that time."""
    trig = np.flatnonzero(acts["triggered"].astype(bool))
    key_trig = acts["deal"][trig] * (1 << 40) + acts["land_time"][trig]
    order = np.argsort(key_trig, kind="stable")
    key_sorted = key_trig[order]
    pos = np.searchsorted(key_sorted, ev_deal * (1 << 40) + ev_time)
    return trig[order[np.minimum(pos, len(order) - 1)]] if len(order) else np.zeros(len(ev_deal), dtype=np.int64)


def _labels(acts: dict, ev_deal: np.ndarray, ev_time: np.ndarray, end_sec: int) -> dict:
    """Contract labels from the realized events, and the label probability given the schedule."""
    big = 1 << 40
    t = acts["time"]
    d = acts["deal"]
    horizon = c.OUTCOME_HORIZON_DAYS * en.DAY
    ev_key = np.sort(ev_deal * big + ev_time)
    hits = np.searchsorted(ev_key, d * big + t + horizon, side="right") - np.searchsorted(ev_key, d * big + t, side="right")
    outcome = np.where(t + horizon > end_sec, np.nan, (hits > 0).astype(float))
    out_h = c.OUTPUT_HORIZON_DAYS * en.DAY
    censored_out = t + out_h > end_sec
    output = np.where(censored_out, np.nan, acts["output"].astype(float))
    negative = np.where(censored_out, np.nan, acts["negative"].astype(float))

    # P(label = 1 | the realized schedule): every activity j of the deal whose pre-drawn
    # advance would land in (t, t + 14 days] fires independently with its p_outcome.
    land_key = d * big + acts["land_time"]
    order = np.argsort(land_key, kind="stable")
    sorted_key = land_key[order]
    log_miss = np.concatenate([[0.0], np.cumsum(np.log1p(-np.minimum(acts["p_outcome"][order], 1 - 1e-12)))])
    lo = np.searchsorted(sorted_key, d * big + t, side="right")
    hi = np.searchsorted(sorted_key, d * big + t + horizon, side="right")
    p_label = 1.0 - np.exp(log_miss[hi] - log_miss[lo])
    return {"outcome": outcome, "output": output, "negative": negative, "p_outcome_label": p_label}


def _post_process(rng: np.random.Generator, acts: dict, reps: en.Reps, deal_rep: np.ndarray,
                  beh: BehaviourParams, end_sec: int) -> dict:
    """What does not feed back into the simulation: durations, logging, templates, response rows."""
    n = len(acts["time"])
    type_code = acts["type"]
    t = acts["time"]
    auto = acts["automated"].astype(bool)
    output = acts["output"].astype(bool)
    negative = acts["negative"].astype(bool)
    u = rng.random((n, 8))
    code = tr.TYPE_CODE

    # duration: a connected call is a conversation, otherwise a voicemail
    duration = np.full(n, np.nan)
    call = type_code == code["call"]
    duration[call] = np.where(output[call], 90 + np.exp(rng.normal(5.7, 0.6, call.sum())), 10 + 50 * u[call, 0])
    for name, lo, hi in (("meeting", 1500, 3600), ("demo", 2400, 5400), ("workshop", 5400, 14400)):
        m = type_code == code[name]
        duration[m] = lo + (hi - lo) * u[m, 0]
    duration = np.round(duration)

    # logging: automation logs itself; people log minutes later, sometimes days later
    live_or_call = np.isin(type_code, [code[x] for x in ("call", "meeting", "demo", "workshop")])
    lag = np.where(live_or_call, np.nan_to_num(duration) + -np.log1p(-u[:, 1]) * 40 * 60,
                   -np.log1p(-u[:, 1]) * 15 * 60)
    lag = np.where(auto, 5 * u[:, 1], lag)
    late = ~auto & (u[:, 2] < beh.late_log_share)
    lag = np.where(late, (1 + 9 * u[:, 3]) * en.DAY, lag)
    logged = np.minimum(t + lag.astype(np.int64) + 1, end_sec - 1)

    # templates: automated sequences and near-mass written work
    written = np.isin(type_code, [code[x] for x in ("email", "inmail", "social")])
    pers = acts["personalization"]
    templated = written & (auto | (np.nan_to_num(pers, nan=1.0) < 0.25))
    number = reps.templates[deal_rep[acts["deal"]]] + np.where(
        auto, (acts["seq_step"] - 1) % 4, (u[:, 4] * 4).astype(np.int64))
    template = np.where(templated, np.char.add("tpl-", np.char.zfill(number.astype(str), 2)), None)

    # response rows
    resp_act, resp_name, resp_time = [], [], []

    def add(mask, names, when):
        idx = np.flatnonzero(mask)
        resp_act.append(idx)
        resp_name.append(np.broadcast_to(np.asarray(names, dtype=object), idx.shape) if np.ndim(names) == 0
                         else np.asarray(names, dtype=object)[idx])
        resp_time.append(np.asarray(when)[idx] if np.ndim(when) else np.full(len(idx), when))

    response_time = acts["response_time"]
    out_name = np.empty(n, dtype=object)
    for name, (names, probs) in OUTPUT_NAMES.items():
        m = type_code == code[name]
        cum = np.cumsum(probs)
        out_name[m] = np.array(names, dtype=object)[np.minimum((u[m, 5][:, None] >= cum).sum(1), len(names) - 1)]
    add(output, out_name, response_time)
    neg_name = np.where(written & (u[:, 5] < np.where(auto, 0.6, 0.2)), "unsubscribed", "negative_reply")
    add(negative, neg_name.astype(object), response_time)
    emailish = np.isin(type_code, [code["email"], code["inmail"]])
    bounced = emailish & ~output & ~negative & (u[:, 6] < np.where(auto, 0.04, 0.012))
    add(bounced, "bounced", t + 30)
    opened = emailish & ~bounced & (u[:, 7] < beh.open_rate + 0.05 * output)
    open_time = t + (-np.log1p(-u[:, 4]) * 3 * en.HOUR).astype(np.int64) + 5
    add(opened, "opened", open_time)
    clicked = opened & (u[:, 3] < beh.click_rate)
    add(clicked, "clicked", open_time + 40)
    meetingish = np.isin(type_code, [code["meeting"], code["demo"], code["workshop"]])
    no_show = meetingish & ~output & ~negative & ~acts["triggered"].astype(bool) & (u[:, 6] < 0.04)
    add(no_show, "no_show", t + 600)

    resp_act = np.concatenate(resp_act)
    resp_name = np.concatenate(resp_name)
    resp_time = np.concatenate(resp_time).astype(np.int64)
    keep = resp_time < end_sec  # the extract ends: later responses have not happened yet
    resp_act, resp_name, resp_time = resp_act[keep], resp_name[keep], resp_time[keep]
    order = np.lexsort((resp_name.astype(str), resp_act, resp_time))
    return {
        "duration": duration,
        "logged": logged,
        "template": template,
        "resp_act": resp_act[order],
        "resp_name": resp_name[order],
        "resp_time": resp_time[order],
    }


def write_simulation(sim: Simulation, out: Path, fmt: str = "parquet") -> list[Path]:
    """Write the contract tables and the ground-truth files into ``out``."""
    out = Path(out)
    written = write_dataset(sim.tables, out, fmt)
    for frame, name in ((sim.ground_truth, GROUND_TRUTH_FILE), (sim.deals_truth, GROUND_TRUTH_DEALS_FILE),
                        (sim.reps_truth, GROUND_TRUTH_REPS_FILE)):
        path = out / name
        frame.to_parquet(path, index=False)
        written.append(path)
    meta_path = out / GROUND_TRUTH_META_FILE
    meta_path.write_text(json.dumps(sim.meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written.append(meta_path)
    return written
