"""The data contract (shared/DATA_CONTRACT.md) as code: tables, columns, kinds.

Every other module takes table and column names from here. A column's *kind*
says how it is parsed and stored in a typed frame:

- ``str``: pandas ``string`` dtype (ids are strings, even when they look numeric)
- ``timestamp``: ``datetime64[ns, UTC]``; a value without a zone is UTC
- ``float``: ``float64``
- ``int``: nullable ``Int64``
- ``bool``: nullable ``boolean``
"""

from __future__ import annotations

from dataclasses import dataclass, field

STR = "str"
TIMESTAMP = "timestamp"
FLOAT = "float"
INT = "int"
BOOL = "bool"

TIMESTAMP_DTYPE = "datetime64[ns, UTC]"
PANDAS_DTYPES = {
    STR: "string",
    TIMESTAMP: TIMESTAMP_DTYPE,
    FLOAT: "float64",
    INT: "Int64",
    BOOL: "boolean",
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    required: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: str | None = None
    required: bool = False
    # Foreign keys checked by validation: column -> referenced table.
    references: dict[str, str] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def kind(self, column: str) -> str | None:
        for c in self.columns:
            if c.name == column:
                return c.kind
        return None


# --- table names -------------------------------------------------------------
ACTIVITIES = "activities"
RESPONSES = "responses"
DEAL_STAGES = "deal_stages"
OUTCOMES = "outcomes"
DEALS = "deals"
CONTACTS = "contacts"
ACCOUNTS = "accounts"
REPS = "reps"

# --- column names --------------------------------------------------------------
ACTIVITY_ID = "activity_id"
OCCURRED_AT = "occurred_at"
TYPE = "type"
REP_ID = "rep_id"
DEAL_ID = "deal_id"
CONTACT_ID = "contact_id"
ACCOUNT_ID = "account_id"
DIRECTION = "direction"
DURATION_S = "duration_s"
PERSONALIZATION = "personalization"
IS_AUTOMATED = "is_automated"
SEQUENCE_STEP = "sequence_step"
LOGGED_AT = "logged_at"
RESPONSE = "response"
STAGE = "stage"
STAGE_ORDER = "stage_order"
ENTERED_AT = "entered_at"
OUTCOME = "outcome"
OWNER_REP_ID = "owner_rep_id"
CREATED_AT = "created_at"
AMOUNT = "amount"
PRODUCT = "product"
CLOSED_AT = "closed_at"
WON = "won"
TITLE = "title"
SENIORITY = "seniority"
DEPARTMENT = "department"
INDUSTRY = "industry"
EMPLOYEES = "employees"
REGION = "region"
TEAM = "team"
HIRED_AT = "hired_at"

TABLES: dict[str, Table] = {
    ACTIVITIES: Table(
        ACTIVITIES,
        (
            Column(ACTIVITY_ID, STR, True),
            Column(OCCURRED_AT, TIMESTAMP, True),
            Column(TYPE, STR, True),
            Column(REP_ID, STR),
            Column(DEAL_ID, STR),
            Column(CONTACT_ID, STR),
            Column(ACCOUNT_ID, STR),
            Column(DIRECTION, STR),
            Column(DURATION_S, FLOAT),
            Column(PERSONALIZATION, FLOAT),
            Column(IS_AUTOMATED, BOOL),
            Column(SEQUENCE_STEP, INT),
            Column(LOGGED_AT, TIMESTAMP),
        ),
        key=ACTIVITY_ID,
        required=True,
        references={REP_ID: REPS, DEAL_ID: DEALS, CONTACT_ID: CONTACTS, ACCOUNT_ID: ACCOUNTS},
    ),
    RESPONSES: Table(
        RESPONSES,
        (
            Column(ACTIVITY_ID, STR, True),
            Column(RESPONSE, STR, True),
            Column(OCCURRED_AT, TIMESTAMP, True),
        ),
        references={ACTIVITY_ID: ACTIVITIES},
    ),
    DEAL_STAGES: Table(
        DEAL_STAGES,
        (
            Column(DEAL_ID, STR, True),
            Column(STAGE, STR, True),
            Column(STAGE_ORDER, INT, True),
            Column(ENTERED_AT, TIMESTAMP, True),
        ),
        references={DEAL_ID: DEALS},
    ),
    OUTCOMES: Table(
        OUTCOMES,
        (
            Column(DEAL_ID, STR, True),
            Column(OUTCOME, STR, True),
            Column(OCCURRED_AT, TIMESTAMP, True),
            Column(CONTACT_ID, STR),
        ),
        references={DEAL_ID: DEALS, CONTACT_ID: CONTACTS},
    ),
    DEALS: Table(
        DEALS,
        (
            Column(DEAL_ID, STR, True),
            Column(ACCOUNT_ID, STR),
            Column(OWNER_REP_ID, STR),
            Column(CREATED_AT, TIMESTAMP),
            Column(AMOUNT, FLOAT),
            Column(PRODUCT, STR),
            Column(CLOSED_AT, TIMESTAMP),
            Column(WON, BOOL),
        ),
        key=DEAL_ID,
        references={ACCOUNT_ID: ACCOUNTS, OWNER_REP_ID: REPS},
    ),
    CONTACTS: Table(
        CONTACTS,
        (
            Column(CONTACT_ID, STR, True),
            Column(ACCOUNT_ID, STR),
            Column(TITLE, STR),
            Column(SENIORITY, STR),
            Column(DEPARTMENT, STR),
        ),
        key=CONTACT_ID,
        references={ACCOUNT_ID: ACCOUNTS},
    ),
    ACCOUNTS: Table(
        ACCOUNTS,
        (
            Column(ACCOUNT_ID, STR, True),
            Column(INDUSTRY, STR),
            Column(EMPLOYEES, INT),
            Column(REGION, STR),
        ),
        key=ACCOUNT_ID,
    ),
    REPS: Table(
        REPS,
        (
            Column(REP_ID, STR, True),
            Column(TEAM, STR),
            Column(HIRED_AT, TIMESTAMP),
        ),
        key=REP_ID,
    ),
}

# One of these is required besides activities: they define the outcome label.
OUTCOME_SOURCES = (DEAL_STAGES, OUTCOMES)

ACTIVITY_TYPES = ("call", "email", "meeting", "demo", "inmail", "social", "proposal", "workshop", "none")
SENIORITIES = ("c_level", "vp", "director", "manager", "individual_contributor", "unknown")
DIRECTIONS = ("outbound", "inbound")

MEANINGFUL_RESPONSES = frozenset({"replied", "positive_reply", "connected", "meeting_booked"})
NEGATIVE_RESPONSES = frozenset({"negative_reply", "unsubscribed"})
WEAK_RESPONSES = frozenset({"opened", "clicked"})
KNOWN_RESPONSES = MEANINGFUL_RESPONSES | NEGATIVE_RESPONSES | WEAK_RESPONSES | {"bounced", "no_show"}

CLOSED_LOST_ORDER = 0

# Default label horizons (configurable in training).
OUTCOME_HORIZON_DAYS = 14
OUTPUT_HORIZON_DAYS = 7


def custom_columns(table: str, columns: list[str]) -> list[str]:
    """Columns a table carries beyond the contract's: the custom fields, in file order."""
    known = set(TABLES[table].column_names)
    return [c for c in columns if c not in known]

# Optional metadata file in a dataset directory (an extension of the contract):
# {"execution_time_fields": ["activities.duration"], "source": "...", "notes": "..."}
# Custom fields listed there are known only after the activity, so plan-time models
# never use them. Files in the directory that are not tables or this file are ignored.
DATASET_META_FILE = "dataset.json"
