"""Small random CRM histories in the data contract, for feature tests (no simulator needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import contract as c
from features.dataset import Dataset, coerce_table

T0 = pd.Timestamp("2026-01-05T00:00:00Z")


def make_history(n_activities: int = 300, n_deals: int = 12, n_contacts: int = 20, seed: int = 0,
                 late_share: float = 0.1, span_days: int = 120) -> Dataset:
    """Activities, responses, stages, outcomes, deals, contacts, accounts, reps with random times.

    Some activities are logged days after they happened (``late_share``), some have no
    deal (account-level), some are ``none`` decisions, so every code path is exercised.
    """
    rng = np.random.default_rng(seed)
    n_acc = max(2, n_deals // 3)
    deals = pd.DataFrame({
        c.DEAL_ID: [f"d{i}" for i in range(n_deals)],
        c.ACCOUNT_ID: [f"acc{i % n_acc}" for i in range(n_deals)],
        c.OWNER_REP_ID: [f"r{i % 3}" for i in range(n_deals)],
        c.CREATED_AT: [T0 + pd.Timedelta(days=int(d)) for d in rng.integers(0, 20, n_deals)],
        c.AMOUNT: rng.integers(5, 100, n_deals) * 1000.0,
        c.PRODUCT: rng.choice(["platform", "addon"], n_deals),
        "deal_tier": rng.choice(["gold", "silver"], n_deals),
    })
    contacts = pd.DataFrame({
        c.CONTACT_ID: [f"c{i}" for i in range(n_contacts)],
        c.ACCOUNT_ID: [f"acc{i % n_acc}" for i in range(n_contacts)],
        c.SENIORITY: rng.choice(list(c.SENIORITIES), n_contacts),
        c.DEPARTMENT: rng.choice(["it", "ops", "finance"], n_contacts),
    })
    accounts = pd.DataFrame({
        c.ACCOUNT_ID: [f"acc{i}" for i in range(n_acc)],
        c.INDUSTRY: rng.choice(["retail", "logistics"], n_acc),
        c.EMPLOYEES: rng.integers(10, 5000, n_acc),
        c.REGION: rng.choice(["emea", "na"], n_acc),
    })
    reps = pd.DataFrame({c.REP_ID: ["r0", "r1", "r2"], c.TEAM: ["a", "a", "b"],
                         c.HIRED_AT: [T0 - pd.Timedelta(days=d) for d in (400, 100, 30)]})
    minutes = np.sort(rng.integers(0, span_days * 24 * 60, n_activities))
    occurred = T0 + pd.to_timedelta(minutes, unit="min")
    lag_min = np.where(rng.random(n_activities) < late_share, rng.integers(60 * 24, 60 * 24 * 12, n_activities),
                       rng.integers(0, 30, n_activities))
    deal_idx = rng.integers(0, n_deals, n_activities)
    contact_idx = rng.integers(0, n_contacts, n_activities)
    has_deal = rng.random(n_activities) > 0.1
    activities = pd.DataFrame({
        c.ACTIVITY_ID: [f"a{i}" for i in range(n_activities)],
        c.OCCURRED_AT: occurred,
        c.TYPE: rng.choice(["call", "email", "meeting", "none", "inmail"], n_activities, p=[0.3, 0.4, 0.15, 0.05, 0.1]),
        c.REP_ID: [f"r{i}" for i in rng.integers(0, 3, n_activities)],
        c.DEAL_ID: np.where(has_deal, [f"d{i}" for i in deal_idx], None),
        c.CONTACT_ID: [f"c{i}" for i in contact_idx],
        c.DIRECTION: rng.choice(["outbound", "inbound"], n_activities, p=[0.85, 0.15]),
        c.DURATION_S: np.where(rng.random(n_activities) < 0.5, rng.integers(10, 900, n_activities), np.nan),
        c.PERSONALIZATION: rng.random(n_activities).round(2),
        c.IS_AUTOMATED: rng.random(n_activities) < 0.3,
        c.LOGGED_AT: occurred + pd.to_timedelta(lag_min, unit="min"),
        "template": rng.choice(["t1", "t2", "t3"], n_activities),
    })
    resp_rows = []
    for i in rng.choice(n_activities, n_activities // 3, replace=False):
        kind = rng.choice(["opened", "replied", "connected", "negative_reply", "unsubscribed", "meeting_booked"])
        resp_rows.append((f"a{i}", kind, occurred[i] + pd.Timedelta(hours=int(rng.integers(1, 200)))))
    responses = pd.DataFrame(resp_rows, columns=[c.ACTIVITY_ID, c.RESPONSE, c.OCCURRED_AT])
    stage_rows, outcome_rows = [], []
    for d in range(n_deals):
        t = deals[c.CREATED_AT].iloc[d]
        order = 1
        stage_rows.append((f"d{d}", "s1", 1, t))
        for _ in range(int(rng.integers(1, 6))):
            t = t + pd.Timedelta(days=int(rng.integers(3, 30)), hours=int(rng.integers(0, 24)))
            step = int(rng.choice([-1, 1, 1, 2]))
            order = max(1, order + step)
            stage_rows.append((f"d{d}", f"s{order}", order, t))
            if rng.random() < 0.3:
                outcome_rows.append((f"d{d}", "goals_agreed", t + pd.Timedelta(hours=5), None))
        if rng.random() < 0.3:
            stage_rows.append((f"d{d}", "closed_lost", 0, t + pd.Timedelta(days=10)))
    deal_stages = pd.DataFrame(stage_rows, columns=[c.DEAL_ID, c.STAGE, c.STAGE_ORDER, c.ENTERED_AT])
    outcomes = pd.DataFrame(outcome_rows, columns=[c.DEAL_ID, c.OUTCOME, c.OCCURRED_AT, c.CONTACT_ID])
    raw = {c.ACTIVITIES: activities, c.RESPONSES: responses, c.DEAL_STAGES: deal_stages, c.OUTCOMES: outcomes,
           c.DEALS: deals, c.CONTACTS: contacts, c.ACCOUNTS: accounts, c.REPS: reps}
    tables = {k: coerce_table(k, v) for k, v in raw.items()}
    custom = {k: c.custom_columns(k, list(v.columns)) for k, v in tables.items()}
    return Dataset(tables, custom)
