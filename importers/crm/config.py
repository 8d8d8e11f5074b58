"""Org-specific choices of the CRM adapters, loaded from YAML over packaged defaults.

The defaults live in ``importers/configs/crm.yaml`` (documented there and in
docs/crm.md). A user file replaces top-level keys; the ``salesforce`` and ``hubspot``
sections are merged key by key and ``hubspot.ui_labels`` per object. Unknown keys fail
loudly, naming the key and the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from features import contract as c
from importers.crm.errors import CrmConfigError
from importers.crm.times import valid_timezone

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "crm.yaml"

SENIORITY_LEVELS = ("c_level", "vp", "director", "manager")

# Columns that describe the *current* state of a record. They are known only at export
# time and reveal how the deal ended, so they are never passed through as features.
CURRENT_STATE_FIELDS = frozenset(
    name.lower()
    for name in (
        # Salesforce Opportunity
        "StageName", "Probability", "IsClosed", "IsWon", "ForecastCategory", "ForecastCategoryName",
        "Amount", "ExpectedRevenue", "CloseDate", "TotalOpportunityQuantity", "HasOpenActivity",
        "HasOverdueTask", "HasOpportunityLineItem", "LastActivityDate", "LastStageChangeDate",
        "LastModifiedDate", "LastModifiedById", "SystemModstamp", "LastViewedDate", "LastReferencedDate",
        "FiscalQuarter", "FiscalYear", "Fiscal", "NextStep", "IsEmailBounced", "EmailBouncedDate",
        "EmailBouncedReason", "HasOptedOutOfEmail", "Status", "IsClosed", "CompletedDateTime",
        # HubSpot deals/contacts/companies
        "dealstage", "hs_is_closed", "hs_is_closed_won", "hs_deal_stage_probability", "amount", "closedate",
        "hs_closed_amount", "hs_closed_amount_in_home_currency", "hs_forecast_amount", "hs_forecast_probability",
        "hs_projected_amount", "hs_projected_amount_in_home_currency", "hs_manual_forecast_category",
        "closed_lost_reason", "closed_won_reason", "days_to_close", "hs_lastmodifieddate", "num_notes",
        "num_contacted_notes", "num_associated_contacts", "notes_last_contacted", "notes_last_updated",
        "notes_next_activity_date", "hs_last_sales_activity_timestamp", "hs_latest_meeting_activity",
        "hs_sales_email_last_replied", "hs_sales_email_last_opened", "hs_sales_email_last_clicked",
        "hs_email_bounce", "hs_email_optout", "lifecyclestage", "hs_lead_status", "hs_is_deal_closed",
        "hs_deal_amount_calculation_preference", "hs_acv", "hs_arr", "hs_mrr", "hs_tcv",
    )
)
_CURRENT_STATE_PATTERNS = re.compile(
    r"^(last_?|has_?|num_|notes_|hs_last|hs_latest|hs_date_(entered|exited)_|hs_v2_date_(entered|exited)_|"
    r"hs_time_in_|hs_v2_time_in_|hs_v2_cumulative_time_in_|hs_email_(open|click|reply)_count|"
    r"hs_sales_email_last|date_entered|date_exited|time_in_)",
    re.IGNORECASE,
)


def is_current_state_field(name: str) -> bool:
    """True for fields that hold a record's state at export time (never a feature)."""
    return name.lower() in CURRENT_STATE_FIELDS or bool(_CURRENT_STATE_PATTERNS.match(name))


@dataclass(frozen=True)
class DispositionRule:
    """Call result text matching ``match`` adds ``responses``; ``stop`` ends the search."""

    match: str
    responses: tuple[str, ...] = ()
    stop: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "responses", tuple(self.responses))
        try:
            re.compile(self.match)
        except re.error as err:
            raise CrmConfigError(f"call_dispositions: bad regular expression {self.match!r}: {err}") from err


