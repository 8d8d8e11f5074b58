"""Render the feature catalogue (features/schema.py) as Markdown: ``python -m features.docs``."""

from __future__ import annotations

from features import contract as c
from features import schema as s

HEADER = """# Features

Generated from `features/schema.py` by `python -m features.docs > docs/features.md`;
`tests/features/test_docs.py` fails when the two drift apart.

Every feature of an activity at time `t` uses only facts that happened strictly before `t`
and, where `logged_at` is given, were logged before `t` (`features/build.py`). A touch is
any activity except type `none`. Windows are `[t - w, t)`.

- **plan**: known before the activity happens; the `plan` models (used by `/rank`) use only these.
- **execution**: known only once the activity has happened (call duration); only the `full`
  models (used by `/score` and `activity-scorer score`) use them.

Custom fields (columns beyond the contract) become `cf_<table>_<column>`: numeric when every
value is a number, categorical otherwise; `plan` unless the dataset's `dataset.json` lists them
in `execution_time_fields`.

The rep track record counts only activities whose outcome horizon had closed (and that were
logged) before `t`: `rate = (outcomes + 20 * prior) / (labelled + 20)`, where `prior` is the
rate of all such activities of every rep before `t`. The service gets these numbers from the
bundle (snapshot at the end of the training data).

Two deal features compare with the usual, because the raw number mostly says who or which
segment it is. `deal_attention_vs_rep`: hand-made (not automated) touches to the deal per day
of its life, divided by the rep's average of that number over their activities of the last
90 days (NaN with fewer than 10): reps work the deals they believe in harder, and this is
how that belief shows. `amount_vs_typical`: the deal amount divided by the geometric mean
amount of deals of the same product owned by the same team (the team of the activity's
rep) created before `t` (NaN with fewer than 5). The service reads both baselines from the
bundle, like the track record.
Known difference: in training the deal's own amount is inside its typical amount (the deal
was created before the activity); the service's snapshot holds the deals created before the
end of the training data, so a deal created later is compared without itself. In groups of
hundreds of deals this is negligible; in a group of a few deals it shifts the ratio.

The last column is the sentence a `/score` or `/rank` factor starts with, the value written as a
person reads it (shares as percentages, codes as words); the factor then says how that compares
with a typical activity and whether it raises or lowers the chance that the deal advances, e.g.
"8 touches to this contact in the last 7 days: compared with a typical activity this lowers the
chance that the deal advances" (`serving/explain.py`; the signed log-odds stay in `effect`).

| feature | family | kind | timing | unit | meaning (explanation text) |
|---|---|---|---|---|---|
"""


PERFORMANCE = """
## Performance

`.venv/bin/python benchmarks/bench_features.py --keep /tmp/benchdata` (simulated data, each size
in a fresh process; 2 cores shared with other work; 2026-11-29, after the two deal features
`deal_attention_vs_rep` and `amount_vs_typical` were added):

```
  100,000 activities: load    0.4 s, features+labels    0.6 s, peak RSS     519 MB (53 features; simulate 0 s)
1,000,000 activities: load    2.3 s, features+labels   10.8 s, peak RSS    3179 MB (53 features; simulate 0 s)
growth 100,000 -> 1,000,000 (10x rows): time x17.7, peak memory x6.1
target 1M <= 60 s and <= 4 GB: met
one request, history {'activities': 50, 'responses': 27, 'deal_stages': 2, 'outcomes': 0, 'contacts': 7}:
  p50 1.52 ms, p99 2.74 ms over 2,000 calls (target p50 <= 2 ms: met)
```

Before those two features (50 features): 1M in 8.5 s and 2.7 GB, one request p50 1.37 ms.
Time grows faster than the rows from 100k to 1M (x17.7 for x10; x8.5 in the earlier run, whose
100k took 1.0 s): the 1M figure is the one the target is about.

How: every windowed count is a difference of prefix sums found by `np.searchsorted` over
sorted `(entity, time)` keys (`features/transforms.py`); the needles are sorted once per
entity so the binary searches stay in cache (a million random needles took 8x longer).
Facts logged late are handled exactly: a fact counts only once known, and the few facts
logged more than a window after they happened get a small per-entity correction.
"""


