"""The feature catalogue: every model feature's name, family, kind, timing and meaning.

This is the one place a feature is documented. ``plan`` features are known before
the activity happens (they may rank planned activities); ``execution`` features are
known only once it has happened (``duration_s``), so plan-time models never use them.

Label columns hold 1.0 / 0.0, or NaN where the label is censored (its horizon
reaches past the end of the data) or undefined (no deal to advance).
"""

from __future__ import annotations

from dataclasses import dataclass

from features import contract as c

NUMERIC = "numeric"
CATEGORICAL = "categorical"
PLAN = "plan"
EXECUTION = "execution"


@dataclass(frozen=True)
class Feature:
    """One model input.

    Attributes:
        name: column name in the training table.
        family: activity, cadence, responsiveness, deal, contact, account, rep, custom.
        kind: ``numeric`` or ``categorical``.
        timing: ``plan`` (known before the activity) or ``execution`` (only after).
        text: plain-language template for explanations; ``{v}`` is the value as a person reads
            it (shares as percentages, codes as words: ``serving/explain.py``). The explanation
            adds how the value compares with a typical activity and which way it moves the chance.
        unit: unit of the value, stated in explanations and the OpenAPI description.
    """

    name: str
    family: str
    kind: str
    timing: str
    text: str
    unit: str = ""


LABEL_OUTCOME = "label_outcome"
LABEL_OUTPUT = "label_output"
LABEL_NEGATIVE = "label_negative"
LABELS = {"outcome": LABEL_OUTCOME, "output": LABEL_OUTPUT, "negative": LABEL_NEGATIVE}
# Set when an activity was logged after the outcome that follows it: the classic leak.
LEAK_FLAG = "logged_after_outcome"

ID_COLUMNS = [c.ACTIVITY_ID, c.OCCURRED_AT, c.DEAL_ID, c.CONTACT_ID, c.ACCOUNT_ID, c.REP_ID]

WINDOWS_DAYS = (1, 7, 30)


def _cadence() -> list[Feature]:
    out = []
    for who, label in (("contact", "this contact"), ("deal", "this deal")):
        for w in WINDOWS_DAYS:
            out.append(Feature(f"touches_{who}_{w}d", "cadence", NUMERIC, PLAN,
                               f"{{v}} touches to {label} in the last {w} day{'s' if w > 1 else ''}", "activities"))
        out.append(Feature(f"automated_share_{who}_30d", "cadence", NUMERIC, PLAN,
                           f"{{v}} of the touches to {label} in the last 30 days were automated", "share 0..1"))
        out.append(Feature(f"days_since_touch_{who}", "cadence", NUMERIC, PLAN,
                           f"the last touch to {label} was {{v}} days ago", "days"))
    return out


def _responsiveness() -> list[Feature]:
    out = []
    for who, label in (("contact", "this contact"), ("deal", "this deal")):
        for w in (7, 30, 90):
            out.append(Feature(f"outputs_{who}_{w}d", "responsiveness", NUMERIC, PLAN,
                               f"{{v}} replies, connects or meetings booked from {label} in the last {w} days",
                               "responses"))
        out.append(Feature(f"negatives_{who}_30d", "responsiveness", NUMERIC, PLAN,
                           f"{{v}} unsubscribes or negative replies from {label} in the last 30 days", "responses"))
        out.append(Feature(f"days_since_output_{who}", "responsiveness", NUMERIC, PLAN,
                           f"the last reply, connect or meeting from {label} was {{v}} days ago", "days"))
    return out