@dataclass(frozen=True)
class SalesforceConfig:
    task_types: list[dict] = field(default_factory=list)
    event_types: dict[str, str] = field(default_factory=dict)
    default_event_type: str = "meeting"
    outcome_fields: dict[str, str] = field(default_factory=dict)
    outcome_date_fields: dict[str, str] = field(default_factory=dict)
    no_show_field: str | None = None
    no_show_values: list[str] = field(default_factory=list)
    closed_task_statuses: list[str] = field(default_factory=lambda: ["Completed"])
    keep_archived: bool = True
    automated_owner_ids: list[str] = field(default_factory=list)
    response_fields: dict[str, str] = field(default_factory=dict)
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    custom_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HubSpotConfig:
    meeting_types: dict[str, str] = field(default_factory=dict)
    default_meeting_type: str = "meeting"
    excluded_call_statuses: list[str] = field(default_factory=list)
    email_statuses: list[str] = field(default_factory=list)
    excluded_meeting_outcomes: list[str] = field(default_factory=list)
    outcome_properties: dict[str, str] = field(default_factory=dict)
    outcome_date_properties: dict[str, str] = field(default_factory=dict)
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    custom_fields: dict[str, Any] = field(default_factory=dict)
    pipelines: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    ui_list_separator: str = ";"
    ui_duration_unit: str = "ms"
    ui_day_first: bool = False
    ui_labels: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class CrmConfig:
    rep_timezone: str = "UTC"
    rep_timezones: dict[str, str] = field(default_factory=dict)
    portal_timezone: str = "UTC"
    inbound_email: str = "response"
    deal_amount: str = "initial"
    booking_window_days: float = 7
    reply_window_days: float = 14
    call_dispositions: tuple[DispositionRule, ...] = ()
    negative_reply_patterns: list[str] = field(default_factory=list)
    positive_reply_patterns: list[str] = field(default_factory=list)
    seniority: dict[str, list[str]] = field(default_factory=dict)
    regions: dict[str, list[str]] = field(default_factory=dict)
    stage_map: dict[str, Any] = field(default_factory=dict)
    stage_outcomes: dict[str, str] = field(default_factory=dict)
    salesforce: SalesforceConfig = field(default_factory=SalesforceConfig)
    hubspot: HubSpotConfig = field(default_factory=HubSpotConfig)
    source: str = "defaults"

    def with_overrides(self, **values: Any) -> CrmConfig:
        return replace(self, **values)


_SECTIONS = {"salesforce": SalesforceConfig, "hubspot": HubSpotConfig}
_TABLES_WITH_FIELDS = (c.ACTIVITIES, c.DEALS, c.CONTACTS, c.ACCOUNTS, c.REPS)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CrmConfigError(f"{path}: config file not found") from err
    except yaml.YAMLError as err:
        raise CrmConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CrmConfigError(f"{path}: the config must be a mapping of keys to values")
    return data


def merge_config(base: dict, override: dict, where: str) -> dict:
    """Merge ``override`` into ``base`` (sections key by key); unknown keys raise."""
    top = {f.name for f in fields(CrmConfig)} - {"source"}
    merged = dict(base)
    for key, value in override.items():
        if key not in top:
            raise CrmConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(top))})")
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise CrmConfigError(f"{where}: {key!r} must be a mapping")
            known = {f.name for f in fields(_SECTIONS[key])}
            section = dict(merged.get(key) or {})
            for sub, subvalue in value.items():
                if sub not in known:
                    raise CrmConfigError(
                        f"{where}: unknown key {key}.{sub!r} (known: {', '.join(sorted(known))})"
                    )
                if sub == "ui_labels" and isinstance(subvalue, dict):
                    labels = {k: dict(v) for k, v in (section.get("ui_labels") or {}).items()}
                    for obj, table in subvalue.items():
                        labels.setdefault(obj, {}).update(table or {})
                    section[sub] = labels
                else:
                    section[sub] = subvalue
            merged[key] = section
        else:
            merged[key] = value
    return merged


def build_config(values: dict, where: str) -> CrmConfig:
    """Typed, checked config from merged values."""
    values = dict(values)
    try:
        sf = SalesforceConfig(**(values.pop("salesforce", None) or {}))
        hs = HubSpotConfig(**(values.pop("hubspot", None) or {}))
        rules = tuple(
            DispositionRule(**rule) if isinstance(rule, dict) else rule
            for rule in values.pop("call_dispositions", None) or ()
        )
        cfg = CrmConfig(**values, call_dispositions=rules, salesforce=sf, hubspot=hs, source=where)
    except TypeError as err:
        raise CrmConfigError(f"{where}: {err}") from err
    _check(cfg, where)
    return cfg