def render() -> str:
    rows = []
    for f in s.BASE_FEATURES:
        text = f.text.replace("{v}", "*v*")
        rows.append(f"| `{f.name}` | {f.family} | {f.kind} | {f.timing} | {f.unit} | {text} |")
    labels = "\n".join(
        [
            "",
            "## Labels",
            "",
            "| column | 1 when | censored (NaN) when |",
            "|---|---|---|",
            "| `label_outcome` | in `(t, t + 14 d]` the deal records an outcome row or enters a stage with a higher "
            "order than it ever reached by `t` (closed-lost, order 0, never counts); an activity without a deal is "
            "labelled through its account's deals open at `t` | `t + 14 d` is past the end of the data, or there is "
            "no deal to advance |",
            "| `label_output` | the activity gets a meaningful response (replied, positive_reply, connected, "
            "meeting_booked) in `[t, t + 7 d]` | `t + 7 d` is past the end of the data |",
            "| `label_negative` | it gets a negative response (negative_reply, unsubscribed) in `[t, t + 7 d]` | as output |",
            "| `logged_after_outcome` | the activity was logged after the first outcome event inside its horizon: "
            "the classic back-filling leak; training leaves such rows out of the outcome model | |",
            "",
            "Horizons are configurable (`--outcome-days`, `--output-days`, and the training config).",
            "",
        ]
    )
    return HEADER + "\n".join(rows) + "\n" + labels + PERFORMANCE


# --- the data contract (features/contract.py) -----------------------------------------------
# Hand-written meaning of each table and column; the kinds, keys, requirements, references
# and value lists come from the code. A contract column without a meaning here fails the
# docs test, so a new column cannot slip into the contract undocumented.

TABLE_PURPOSES: dict[str, str] = {
    c.ACTIVITIES: "what reps did (or deliberately did not do): one row per call, email, meeting, ...",
    c.RESPONSES: "the outputs an activity produced (a reply, a connected call, an unsubscribe, ...)",
    c.DEAL_STAGES: "the stage history of each deal (opportunity): one row per stage entered",
    c.OUTCOMES: "customer outcomes recorded on a deal (goals agreed, champion confirmed, closed won, ...)",
    c.DEALS: "one row per deal",
    c.CONTACTS: "one row per customer person",
    c.ACCOUNTS: "one row per customer company",
    c.REPS: "one row per sales rep",
}

