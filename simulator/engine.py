"""The generative process: entities first, then a day-by-day simulation vectorized across deals.

Deals are independent given the reps, so the simulation steps through the days and handles
every open deal of a chunk at once with numpy (:class:`World` holds the state). Within a day
the activities of each contact are processed in rounds (first touch of the day, second touch,
...), so that fatigue and recent replies are exact for the second email of the same
afternoon. Times are integer seconds from the start date; the extract ends at
``(warmup_days + days) * 86400``; the written history starts at ``warmup_days * 86400``.

One day, for every open deal:

1. advances triggered by earlier activities land in the morning update window (05:00-08:00
   UTC): outcome rows and/or a stage move, following :data:`PROGRESS_SCRIPT`
   (:func:`step_landings`);
2. a deal may be lost; the hazard rises as it goes cold (:func:`step_losses`);
3. reps and sequences create activities (08:00-22:00) and each one's meaningful output,
   negative output and advance are drawn from :func:`simulator.truth.true_probabilities`;
   the advance lands the next morning (:func:`step_activities`; ``advance_delay_probs``).

Because advances land before the working day starts, every activity of a deal on one day has
the same outcome label, and the deal state an activity sees is that of the morning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features import contract as c
from simulator import truth as tr
from simulator.params import BehaviourParams, OracleSettings
from simulator.truth import TruthParams

DAY = 86_400
HOUR = 3_600
NO_EVENT = np.iinfo(np.int64).max
EMPTY = -(10**15)  # ring-buffer filler: far before any window
RESPONSE_DELAY_MAX_DAYS = 6  # every response arrives within the 7-day output horizon

OPEN, WON, LOST = 0, 1, 2

# The progress events a deal goes through, in order: (stage after the event, rows written).
# Each row is ("stage", name, order) or ("outcome", name). The outcome of events 1 and 2 is
# workshop_sponsored instead when a workshop triggered it.
PROGRESS_SCRIPT: tuple[tuple[int, tuple[tuple, ...]], ...] = (
    (2, (("outcome", "goals_agreed"), ("stage", "qualification", 2))),
    (2, (("outcome", "champion_confirmed"),)),
    (3, (("stage", "solution", 3), ("outcome", "decision_plan_agreed"))),
    (4, (("stage", "proposal", 4),)),
    (5, (("stage", "negotiation", 5), ("outcome", "proposal_accepted"))),
    (6, (("stage", "closed_won", 6), ("outcome", "closed_won"))),
)
WORKSHOP_EVENTS = (1, 2)
N_EVENTS = len(PROGRESS_SCRIPT)
STAGE_AFTER = np.array([1] + [s for s, _ in PROGRESS_SCRIPT], dtype=np.int8)  # by events applied
FIRST_STAGE = ("discovery", 1)
CLOSED_LOST = ("closed_lost", 0)

TOUCH_RING = tr.TOUCH_CAP + 2
OUTPUT_RING = 2 * tr.OUTPUT_CAP
NEGATIVE_RING = 2 * tr.NEGATIVE_CAP

TEAMS = ("smb", "mid_market", "enterprise")
TEAM_SHARE = (0.4, 0.35, 0.25)
INDUSTRIES = ("software", "manufacturing", "financial_services", "healthcare", "retail",
              "logistics", "energy", "public_sector")
REGIONS = ("NA", "EMEA", "APAC", "LATAM")
PRODUCTS = ("core", "analytics", "platform")
LEAD_SOURCES = ("outbound", "inbound", "partner", "event")
LEAD_SOURCE_SHARE = (0.5, 0.2, 0.15, 0.15)
LEAD_SOURCE_QUALITY = (-0.25, 0.5, 0.35, 0.0)  # lead source partly reveals latent quality
SENIORITY_SHARE = (0.07, 0.12, 0.20, 0.27, 0.27, 0.07)
MAX_CONTACTS = 12


@dataclass
class Reps:
    """The sales team (shared by every chunk)."""

    team: np.ndarray  # index into TEAMS
    hired_sec: np.ndarray  # seconds from start (negative: before)
    skill: np.ndarray  # latent, logit units
    volume: np.ndarray  # multiplier on hand-made activity
    automation: np.ndarray  # multiplier on automated sequences
    personalization: np.ndarray  # mean personalization of hand-made work
    templates: np.ndarray  # first template number the rep uses (of 4 consecutive)

    def __len__(self) -> int:
        return len(self.team)


@dataclass
class Chunk:
    """Accounts, their contacts and deals, and everything simulated on them."""

    # accounts
    acc_team: np.ndarray
    acc_industry: np.ndarray
    acc_region: np.ndarray
    acc_employees: np.ndarray
    acc_tier: np.ndarray
    acc_first_contact: np.ndarray
    acc_n_contacts: np.ndarray
    # contacts
    con_account: np.ndarray
    con_seniority: np.ndarray
    con_department: np.ndarray
    con_tenure_months: np.ndarray
    # deals
    deal_account: np.ndarray
    deal_rep: np.ndarray
    deal_created_sec: np.ndarray
    deal_quality: np.ndarray
    deal_amount: np.ndarray
    deal_product: np.ndarray
    deal_source: np.ndarray
    deal_primary: np.ndarray
    # filled by the simulation
    deal_status: np.ndarray | None = None
    deal_closed_sec: np.ndarray | None = None
    events: dict | None = None  # deal, index, time (seconds) of every progress event applied
    losses: dict | None = None  # deal, time
    acts: dict | None = None  # one array per activity attribute
    oracle: dict | None = None  # act (index into acts), p: the sampled activities (see Rollouts)


def make_reps(rng: np.random.Generator, n_reps: int, beh: BehaviourParams | None = None) -> Reps:
    """The sales team; ``beh`` sets the rep-style mechanisms of a world (default: today's team)."""
    beh = beh or BehaviourParams()
    counts = np.maximum(1, np.floor(np.array(TEAM_SHARE) * n_reps).astype(int))
    counts[0] += n_reps - counts.sum()
    team = np.repeat(np.arange(len(TEAMS)), counts)
    tenure_days = rng.uniform(60, 3000, n_reps)
    # Skill grows a little with tenure (observable) but mostly differs between people. Centred,
    # and the other traits drawn around their means, so that a small team's rates stay typical.
    skill = 0.12 * np.log(tenure_days / 700) + rng.normal(0, 0.3, n_reps)
    skill -= skill.mean()

    def spread(sd: float) -> np.ndarray:
        x = rng.normal(0, sd, n_reps)
        return x - x.mean()

    volume = np.exp(spread(beh.rep_volume_sd))
    automation = np.exp(spread(0.3) - 1.0 * skill)
    if beh.automation_volume_elasticity:
        # rep style: busier reps lean on sequences (their automated share rises with volume)
        automation = automation * volume ** beh.automation_volume_elasticity
    return Reps(
        team=team,
        hired_sec=-(tenure_days * DAY).astype(np.int64),
        skill=skill,
        volume=volume,
        automation=automation,
        personalization=1 / (1 + np.exp(-(0.2 + 2.0 * skill + spread(0.3)))),
        templates=rng.integers(0, 20, n_reps),
    )


def make_chunk(rng: np.random.Generator, n_accounts: int, reps: Reps, beh: BehaviourParams) -> Chunk:
    """Accounts, contacts and deals of one chunk (no activity yet)."""
    # accounts
    team = rng.choice(len(TEAMS), size=n_accounts, p=TEAM_SHARE)
    lo, hi = np.array([10, 200, 2000]), np.array([200, 2000, 100_000])
    employees = np.exp(rng.uniform(np.log(lo[team]), np.log(hi[team]))).astype(np.int64)
    tier_draw = rng.random(n_accounts)
    tier = np.where(team == 2, np.where(tier_draw < 0.4, 0, 1), np.where((team == 1) & (tier_draw < 0.3), 1, 2))
    n_contacts = np.minimum(MAX_CONTACTS, 2 + team + rng.poisson(2 + team))
    first_contact = np.concatenate([[0], np.cumsum(n_contacts)[:-1]])
    industry = rng.integers(0, len(INDUSTRIES), n_accounts)
    region = rng.choice(len(REGIONS), size=n_accounts, p=(0.45, 0.3, 0.17, 0.08))

    # contacts
    n_c = int(n_contacts.sum())
    con_account = np.repeat(np.arange(n_accounts), n_contacts)
    seniority = rng.choice(len(tr.SENIORITIES), size=n_c, p=SENIORITY_SHARE)
    dep_exec = rng.choice(
        [tr.DEPARTMENT_CODE[d] for d in ("executive", "finance", "it", "sales", "operations")],
        size=n_c, p=(0.6, 0.15, 0.1, 0.05, 0.1))
    dep_other = rng.choice(
        [tr.DEPARTMENT_CODE[d] for d in ("sales", "marketing", "it", "finance", "operations", "hr", "procurement")],
        size=n_c, p=(0.16, 0.14, 0.2, 0.14, 0.18, 0.08, 0.10))
    department = np.where(seniority == tr.SENIORITY_CODE["c_level"], dep_exec, dep_other)
    tenure_months = rng.integers(1, 180, n_c)

    # deals: one per account, a second for some
    n_deals_acc = 1 + (rng.random(n_accounts) < beh.second_deal_share)
    deal_account = np.repeat(np.arange(n_accounts), n_deals_acc)
    n_d = len(deal_account)
    created_day = rng.integers(0, beh.warmup_days + beh.days - 21, n_d)
    created_sec = created_day * DAY + rng.integers(9 * HOUR, 17 * HOUR, n_d)
    source = rng.choice(len(LEAD_SOURCES), size=n_d, p=LEAD_SOURCE_SHARE)
    quality = np.array(LEAD_SOURCE_QUALITY)[source] + rng.normal(0, 1, n_d)
    product = rng.integers(0, len(PRODUCTS), n_d)
    base = np.array([9_000, 35_000, 140_000])[team[deal_account]]
    amount = np.round(base * np.array([1.0, 0.7, 1.6])[product]
                      * np.exp(0.35 * quality + rng.normal(0, 0.4, n_d)), -2)
    # owner: a rep of the account's team
    rep_team = reps.team
    owner = np.empty(n_d, dtype=np.int64)
    draw = rng.random(n_d)
    for t in range(len(TEAMS)):
        pool = np.flatnonzero(rep_team == t)
        if len(pool) == 0:
            pool = np.arange(len(reps))
        m = team[deal_account] == t
        owner[m] = pool[np.minimum((draw[m] * len(pool)).astype(np.int64), len(pool) - 1)]
    # primary contact: the person the rep works through, most often a manager or director
    pref = np.array([0.5, 1.0, 2.0, 2.0, 1.0, 0.3])
    w = pref[seniority]
    g = rng.gumbel(size=(n_d, MAX_CONTACTS))
    slots = np.arange(MAX_CONTACTS)
    acc = deal_account
    valid = slots[None, :] < n_contacts[acc][:, None]
    idx = np.minimum(first_contact[acc][:, None] + slots[None, :], n_c - 1)
    score = np.where(valid, np.log(w[idx]) + g, -np.inf)
    primary = idx[np.arange(n_d), score.argmax(1)]

    return Chunk(
        acc_team=team, acc_industry=industry, acc_region=region, acc_employees=employees,
        acc_tier=tier, acc_first_contact=first_contact, acc_n_contacts=n_contacts,
        con_account=con_account, con_seniority=seniority, con_department=department,
        con_tenure_months=tenure_months,
        deal_account=deal_account, deal_rep=owner, deal_created_sec=created_sec, deal_quality=quality,
        deal_amount=amount, deal_product=product, deal_source=source, deal_primary=primary,
    )


def _cumulative(mix) -> np.ndarray:
    m = np.asarray(mix, dtype=float)
    m = m / m.sum(axis=-1, keepdims=True)
    cum = np.cumsum(m, axis=-1)
    cum[..., -1] = 1.0 + 1e-9
    return cum


def _pick(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF choice per row: ``cum`` is [k] or [rows, k], ``u`` is [rows]."""
    return (u[:, None] >= cum).sum(axis=1)


def _count_in(ring: np.ndarray, t: np.ndarray, window: int) -> np.ndarray:
    """Per row, ring entries with time in ``[t - window, t)``."""
    lo = (t - window)[:, None]
    return ((ring >= lo) & (ring < t[:, None])).sum(axis=1)


def _push(ring: np.ndarray, ptr: np.ndarray, who: np.ndarray, when: np.ndarray) -> None:
    """Append one time per row to each (distinct) contact's ring."""
    if len(who):
        ring[who, ptr[who] % ring.shape[1]] = when
        ptr[who] += 1


def _ranges(first: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(first[i], first[i] + count[i])`` over i."""
    total = int(count.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(first - np.concatenate([[0], np.cumsum(count)[:-1]]), count)
    return starts + np.arange(total)


DEAL_FIELDS = ("rep", "quality", "skill", "manual_base", "auto_base", "pers_mean", "created_day", "not_before", "status", "prog", "stage",
               "stage_entered", "last_progress", "closed_sec", "pad", "pad_valid", "pad_seniority", "pad_primary")
CONTACT_FIELDS = ("con_seniority", "con_department", "touch_ring", "output_ring", "negative_ring", "touch_ptr",
                  "output_ptr", "negative_ptr", "automated_sent")


@dataclass
class World:
    """The mutable state of a set of deals and the contacts they reach, stepped one day at a time.

    The main simulation has one world per chunk; the ex-ante oracle steps copies of accounts in a
    second world where advances never land. ``pad`` holds each deal's contacts (indices into this
    world's contact arrays, ``pad_valid`` marks real slots).
    """

    rep: np.ndarray
    quality: np.ndarray
    skill: np.ndarray
    manual_base: np.ndarray
    auto_base: np.ndarray
    pers_mean: np.ndarray
    created_day: np.ndarray
    not_before: np.ndarray  # activities only after this time (seconds); used by the oracle's copies
    status: np.ndarray
    prog: np.ndarray
    stage: np.ndarray
    stage_entered: np.ndarray
    last_progress: np.ndarray
    closed_sec: np.ndarray
    pad: np.ndarray
    pad_valid: np.ndarray
    pad_seniority: np.ndarray
    pad_primary: np.ndarray
    con_seniority: np.ndarray
    con_department: np.ndarray
    touch_ring: np.ndarray
    output_ring: np.ndarray
    negative_ring: np.ndarray
    touch_ptr: np.ndarray
    output_ptr: np.ndarray
    negative_ptr: np.ndarray
    automated_sent: np.ndarray

    @property
    def n_deals(self) -> int:
        return len(self.rep)

    @property
    def n_contacts(self) -> int:
        return len(self.con_seniority)

    @classmethod
    def from_chunk(cls, chunk: Chunk, reps: Reps, beh: BehaviourParams) -> World:
        n_c = len(chunk.con_account)
        rep = chunk.deal_rep
        q = chunk.deal_quality
        slots = np.arange(MAX_CONTACTS)
        acc = chunk.deal_account
        pad_valid = slots[None, :] < chunk.acc_n_contacts[acc][:, None]
        pad = np.minimum(chunk.acc_first_contact[acc][:, None] + slots[None, :], max(n_c - 1, 0))
        n_d = len(acc)
        auto_base = beh.automated_rate * reps.automation[rep]
        if beh.automated_quality:
            auto_base = auto_base * np.exp(beh.automated_quality * q)
        return cls(
            rep=rep, quality=q, skill=reps.skill[rep],
            manual_base=beh.manual_rate * reps.volume[rep] * np.exp(beh.quality_intensity * q),
            auto_base=auto_base,
            pers_mean=reps.personalization[rep],
            created_day=chunk.deal_created_sec // DAY,
            not_before=np.full(n_d, -1, dtype=np.int64),
            status=np.zeros(n_d, dtype=np.int8), prog=np.zeros(n_d, dtype=np.int8),
            stage=np.ones(n_d, dtype=np.int8), stage_entered=chunk.deal_created_sec.copy(),
            last_progress=chunk.deal_created_sec.copy(), closed_sec=np.full(n_d, -1, dtype=np.int64),
            pad=pad, pad_valid=pad_valid, pad_seniority=chunk.con_seniority[pad],
            pad_primary=pad == chunk.deal_primary[:, None],
            con_seniority=chunk.con_seniority, con_department=chunk.con_department,
            touch_ring=np.full((n_c, TOUCH_RING), EMPTY, dtype=np.int64),
            output_ring=np.full((n_c, OUTPUT_RING), EMPTY, dtype=np.int64),
            negative_ring=np.full((n_c, NEGATIVE_RING), EMPTY, dtype=np.int64),
            touch_ptr=np.zeros(n_c, dtype=np.int64), output_ptr=np.zeros(n_c, dtype=np.int64),
            negative_ptr=np.zeros(n_c, dtype=np.int64), automated_sent=np.zeros(n_c, dtype=np.int64),
        )

    def take(self, deals: np.ndarray, contacts: np.ndarray, pad: np.ndarray) -> World:
        """A copy holding ``deals`` and ``contacts`` (indices into self); ``pad`` is already remapped."""
        values = {f: getattr(self, f)[deals] for f in DEAL_FIELDS}
        values.update({f: getattr(self, f)[contacts] for f in CONTACT_FIELDS})
        values["pad"] = pad
        return World(**values)

    def drop_first(self, n_deals: int, n_contacts: int) -> World:
        values = {f: getattr(self, f)[n_deals:] for f in DEAL_FIELDS}
        values.update({f: getattr(self, f)[n_contacts:] for f in CONTACT_FIELDS})
        values["pad"] = values["pad"] - n_contacts
        return World(**values)

    @staticmethod
    def concat(a: World, b: World) -> World:
        values = {f: np.concatenate([getattr(a, f), getattr(b, f)]) for f in DEAL_FIELDS + CONTACT_FIELDS}
        values["pad"] = np.concatenate([a.pad, b.pad + a.n_contacts])
        return World(**values)


@dataclass(frozen=True)
class _Constants:
    """Behaviour tables in array form, built once per chunk."""

    stage_intensity: np.ndarray
    automated_stage: np.ndarray
    cum_manual: np.ndarray
    cum_auto: np.ndarray
    log_pref: np.ndarray
    delay_cum: np.ndarray  # over 0, 1, 2, ... days (0: the same evening)
    inbound_types: np.ndarray
    live: np.ndarray
    manual_mix: np.ndarray  # [stage, type], rows summing to 1
    type_quality: np.ndarray | None  # [type] log-weight per unit of quality; None: no tilt

    @classmethod
    def build(cls, beh: BehaviourParams) -> _Constants:
        codes = np.arange(len(tr.TYPES))
        mix = np.asarray(beh.manual_type_mix, dtype=float)
        return cls(
            stage_intensity=np.array(beh.stage_intensity),
            automated_stage=np.array(beh.automated_stage),
            cum_manual=_cumulative(beh.manual_type_mix),
            cum_auto=_cumulative(beh.automated_type_mix),
            log_pref=np.log(np.array(beh.contact_preference)),
            delay_cum=_cumulative(beh.delay_pmf()),
            inbound_types=np.isin(codes, [tr.TYPE_CODE[t] for t in ("call", "email", "meeting")]),
            live=np.isin(codes, [tr.TYPE_CODE[t] for t in tr.LIVE_TYPES]),
            manual_mix=mix / mix.sum(axis=-1, keepdims=True),
            type_quality=(np.array(beh.manual_type_quality, dtype=float)
                          if any(beh.manual_type_quality) else None),
        )


def step_landings(w: World, day: int, first_event: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Apply the advances landing today (open deals only); returns (deals, event index, time)."""
    return apply_events(w, first_event[day])


def apply_events(w: World, ev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Apply one progress event per deal at time ``ev[deal]`` (NO_EVENT: none; open deals only)."""
    hit = np.flatnonzero((ev != NO_EVENT) & (w.status == OPEN))
    if not len(hit):
        return None
    t_ev = ev[hit]
    index = w.prog[hit].astype(np.int64)
    w.prog[hit] += 1
    new_stage = STAGE_AFTER[w.prog[hit]]
    moved = new_stage != w.stage[hit]
    w.stage_entered[hit[moved]] = t_ev[moved]
    w.stage[hit] = new_stage
    w.last_progress[hit] = t_ev
    won = w.prog[hit] == N_EVENTS
    w.status[hit[won]] = WON
    w.closed_sec[hit[won]] = t_ev[won]
    return hit, index, t_ev


def step_losses(w: World, day: int, rng: np.random.Generator, beh: BehaviourParams) -> np.ndarray:
    """Lose open deals at random, more as they go cold and the less promising they are."""
    elig = np.flatnonzero((w.status == OPEN) & (w.created_day < day))
    if not len(elig):
        return elig
    cold_days = (day * DAY - w.last_progress[elig]) / DAY
    z = (cold_days - beh.loss_cold_midpoint_days) / beh.loss_cold_scale_days
    hazard = (beh.loss_base + beh.loss_cold / (1 + np.exp(-z))) * np.exp(beh.loss_quality * w.quality[elig])
    hazard = np.where(day - w.created_day[elig] > beh.loss_max_age_days, 0.2, hazard)
    lost = elig[rng.random(len(elig)) < hazard]
    if len(lost):
        lo, hi = (int(h * HOUR) for h in beh.update_window_hours)
        w.status[lost] = LOST
        w.closed_sec[lost] = day * DAY + rng.integers(lo, hi, len(lost))
    return lost


def step_activities(
    w: World, day: int, weekday: int, rng: np.random.Generator, truth: TruthParams, beh: BehaviourParams,
    k: _Constants,
) -> dict[str, np.ndarray] | None:
    """Create one day of activities on the open deals of ``w`` and draw what each produces.

    Updates the contact rings (touches, outputs, negatives); scheduling the advances is left to
    the caller. Returns one array per activity attribute, or None when nothing happened.
    """
    day0 = day * DAY
    weekend = weekday >= 5
    active = np.flatnonzero((w.status == OPEN) & (w.created_day < day))
    if not len(active):
        return None
    s_ix = w.stage[active] - 1
    cold_days = (day0 - w.last_progress[active]) / DAY
    cold = beh.cold_floor + (1 - beh.cold_floor) * np.exp(-np.log(2) * cold_days / beh.cold_halflife_days)
    lam_m = w.manual_base[active] * k.stage_intensity[s_ix] * cold * (beh.weekend_manual if weekend else 1.0)
    lam_a = w.auto_base[active] * k.automated_stage[s_ix] * (beh.weekend_automated if weekend else 1.0)
    n_m = rng.poisson(lam_m)
    n_a = rng.poisson(lam_a)
    deal = np.concatenate([np.repeat(active, n_m), np.repeat(active, n_a)])
    m = len(deal)
    if not m:
        return None
    auto = np.zeros(m, dtype=bool)
    auto[n_m.sum():] = True
    st = w.stage[deal].astype(np.int64)
    u = rng.random((m, 8))
    q = w.quality[deal]

    if k.type_quality is None:
        manual_type = _pick(k.cum_manual[st - 1], u[:, 0])
    else:  # the hand-made type mix tilts with the deal's latent quality (a world's mechanism)
        weight = k.manual_mix[st - 1] * np.exp(k.type_quality[None, :] * q[:, None])
        manual_type = _pick(_cumulative(weight), u[:, 0])
    type_code = np.where(auto, _pick(k.cum_auto, u[:, 0]), manual_type)
    # whom: stage-dependent preference plus the primary contact (automation: anyone)
    lw = np.where(auto[:, None], 0.0, k.log_pref[st - 1][np.arange(m)[:, None], w.pad_seniority[deal]]
                  + np.log(beh.primary_contact_weight) * w.pad_primary[deal])
    lw = np.where(w.pad_valid[deal], lw + rng.gumbel(size=(m, MAX_CONTACTS)), -np.inf)
    contact = w.pad[deal, lw.argmax(axis=1)]
    inbound = ~auto & k.inbound_types[type_code] & (u[:, 1] < beh.inbound_share * np.exp(0.5 * q))
    # how tailored: the rep's habit (better for live work), near zero for automation
    mean = np.clip(w.pers_mean[deal] + 0.15 * k.live[type_code], 0.02, 0.95)
    conc = beh.personalization_concentration
    pers = np.where(auto, rng.beta(*beh.automated_personalization, size=m), rng.beta(mean * conc, (1 - mean) * conc))
    pers = np.where(type_code == tr.NONE_CODE, np.nan, np.round(pers, 2))
    work_lo, work_hi = beh.working_hours
    # hand-made work peaks around midday; a draw outside working hours is redrawn uniformly
    hand = rng.normal(12.5, 2.6, m)
    hand = np.where((hand < work_lo) | (hand >= work_hi), work_lo + u[:, 2] * (work_hi - work_lo), hand)
    hour = np.where(auto, work_lo + u[:, 2] * (work_hi - work_lo), hand)
    time = day0 + (hour * HOUR).astype(np.int64)
    later = time > w.not_before[deal]
    if not later.all():  # an oracle copy continues a day from a given moment
        deal, contact, time, type_code, auto, inbound, pers, st, u = (
            a[later] for a in (deal, contact, time, type_code, auto, inbound, pers, st, u))
        m = len(deal)
        if not m:
            return None

    # order by contact and time; a contact's k-th activity of the day goes in round k
    order = np.lexsort((time, contact))
    deal, contact, time, type_code, auto, inbound, pers, st, u = (
        a[order] for a in (deal, contact, time, type_code, auto, inbound, pers, st, u))
    same = np.concatenate([[False], contact[1:] == contact[:-1]])
    while True:  # no two touches of one contact in the same second
        clash = same & np.concatenate([[False], time[1:] <= time[:-1]])
        if not clash.any():
            break
        time[clash] = time[np.flatnonzero(clash) - 1] + 1
    group_start = np.flatnonzero(~same)
    rank = np.arange(m) - np.repeat(group_start, np.diff(np.append(group_start, m)))
    is_none = type_code == tr.NONE_CODE

    # pre-drawn delays: an advance lands 0, 1, 2, ... days later (the next morning by default);
    # the same day means the evening window, after every activity of the day
    win_lo, win_hi = (int(h * HOUR) for h in beh.update_window_hours)
    land_day = day + _pick(k.delay_cum, u[:, 3])
    land_time = land_day * DAY + win_lo + (u[:, 4] * (win_hi - win_lo)).astype(np.int64)
    same_day = land_day == day
    if same_day.any():
        eve_lo, eve_hi = (int(h * HOUR) for h in beh.same_day_window_hours)
        evening = day0 + eve_lo + (u[:, 4] * (eve_hi - eve_lo)).astype(np.int64)
        land_time = np.where(same_day, np.maximum(evening, time + 60), land_time)
    response_delay = np.where(
        k.live[type_code], 60 + (u[:, 5] * 3 * HOUR).astype(np.int64),
        np.minimum((-np.log1p(-u[:, 5]) * 8 * HOUR).astype(np.int64) + 120, RESPONSE_DELAY_MAX_DAYS * DAY))

    touches = np.zeros(m, dtype=np.int64)
    outputs = np.zeros(m, dtype=np.int64)
    negatives = np.zeros(m, dtype=np.int64)
    seq = np.zeros(m, dtype=np.int64)
    p_out = np.zeros(m)
    p_op = np.zeros(m)
    p_neg = np.zeros(m)
    output = np.zeros(m, dtype=bool)
    negative = np.zeros(m, dtype=bool)
    hour_f = (time - day0) / HOUR
    for r in range(int(rank.max()) + 1):
        sel = np.flatnonzero(rank == r)
        c, t, d = contact[sel], time[sel], deal[sel]
        touches[sel] = _count_in(w.touch_ring[c], t, tr.TOUCH_WINDOW_DAYS * DAY)
        outputs[sel] = _count_in(w.output_ring[c], t, tr.RESPONSE_WINDOW_DAYS * DAY)
        negatives[sel] = _count_in(w.negative_ring[c], t, tr.RESPONSE_WINDOW_DAYS * DAY)
        probs = tr.true_probabilities(
            truth,
            type_code=type_code[sel], stage_order=st[sel], days_in_stage=(t - w.stage_entered[d]) / DAY,
            quality=w.quality[d], rep_skill=w.skill[d],
            seniority_code=w.con_seniority[c], department_code=w.con_department[c],
            personalization=pers[sel], is_automated=auto[sel], inbound=inbound[sel],
            touches_contact_7d=touches[sel], outputs_contact_30d=outputs[sel],
            negatives_contact_30d=negatives[sel], hour=hour_f[sel], weekday=weekday,
        )
        p_out[sel], p_op[sel], p_neg[sel] = probs
        uo = u[sel, 6]
        o = uo < probs.p_output
        n = ~o & (uo < probs.p_output + probs.p_negative)
        output[sel], negative[sel] = o, n
        a = auto[sel]
        seq[sel] = np.where(a, w.automated_sent[c] % 5 + 1, 0)
        w.automated_sent[c[a]] += 1
        touched = ~is_none[sel]
        _push(w.touch_ring, w.touch_ptr, c[touched], t[touched])
        rt = t + response_delay[sel]
        _push(w.output_ring, w.output_ptr, c[o], rt[o])
        _push(w.negative_ring, w.negative_ptr, c[n], rt[n])
    # the advance draw is independent of the response draws given the probabilities
    triggered = u[:, 7] < p_out
    return {
        "deal": deal, "contact": contact, "time": time, "type": type_code, "automated": auto,
        "personalization": pers, "inbound": inbound, "seq_step": seq, "stage": st,
        "days_in_stage": (time - w.stage_entered[deal]) / DAY, "touches": touches, "outputs": outputs,
        "negatives": negatives, "p_outcome": p_out, "p_output": p_op, "p_negative": p_neg,
        "output": output, "negative": negative, "triggered": triggered, "land_day": land_day,
        "land_time": land_time, "response_time": time + response_delay,
    }


def simulate_chunk(
    rng: np.random.Generator,
    chunk: Chunk,
    reps: Reps,
    truth: TruthParams,
    beh: BehaviourParams,
    start_weekday: int,
    oracle: OracleSettings | None = None,
    oracle_rng: np.random.Generator | None = None,
) -> Chunk:
    """Run the day-by-day simulation of one chunk; fills the chunk's activity and event arrays.

    With ``oracle``, a sample of activities also gets the ex-ante label probability from
    Monte-Carlo continuations (:class:`Rollouts`) that draw from their own random stream: the
    simulated data are the same with or without them.
    """
    days = beh.warmup_days + beh.days
    w = World.from_chunk(chunk, reps, beh)
    k = _Constants.build(beh)
    calendar = days + len(beh.delay_pmf()) + 2
    first_event = np.full((calendar, w.n_deals), NO_EVENT, dtype=np.int64)
    same_day = beh.delay_pmf()[0] > 0
    rollouts = None
    if oracle is not None and oracle.share > 0:
        rollouts = Rollouts(w, chunk, oracle, oracle_rng or np.random.default_rng(), truth, beh, k, calendar)

    ev_parts: dict[str, list] = {"deal": [], "index": [], "time": []}
    loss_parts: dict[str, list] = {"deal": [], "time": []}
    act_parts: dict[str, list] = {key: [] for key in ACTIVITY_FIELDS}
    n_acts = 0
    for day in range(days):
        weekday = (start_weekday + day) % 7
        if rollouts is not None:
            rollouts.step(day, weekday)
        landed = step_landings(w, day, first_event)
        if landed is not None:
            for key, val in zip(("deal", "index", "time"), landed, strict=True):
                ev_parts[key].append(val)
        lost = step_losses(w, day, rng, beh)
        if len(lost):
            loss_parts["deal"].append(lost)
            loss_parts["time"].append(w.closed_sec[lost])
        acts = step_activities(w, day, weekday, rng, truth, beh, k)
        if acts is None:
            continue
        trig = acts["triggered"]
        if same_day:  # advances recorded the same evening: applied after the day's activities
            tonight = trig & (acts["land_day"] == day)
            trig = trig & ~tonight
            if tonight.any():
                evening = np.full(w.n_deals, NO_EVENT, dtype=np.int64)
                np.minimum.at(evening, acts["deal"][tonight], acts["land_time"][tonight])
                landed = apply_events(w, evening)
                if landed is not None:
                    for key, val in zip(("deal", "index", "time"), landed, strict=True):
                        ev_parts[key].append(val)
        if trig.any():
            np.minimum.at(first_event, (acts["land_day"][trig], acts["deal"][trig]), acts["land_time"][trig])
        for key, val in acts.items():
            act_parts[key].append(val)
        if rollouts is not None:
            rollouts.start(day, weekday, acts, n_acts)
        n_acts += len(acts["deal"])

    def cat(parts):
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    chunk.deal_status = w.status
    chunk.deal_closed_sec = w.closed_sec
    chunk.events = {key: cat(v) for key, v in ev_parts.items()}
    chunk.losses = {key: cat(v) for key, v in loss_parts.items()}
    chunk.acts = {key: cat(v) for key, v in act_parts.items()}
    chunk.oracle = rollouts.results() if rollouts is not None else None
    return chunk


ACTIVITY_FIELDS = (
    "deal", "contact", "time", "type", "automated", "personalization", "inbound", "seq_step", "stage",
    "days_in_stage", "touches", "outputs", "negatives", "p_outcome", "p_output", "p_negative", "output",
    "negative", "triggered", "land_day", "land_time", "response_time",
)


def _push_many(ring: np.ndarray, ptr: np.ndarray, who: np.ndarray, when: np.ndarray) -> None:
    """Append times to rings when a contact may appear several times (in time order per contact)."""
    if not len(who):
        return
    order = np.lexsort((when, who))
    who, when = who[order], when[order]
    first = np.concatenate([[True], who[1:] != who[:-1]])
    starts = np.flatnonzero(first)
    rank = np.arange(len(who)) - np.repeat(starts, np.diff(np.append(starts, len(who))))
    ring[who, (ptr[who] + rank) % ring.shape[1]] = when
    np.add.at(ptr, who, 1)


class Rollouts:
    """The ex-ante oracle: P(outcome label = 1) for an activity, given what was known before it.

    For a sampled activity i at time t on deal d, copies of d's account (its contacts and all its
    deals) continue from t to the end of day D+13 in a world where no advance lands: touches after
    t and responses not yet arrived at t are removed from the copies, and the pending responses
    (of i and of earlier activities) are drawn again from their probabilities. The label of i is 0
    exactly when none of the activities whose advance would land by day D+14 (and no later than a
    loss of d) triggers, so

        P(label = 0) = E_copies[ prod_j (1 - p_j) ]

    over the activities j before t with an advance still pending, i itself, and the copy's
    activities after t. The copies run with the step code of the main simulation, in lock step
    with it, from their own random stream.
    """

    def __init__(self, main: World, chunk: Chunk, settings: OracleSettings, rng: np.random.Generator,
                 truth: TruthParams, beh: BehaviourParams, k: _Constants, calendar: int) -> None:
        self.main = main
        self.chunk = chunk
        self.settings = settings
        self.truth = truth
        self.beh = beh
        self.k = k
        self.rng = rng
        # which activities are sampled does not depend on how many continuations each gets
        self.pick_rng = np.random.default_rng(rng.integers(2**63))
        self.n_slots = len(beh.delay_pmf())  # landing day offsets 0 (the same evening) .. max delay
        # log(1 - p) of every main activity by the day its advance would land
        self.pend_log = np.zeros((calendar, main.n_deals))
        self.recent: list[dict] = []  # the main activities of the last days (pending responses)
        self.world: World | None = None
        self.blocks: list[dict] = []  # one per start day, oldest first
        self.vdeal_copy = np.zeros(0, dtype=np.int64)  # copy of each virtual deal, -1 if not a target
        self.copy_start = np.zeros(0, dtype=np.int64)
        self.copy_loss = np.zeros(0, dtype=np.int64)
        self.copy_log = np.zeros((0, c.OUTCOME_HORIZON_DAYS + 1))
        self.out_act: list[np.ndarray] = []
        self.out_p: list[np.ndarray] = []

    def start(self, day: int, weekday: int, acts: dict, first_index: int) -> None:
        """Start copies for a random share of today's activities (call once per day, after them)."""
        horizon = c.OUTCOME_HORIZON_DAYS
        self.recent = [r for r in self.recent if r["day"] >= day - RESPONSE_DELAY_MAX_DAYS]
        self.recent.append({"day": day, **{key: acts[key] for key in
                                            ("contact", "time", "p_output", "p_negative", "response_time")}})
        deal, t, p = acts["deal"], acts["time"], acts["p_outcome"]
        m = len(deal)
        offset = acts["land_day"] - day  # 0 .. max delay
        log_miss = np.log1p(-p)
        # earlier days' activities land in the mornings from tomorrow on (offset 0 is today's evening)
        pend_before = np.concatenate([np.zeros((1, self.pend_log.shape[1])),
                                      self.pend_log[day + 1: day + self.n_slots]])
        np.add.at(self.pend_log, (acts["land_day"], deal), log_miss)
        if day < self.beh.warmup_days or day + horizon >= self.beh.warmup_days + self.beh.days:
            return  # not written (warm-up) or censored (the label is unknown)
        pick = np.flatnonzero(self.pick_rng.random(m) < self.settings.share)
        if not len(pick):
            return

        # real part: activities of earlier days still pending, and today's up to and including i
        order = np.lexsort((t, deal))
        onehot = np.zeros((m, self.n_slots))
        onehot[np.arange(m), offset] = log_miss
        cum = np.cumsum(onehot[order], axis=0)
        group = np.concatenate([[True], deal[order][1:] != deal[order][:-1]])
        starts = np.flatnonzero(group)
        base = np.repeat(cum[starts] - onehot[order][starts], np.diff(np.append(starts, m)), axis=0)
        today = np.empty_like(cum)
        today[order] = cum - base
        real = np.cumsum(pend_before[:, deal[pick]].T + today[pick], axis=1)  # [sample, landing day offset]

        block = self._copies(deal[pick], t[pick])
        n_s = len(pick)
        n_rep = self.settings.rollouts
        n_copies = n_s * n_rep
        first_copy = len(self.copy_start)
        self.copy_start = np.concatenate([self.copy_start, np.full(n_copies, day)])
        self.copy_loss = np.concatenate([self.copy_loss, np.full(n_copies, NO_EVENT)])
        self.copy_log = np.concatenate([self.copy_log, np.zeros((n_copies, horizon + 1))])
        vcopy = np.where(block["target"], first_copy + block["copy"], -1)
        # the rest of today, then the lock-step days
        acts_rest = step_activities(block["world"], day, weekday, self.rng, self.truth, self.beh, self.k)
        self._accumulate(acts_rest, vcopy)
        self.world = block["world"] if self.world is None else World.concat(self.world, block["world"])
        self.vdeal_copy = np.concatenate([self.vdeal_copy, vcopy])
        self.blocks.append({"day": day, "acts": first_index + pick, "n_vdeals": block["world"].n_deals,
                            "n_contacts": block["world"].n_contacts, "n_copies": n_copies, "real": real})

    def _copies(self, deals: np.ndarray, at: np.ndarray) -> dict:
        """``rollouts`` copies of each deal's account as it was at time ``at`` (strictly before)."""
        ch, main, n_rep = self.chunk, self.main, self.settings.rollouts
        n_s = len(deals)
        acc = ch.deal_account[deals]
        c_first, c_count = ch.acc_first_contact[acc], ch.acc_n_contacts[acc]
        d_first = np.searchsorted(ch.deal_account, acc, side="left")
        d_count = np.searchsorted(ch.deal_account, acc, side="right") - d_first
        con = _ranges(c_first, c_count)
        vdeals = _ranges(d_first, d_count)
        sample_of_vdeal = np.repeat(np.arange(n_s), d_count)
        sample_of_con = np.repeat(np.arange(n_s), c_count)
        con_off = np.concatenate([[0], np.cumsum(c_count)[:-1]])
        pad = np.where(main.pad_valid[vdeals],
                       main.pad[vdeals] - c_first[sample_of_vdeal][:, None] + con_off[sample_of_vdeal][:, None],
                       con_off[sample_of_vdeal][:, None])
        n_vd, n_vc = len(vdeals), len(con)
        replica = np.repeat(np.arange(n_rep), n_vd)
        world = main.take(np.tile(vdeals, n_rep), np.tile(con, n_rep),
                          np.tile(pad, (n_rep, 1)) + (replica * n_vc)[:, None])
        # back to time `at`: later touches and responses not yet arrived are not known
        at_con = np.tile(at[sample_of_con], n_rep)[:, None]
        world.touch_ring[world.touch_ring > at_con] = EMPTY
        world.output_ring[world.output_ring >= at_con] = EMPTY
        world.negative_ring[world.negative_ring >= at_con] = EMPTY
        world.not_before = np.tile(at[sample_of_vdeal], n_rep)
        # responses still to come, drawn again: activities up to `at` whose response is due later
        rec = {key: np.concatenate([r[key] for r in self.recent]) for key in self.recent[0] if key != "day"}
        rec_acc = ch.con_account[rec["contact"]]
        r_order = np.argsort(rec_acc, kind="stable")
        r_first = np.searchsorted(rec_acc[r_order], acc, side="left")
        r_count = np.searchsorted(rec_acc[r_order], acc, side="right") - r_first
        j = r_order[_ranges(r_first, r_count)]
        s_of_j = np.repeat(np.arange(n_s), r_count)
        due = (rec["time"][j] <= at[s_of_j]) & (rec["response_time"][j] >= at[s_of_j])
        j, s_of_j = j[due], s_of_j[due]
        if len(j):
            local = con_off[s_of_j] + rec["contact"][j] - c_first[s_of_j]
            who = (local[None, :] + (np.arange(n_rep) * n_vc)[:, None]).ravel()
            u = self.rng.random(len(who))
            p_o, p_n = np.tile(rec["p_output"][j], n_rep), np.tile(rec["p_negative"][j], n_rep)
            when = np.tile(rec["response_time"][j], n_rep)
            out = u < p_o
            neg = ~out & (u < p_o + p_n)
            _push_many(world.output_ring, world.output_ptr, who[out], when[out])
            _push_many(world.negative_ring, world.negative_ptr, who[neg], when[neg])
        target = np.tile(vdeals == deals[sample_of_vdeal], n_rep)
        copy = replica * n_s + np.tile(sample_of_vdeal, n_rep)
        return {"world": world, "target": target, "copy": copy}

    def _accumulate(self, acts: dict | None, vcopy: np.ndarray) -> None:
        if acts is None:
            return
        cp = vcopy[acts["deal"]]
        keep = cp >= 0
        cp = cp[keep]
        offset = acts["land_day"][keep] - self.copy_start[cp]
        inside = offset <= c.OUTCOME_HORIZON_DAYS
        np.add.at(self.copy_log, (cp[inside], offset[inside]), np.log1p(-acts["p_outcome"][keep][inside]))

    def step(self, day: int, weekday: int) -> None:
        """Advance every running copy by one day, then retire the copies that are done."""
        if self.world is not None and self.world.n_deals:
            lost = step_losses(self.world, day, self.rng, self.beh)
            hit = self.vdeal_copy[lost]
            self.copy_loss[hit[hit >= 0]] = day
            acts = step_activities(self.world, day, weekday, self.rng, self.truth, self.beh, self.k)
            self._accumulate(acts, self.vdeal_copy)
        while self.blocks and self.blocks[0]["day"] <= day - (c.OUTCOME_HORIZON_DAYS - 1):
            self._retire()

    def _retire(self) -> None:
        b = self.blocks.pop(0)
        n = b["n_copies"]
        n_s = len(b["acts"])
        last = np.minimum(self.copy_loss[:n] - b["day"], c.OUTCOME_HORIZON_DAYS)  # last landing day counted
        roll = np.cumsum(self.copy_log[:n], axis=1)[np.arange(n), last]
        sample = np.tile(np.arange(n_s), n // n_s)
        real = b["real"][sample, np.minimum(last, self.n_slots - 1)]
        p_zero = np.exp(roll + real).reshape(n // n_s, n_s).mean(axis=0)
        self.out_act.append(b["acts"])
        self.out_p.append(1.0 - p_zero)
        self.world = self.world.drop_first(b["n_vdeals"], b["n_contacts"])
        self.vdeal_copy = self.vdeal_copy[b["n_vdeals"]:]
        self.vdeal_copy = np.where(self.vdeal_copy >= 0, self.vdeal_copy - n, -1)
        self.copy_start = self.copy_start[n:]
        self.copy_loss = self.copy_loss[n:]
        self.copy_log = self.copy_log[n:]

    def results(self) -> dict[str, np.ndarray]:
        """Per sampled activity: its index in the chunk's activity arrays and the probability."""
        while self.blocks:  # not reached: starts stop 14 days before the end
            self._retire()
        if not self.out_act:
            return {"act": np.zeros(0, dtype=np.int64), "p": np.zeros(0)}
        return {"act": np.concatenate(self.out_act), "p": np.concatenate(self.out_p)}