def _check(cfg: CrmConfig, where: str) -> None:
    for name in ("rep_timezone", "portal_timezone"):
        if not valid_timezone(getattr(cfg, name)):
            raise CrmConfigError(f"{where}: {name} {getattr(cfg, name)!r} is not an IANA time zone")
    for owner, tz in cfg.rep_timezones.items():
        if not valid_timezone(tz):
            raise CrmConfigError(f"{where}: rep_timezones[{owner!r}] {tz!r} is not an IANA time zone")
    if cfg.inbound_email not in ("response", "activity"):
        raise CrmConfigError(f"{where}: inbound_email must be 'response' or 'activity', not {cfg.inbound_email!r}")
    if cfg.deal_amount not in ("initial", "current"):
        raise CrmConfigError(f"{where}: deal_amount must be 'initial' or 'current', not {cfg.deal_amount!r}")
    for level in cfg.seniority:
        if level not in SENIORITY_LEVELS:
            raise CrmConfigError(f"{where}: seniority level {level!r} is not one of {', '.join(SENIORITY_LEVELS)}")
    for pattern in [*cfg.negative_reply_patterns, *cfg.positive_reply_patterns,
                    *(p for ps in cfg.seniority.values() for p in ps)]:
        try:
            re.compile(pattern)
        except re.error as err:
            raise CrmConfigError(f"{where}: bad regular expression {pattern!r}: {err}") from err
    for region, names in cfg.regions.items():
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise CrmConfigError(f"{where}: regions[{region!r}] has non-text entries {bad} (quote them in YAML)")
    for name, target in cfg.stage_map.items():
        if isinstance(target, dict):
            unknown = set(target) - {"order", "closed", "won"}
            if unknown or "order" not in target:
                raise CrmConfigError(
                    f"{where}: stage_map[{name!r}] must be a stage name or {{order: N, closed: bool, won: bool}}"
                )
        elif not isinstance(target, (str, int)):
            raise CrmConfigError(f"{where}: stage_map[{name!r}] must be a stage name or a mapping")
    for rule in cfg.salesforce.task_types:
        if set(rule) - {"field", "match", "type"} or not {"field", "match", "type"} <= set(rule):
            raise CrmConfigError(f"{where}: salesforce.task_types rules need exactly field, match, type: {rule}")
    for response, field_name in cfg.salesforce.response_fields.items():
        if not isinstance(field_name, str) or not field_name:
            raise CrmConfigError(f"{where}: salesforce.response_fields[{response!r}] must be a field name")
    if cfg.booking_window_days < 0 or cfg.reply_window_days < 0:
        raise CrmConfigError(f"{where}: booking_window_days and reply_window_days must be >= 0")
    if cfg.hubspot.ui_duration_unit not in ("ms", "s"):
        raise CrmConfigError(f"{where}: hubspot.ui_duration_unit must be 'ms' or 's'")
    for section_name in ("salesforce", "hubspot"):
        section = getattr(cfg, section_name)
        for table, mapping in section.fields.items():
            if table not in _TABLES_WITH_FIELDS:
                raise CrmConfigError(f"{where}: {section_name}.fields: {table!r} is not one of {_TABLES_WITH_FIELDS}")
            for column, source in mapping.items():
                if column not in c.TABLES[table].column_names:
                    raise CrmConfigError(f"{where}: {section_name}.fields.{table}: {column!r} is not a contract column")
                if table != c.ACTIVITIES and is_current_state_field(str(source)):
                    raise CrmConfigError(
                        f"{where}: {section_name}.fields.{table}.{column}: refusing {source!r}, a current-state "
                        "field that reveals the result"
                    )
        for table, names in section.custom_fields.items():
            if table not in _TABLES_WITH_FIELDS:
                raise CrmConfigError(f"{where}: {section_name}.custom_fields: {table!r} is not one of {_TABLES_WITH_FIELDS}")
            if not isinstance(names, (list, dict)):
                raise CrmConfigError(f"{where}: {section_name}.custom_fields.{table} must be a list of fields or a "
                                     "mapping field -> column name")
            outcome_fields = {
                k.lower() for k in [*getattr(section, "outcome_fields", {}), *getattr(section, "outcome_properties", {})]
            }
            for name, column in custom_field_columns(names):
                if column in c.TABLES[table].column_names:
                    raise CrmConfigError(
                        f"{where}: {section_name}.custom_fields.{table}: {column!r} clashes with a contract column; "
                        "map it with `fields` instead"
                    )
                if is_current_state_field(str(name)) or str(name).lower() in outcome_fields:
                    raise CrmConfigError(
                        f"{where}: {section_name}.custom_fields.{table}: refusing {name!r}, a current-state field "
                        "that reveals the result (use its history instead)"
                    )


def custom_field_columns(spec: list | dict) -> list[tuple[str, str]]:
    """``custom_fields`` of one table as (source field, output column) pairs.

    A list keeps the source name; a mapping renames (``{Tier__c: tier}``).
    """
    if isinstance(spec, dict):
        return [(str(k), str(v)) for k, v in spec.items()]
    return [(str(k), str(k)) for k in spec]


def load_config(path: Path | str | None = None, **overrides: Any) -> CrmConfig:
    """The packaged defaults, merged with the YAML at ``path`` and keyword overrides."""
    values = _read_yaml(DEFAULT_CONFIG)
    where = "defaults"
    if path is not None:
        values = merge_config(values, _read_yaml(Path(path)), str(path))
        where = str(path)
    if overrides:
        values = merge_config(values, overrides, "overrides")
    return build_config(values, where)


def config_from_dict(data: dict, where: str = "config") -> CrmConfig:
    """Defaults merged with ``data`` (as if it had been read from a YAML file)."""
    return build_config(merge_config(_read_yaml(DEFAULT_CONFIG), data, where), where)