COLUMN_MEANINGS: dict[tuple[str, str], str] = {
    (c.ACTIVITIES, c.ACTIVITY_ID): "unique id of the activity",
    (c.ACTIVITIES, c.OCCURRED_AT): "when the activity happened (not when it was logged)",
    (c.ACTIVITIES, c.TYPE): "what kind of touch; `none` records a deliberate decision not to touch (a hold-out "
                            "or a wait), so that its outcomes can be compared with those of touching",
    (c.ACTIVITIES, c.REP_ID): "who did it",
    (c.ACTIVITIES, c.DEAL_ID): "the deal it was for",
    (c.ACTIVITIES, c.CONTACT_ID): "the person it was with",
    (c.ACTIVITIES, c.ACCOUNT_ID): "the company; filled from the deal, then from the contact, when empty",
    (c.ACTIVITIES, c.DIRECTION): "who started it",
    (c.ACTIVITIES, c.DURATION_S): "call or meeting length in seconds, not negative; known only once it happened",
    (c.ACTIVITIES, c.PERSONALIZATION): "how tailored the content was, 0 (mass template) to 1 (fully tailored)",
    (c.ACTIVITIES, c.IS_AUTOMATED): "sent by a sequence or bulk tool rather than by hand",
    (c.ACTIVITIES, c.SEQUENCE_STEP): "position in an automated sequence",
    (c.ACTIVITIES, c.LOGGED_AT): "when it was entered in the CRM; a row logged after an outcome it precedes is "
                                 "the classic back-filling leak (features ignore facts not yet logged)",
    (c.RESPONSES, c.ACTIVITY_ID): "the activity responded to",
    (c.RESPONSES, c.RESPONSE): "what came back",
    (c.RESPONSES, c.OCCURRED_AT): "when it came back",
    (c.DEAL_STAGES, c.DEAL_ID): "the deal",
    (c.DEAL_STAGES, c.STAGE): "the stage name as the CRM calls it",
    (c.DEAL_STAGES, c.STAGE_ORDER): f"position in the pipeline: 1 = first open stage, higher = further; a "
                                    f"closed-lost stage has order {c.CLOSED_LOST_ORDER}",
    (c.DEAL_STAGES, c.ENTERED_AT): "when the deal entered the stage",
    (c.OUTCOMES, c.DEAL_ID): "the deal",
    (c.OUTCOMES, c.OUTCOME): "what the customer did, e.g. `goals_agreed`, `workshop_sponsored`, "
                             "`decision_plan_agreed`, `champion_confirmed`, `proposal_accepted`, `closed_won`",
    (c.OUTCOMES, c.OCCURRED_AT): "when",
    (c.OUTCOMES, c.CONTACT_ID): "the customer person who agreed",
    (c.DEALS, c.DEAL_ID): "unique id of the deal",
    (c.DEALS, c.ACCOUNT_ID): "the customer company",
    (c.DEALS, c.OWNER_REP_ID): "the rep who owns the deal",
    (c.DEALS, c.CREATED_AT): "when the deal was created",
    (c.DEALS, c.AMOUNT): "deal value (the amount when the deal was created: a final amount tells how it ended)",
    (c.DEALS, c.PRODUCT): "product or product family",
    (c.DEALS, c.CLOSED_AT): "when it closed (empty while open)",
    (c.DEALS, c.WON): "whether it was won (empty while open)",
    (c.CONTACTS, c.CONTACT_ID): "unique id of the person",
    (c.CONTACTS, c.ACCOUNT_ID): "their company",
    (c.CONTACTS, c.TITLE): "job title as written in the CRM",
    (c.CONTACTS, c.SENIORITY): "seniority level",
    (c.CONTACTS, c.DEPARTMENT): "department",
    (c.ACCOUNTS, c.ACCOUNT_ID): "unique id of the company",
    (c.ACCOUNTS, c.INDUSTRY): "industry",
    (c.ACCOUNTS, c.EMPLOYEES): "head count",
    (c.ACCOUNTS, c.REGION): "sales region",
    (c.REPS, c.REP_ID): "unique id of the rep",
    (c.REPS, c.TEAM): "team",
    (c.REPS, c.HIRED_AT): "when the rep started (tenure features)",
}

# Values the contract lists for a column ("or any other string" where other values are legal).
_VALUE_LISTS: dict[tuple[str, str], tuple[str, ...]] = {
    (c.ACTIVITIES, c.TYPE): c.ACTIVITY_TYPES,
    (c.ACTIVITIES, c.DIRECTION): c.DIRECTIONS,
    (c.CONTACTS, c.SENIORITY): c.SENIORITIES,
    (c.RESPONSES, c.RESPONSE): tuple(sorted(c.MEANINGFUL_RESPONSES)) + tuple(sorted(c.NEGATIVE_RESPONSES))
    + tuple(sorted(c.KNOWN_RESPONSES - c.MEANINGFUL_RESPONSES - c.NEGATIVE_RESPONSES)),
}