BASE_FEATURES: list[Feature] = [
    # the activity itself
    Feature(c.TYPE, "activity", CATEGORICAL, PLAN, "the activity is of type {v}"),
    Feature(c.DIRECTION, "activity", CATEGORICAL, PLAN, "the activity is {v} (inbound: the customer reached out)"),
    Feature(c.IS_AUTOMATED, "activity", NUMERIC, PLAN, "sent by {v}", "1 = sent by a sequence or bulk tool"),
    Feature(c.PERSONALIZATION, "activity", NUMERIC, PLAN,
            "tailored to the person at {v} on a scale from 0 (mass template) to 1 (written for them)",
            "0 = mass template .. 1 = fully tailored"),
    Feature(c.SEQUENCE_STEP, "activity", NUMERIC, PLAN, "step {v} of an automated sequence", "step"),
    Feature("hour_local", "activity", NUMERIC, PLAN, "done at {v}:00 local time", "hour 0..23"),
    Feature("weekday_local", "activity", NUMERIC, PLAN, "done on a {v}", "0 = Monday .. 6 = Sunday"),
    Feature(c.DURATION_S, "activity", NUMERIC, EXECUTION, "it lasted {v} seconds", "seconds"),
    *_cadence(),
    *_responsiveness(),
    # deal state at t
    Feature(c.STAGE_ORDER, "deal", NUMERIC, PLAN, "the deal is at stage {v} of the pipeline",
            "stage order (1 = first open stage)"),
    Feature("days_in_stage", "deal", NUMERIC, PLAN, "the deal has been {v} days in its current stage", "days"),
    Feature("deal_age_days", "deal", NUMERIC, PLAN, "the deal was opened {v} days ago", "days"),
    Feature(c.AMOUNT, "deal", NUMERIC, PLAN, "the deal is worth {v}", "currency units"),
    Feature(c.PRODUCT, "deal", CATEGORICAL, PLAN, "the deal is for the product {v}"),
    Feature("outcomes_deal", "deal", NUMERIC, PLAN, "{v} customer outcomes recorded on this deal so far", "outcomes"),
    Feature("days_since_outcome_deal", "deal", NUMERIC, PLAN, "{v} days since the deal's last outcome or stage advance", "days"),
    Feature("contacts_engaged_deal", "deal", NUMERIC, PLAN, "{v} people at the customer touched on this deal so far",
            "people"),
    Feature("max_seniority_engaged_deal", "deal", NUMERIC, PLAN,
            "the most senior person reached on this deal so far is {v}", "0 = unknown .. 5 = C-level"),
    Feature("hand_touches_deal_per_day", "deal", NUMERIC, PLAN,
            "{v} hand-made touches to this deal per day since it was opened", "touches per day"),
    Feature("deal_attention_vs_rep", "deal", NUMERIC, PLAN,
            "the deal gets {v} times the rep's usual hand-made attention",
            "ratio: 1 = the rep's average over their activities of the last 90 days"),
    Feature("amount_vs_typical", "deal", NUMERIC, PLAN,
            "the deal is worth {v} times the typical deal of its product and team",
            "ratio: 1 = geometric mean of earlier deals of the same product and team"),
    # who it reaches
    Feature(c.SENIORITY, "contact", CATEGORICAL, PLAN, "it reaches {v}"),
    Feature(c.DEPARTMENT, "contact", CATEGORICAL, PLAN, "it reaches someone in {v}"),
    Feature(c.INDUSTRY, "account", CATEGORICAL, PLAN, "the customer's industry is {v}"),
    Feature(c.EMPLOYEES, "account", NUMERIC, PLAN, "the customer has {v} employees", "employees"),
    Feature(c.REGION, "account", CATEGORICAL, PLAN, "the customer is in the region {v}"),
    # who does it
    Feature(c.TEAM, "rep", CATEGORICAL, PLAN, "the rep works in the team {v}"),
    Feature("rep_tenure_days", "rep", NUMERIC, PLAN, "the rep was hired {v} days ago", "days"),
    Feature("rep_outcome_rate", "rep", NUMERIC, PLAN,
            "this rep's past activities were followed by a deal advance {v} of the time (compared with the average "
            "of all reps)", "share 0..1, smoothed"),
    Feature("rep_labelled_activities", "rep", NUMERIC, PLAN,
            "this rep's outcome rate rests on {v} past activities (a long record is trusted, a short one counts "
            "for little)", "activities"),
]

SENIORITY_RANK = {"unknown": 0, "individual_contributor": 1, "manager": 2, "director": 3, "vp": 4, "c_level": 5}


def custom_feature_name(table: str, column: str) -> str:
    """Training-table name of a custom field: ``cf_<table>_<column>``."""
    return f"cf_{table}_{column}"


def feature_by_name(features: list[Feature]) -> dict[str, Feature]:
    return {f.name: f for f in features}