KIND_TEXT = {
    c.STR: "text (an id that looks like a number is still text)",
    c.TIMESTAMP: "ISO 8601 date-time; without a zone it is UTC",
    c.FLOAT: "number",
    c.INT: "whole number",
    c.BOOL: "true/false (also 1/0, yes/no, t/f, y/n in CSV)",
}


def _code_list(values) -> str:  # noqa: ANN001
    return ", ".join(f"`{v}`" for v in values)


def _column_row(table: c.Table, col: c.Column) -> str:
    meaning = COLUMN_MEANINGS.get((table.name, col.name))
    if meaning is None:
        raise KeyError(f"features/docs.py COLUMN_MEANINGS: no meaning for {table.name}.{col.name}; add one")
    notes = []
    values = _VALUE_LISTS.get((table.name, col.name))
    if values:
        notes.append(f"one of {_code_list(values)}, or any other text")
    if col.name == table.key:
        notes.append("key: unique")
    ref = table.references.get(col.name)
    if ref is not None:
        notes.append(f"refers to [`{ref}`](#{ref})")
    text = meaning + ("; " + "; ".join(notes) if notes else "")
    return f"| `{col.name}` | {col.kind} | {'yes' if col.required else 'no'} | {text} |"


CONTRACT_HEADER = """# Data contract: the CRM history the project learns from

Generated from `features/contract.py` by `{command}`; `tests/docs/test_generated_docs.py`
fails when the two drift apart. The adapters that produce such a dataset from real exports are
described in [import-flat](import-flat.md) (one row per activity) and [crm](crm.md) (Salesforce,
HubSpot); `activity-scorer validate --data DIR` checks a dataset against this page.

A *dataset* is one directory holding one file per table, named after the table: `NAME.csv`
(UTF-8, header row, comma-separated) or `NAME.parquet`. Other files in the directory are
ignored, except `{meta}` (below).

- **Required tables**: {required}, and at least one of {sources} (they define the outcome
  label). Every other table is optional and only adds features.
- **Required columns** must be present and non-empty on every row; other columns may be
  absent or empty: absent means unknown, never invented.
- **Kinds**: {kinds}.
- **Keys** (`key` below) are unique within their table. A reference to another table's key
  (`refers to`) that finds no row is an error for {label_refs} (those rows make the labels),
  and a warning elsewhere (only the referenced attributes are missing).
- **Custom fields**: any column a table carries beyond the ones listed here (think Salesforce
  `__c` fields) becomes a feature `cf_<table>_<column>`: numeric when every value is a number,
  categorical otherwise.
"""


def _kinds_text() -> str:
    return "; ".join(f"`{k}` {KIND_TEXT[k]}" for k in c.PANDAS_DTYPES)


def render_contract(command: str = "python -m docgen") -> str:
    """The data contract as Markdown (``docs/data-contract.md``).

    Args:
        command: the command that regenerates the page, named in its header.

    Raises:
        KeyError: a contract table or column has no meaning in :data:`TABLE_PURPOSES` /
            :data:`COLUMN_MEANINGS`.
    """
    from features.validation import KNOWN_VALUES, LABEL_REFERENCES, RANGE_CHECKS

    required = [t.name for t in c.TABLES.values() if t.required]
    label_refs = ", ".join(f"`{t}.{col}`" for t, col in sorted(LABEL_REFERENCES))
    out = [CONTRACT_HEADER.format(
        command=command, meta=c.DATASET_META_FILE, required=_code_list(required),
        sources=_code_list(c.OUTCOME_SOURCES), kinds=_kinds_text(), label_refs=label_refs)]
    out.append("## Tables\n")
    for table in c.TABLES.values():
        purpose = TABLE_PURPOSES.get(table.name)
        if purpose is None:
            raise KeyError(f"features/docs.py TABLE_PURPOSES: no purpose for table {table.name}; add one")
        need = ("required" if table.required else
                f"one of {' / '.join(c.OUTCOME_SOURCES)} is required" if table.name in c.OUTCOME_SOURCES else "optional")
        key = f"; key `{table.key}`" if table.key else ""
        out.append(f"### {table.name}\n")
        out.append(f"{purpose.capitalize()} ({need}{key}).\n")
        out.append("| column | kind | required | meaning |")
        out.append("|---|---|---|---|")
        out.extend(_column_row(table, col) for col in table.columns)
        out.append("")
    known = sorted(set(COLUMN_MEANINGS) - {(t.name, col.name) for t in c.TABLES.values() for col in t.columns})
    if known:
        raise KeyError(f"features/docs.py COLUMN_MEANINGS: {known} are not contract columns any more; remove them")
    out.append("## Values the checks enforce\n")
    out.append("Besides kinds, keys and required values, `validate` refuses:\n")
    for (table, col), (_, _, rule, _) in sorted(RANGE_CHECKS.items()):
        out.append(f"- `{table}.{col}` {rule};")
    out.append("- a timestamp outside the years 1677-2262, or a column mixing values with and without a zone.\n")
    out.append("It accepts with a warning (the value is still used):\n")
    for (table, col), (_, consequence) in sorted(KNOWN_VALUES.items()):
        out.append(f"- a value of `{table}.{col}` outside the list above: {consequence};")
    out.append("- an activity logged long after it happened, or before; a timestamp in the future.\n")
    out.append(RESPONSES_AND_LABELS.format(
        meaningful=_code_list(sorted(c.MEANINGFUL_RESPONSES)), negative=_code_list(sorted(c.NEGATIVE_RESPONSES)),
        weak=_code_list(sorted(c.WEAK_RESPONSES)), outcome_days=c.OUTCOME_HORIZON_DAYS,
        output_days=c.OUTPUT_HORIZON_DAYS, lost=c.CLOSED_LOST_ORDER, meta=c.DATASET_META_FILE))
    return "\n".join(out)


RESPONSES_AND_LABELS = """## Labels: what "advances a customer outcome" means

Responses are grouped: **meaningful outputs** {meaningful}; **negative outputs**
{negative}; {weak} are recorded but are not meaningful on their own. For an activity at time
`t` (horizons are the defaults; `features` and the training config change them):

| label | 1 when | left out (censored) when |
|---|---|---|
| outcome | in `(t, t + {outcome_days} days]` the activity's deal records an outcome (any row of `outcomes`) or enters a stage whose `stage_order` is higher than any it had reached before (a deal's first stage row is where its known history starts, not an advance; a move to closed-lost, order {lost}, never counts) | `t + {outcome_days} days` is past the end of the data, or there is no deal to advance |
| output | the activity gets a meaningful output in `[t, t + {output_days} days]` | `t + {output_days} days` is past the end of the data |
| negative | the activity gets a negative output in `[t, t + {output_days} days]` | as output |

An activity without a deal is labelled through the deals of its account that are open at
`t`. A censored label is left out of training for that label, never counted as 0. The end
of the data is `--until` when given, else the latest event (activity, response, stage entry
or outcome) of the dataset.

## Point-in-time rule

A feature of an activity at time `t` uses only facts that happened strictly before `t` and,
where `logged_at` is given, were logged before `t`. Adding any event after `t` to the dataset
never changes that activity's features; the tests enforce it (`tests/features/`). The feature
catalogue is [features](features.md).

## Metadata: `{meta}`

Optional, in the dataset directory:

```json
{{"execution_time_fields": ["activities.duration"], "source": "where the export came from", "notes": "..."}}
```

`execution_time_fields` lists custom fields (`table.column`) known only once the activity
has happened (like `duration_s`): the plan-time models, which rank activities not yet done,
never use them.
"""


if __name__ == "__main__":
    import sys

    # `python -m features.docs` prints the feature catalogue; `... contract` the data contract.
    # `python -m docgen` writes every generated page at once.
    print(render_contract() if sys.argv[1:] == ["contract"] else render(), end="")
