"""Dataset validation: every contract violation is reported, located, and all at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.dataset import (
    DatasetError,
    DatasetNotFoundError,
    Issue,
    coerce_table,
    load_dataset,
    write_dataset,
)
from features.validation import (
    parse_dataset,
    run_validate,
    stage_advances,
    summarize_dataset,
    validate_dataset,
)

T0 = pd.Timestamp("2026-01-05T09:00:00Z")
NOW = pd.Timestamp("2026-06-01T00:00:00Z")


def _ts(hours: float) -> str:
    return (T0 + pd.Timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_tables(n: int = 6) -> dict[str, pd.DataFrame]:
    """A small valid dataset, every value as the text a CSV holds (mutate cells to break it)."""
    acts = pd.DataFrame({
        c.ACTIVITY_ID: [f"a{i}" for i in range(1, n + 1)],
        c.OCCURRED_AT: [_ts(24 * i) for i in range(n)],
        c.TYPE: ["call" if i % 2 else "email" for i in range(n)],
        c.REP_ID: ["r1"] * n,
        c.DEAL_ID: ["d1" if i % 2 else "d2" for i in range(n)],
        c.CONTACT_ID: ["c1"] * n,
        c.DIRECTION: ["outbound"] * n,
        c.DURATION_S: ["60.5"] * n,
        c.PERSONALIZATION: ["0.5"] * n,
        c.IS_AUTOMATED: ["false"] * n,
        c.SEQUENCE_STEP: ["1"] * n,
        c.LOGGED_AT: [_ts(24 * i + 1) for i in range(n)],
        "campaign": ["spring"] * n,
    })
    return {
        c.ACTIVITIES: acts,
        c.RESPONSES: pd.DataFrame({c.ACTIVITY_ID: ["a1", "a2"], c.RESPONSE: ["replied", "opened"],
                                   c.OCCURRED_AT: [_ts(2), _ts(26)]}),
        c.DEAL_STAGES: pd.DataFrame({c.DEAL_ID: ["d1", "d1", "d2"], c.STAGE: ["discovery", "proposal", "discovery"],
                                     c.STAGE_ORDER: ["1", "2", "1"], c.ENTERED_AT: [_ts(-48), _ts(30), _ts(-48)]}),
        c.OUTCOMES: pd.DataFrame({c.DEAL_ID: ["d2"], c.OUTCOME: ["goals_agreed"], c.OCCURRED_AT: [_ts(50)]}),
        c.DEALS: pd.DataFrame({c.DEAL_ID: ["d1", "d2"], c.AMOUNT: ["1000", "2500.5"], c.WON: ["", "true"]}),
        c.CONTACTS: pd.DataFrame({c.CONTACT_ID: ["c1"], c.SENIORITY: ["manager"]}),
        c.ACCOUNTS: pd.DataFrame({c.ACCOUNT_ID: ["acc1"], c.EMPLOYEES: ["250"]}),
        c.REPS: pd.DataFrame({c.REP_ID: ["r1"], c.TEAM: ["east"]}),
    }


def write_csv(directory: Path, tables: dict[str, pd.DataFrame]) -> Path:
    """Write the text frames as they are (no typing), one CSV per table."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(directory / f"{name}.csv", index=False, lineterminator="\n")
    return directory


def check(tmp_path: Path, tables: dict[str, pd.DataFrame], **kwargs):
    return validate_dataset(write_csv(tmp_path / "data", tables), now=NOW, **kwargs)


def only(issues: list[Issue], code: str) -> Issue:
    found = [i for i in issues if i.code == code]
    assert len(found) == 1, [str(i) for i in issues]
    return found[0]


# --- the valid dataset -------------------------------------------------------------------


def test_valid_dataset_has_no_errors_and_no_warnings(tmp_path):
    report = check(tmp_path, make_tables())
    assert report.errors == [] and report.warnings == [], [str(i) for i in report.errors + report.warnings]
    assert report.row_counts[c.ACTIVITIES] == 6
    assert report.custom_fields[c.ACTIVITIES] == {"campaign": "categorical"}


# --- dataset-level errors ----------------------------------------------------------------


def test_missing_directory(tmp_path):
    report = validate_dataset(tmp_path / "nope")
    issue = only(report.errors, "no_directory")
    assert "nope" in str(issue) and "does not exist" in str(issue)


def test_missing_activities_table_names_the_files_found(tmp_path):
    tables = make_tables()
    del tables[c.ACTIVITIES]
    d = write_csv(tmp_path / "data", tables)
    (d / "Activities.csv").write_text("activity_id\n")
    issue = only(validate_dataset(d).errors, "missing_table")
    assert "activities.csv or activities.parquet" in issue.message
    assert "rename Activities.csv to activities.csv" in issue.message


def test_missing_outcome_sources(tmp_path):
    tables = make_tables()
    del tables[c.DEAL_STAGES], tables[c.OUTCOMES]
    issue = only(check(tmp_path, tables).errors, "missing_table")
    assert "deal_stages" in issue.message and "outcomes" in issue.message


def test_one_outcome_source_is_enough(tmp_path):
    tables = make_tables()
    del tables[c.DEAL_STAGES]
    assert check(tmp_path, tables).ok


def test_missing_required_column_names_file_column_and_lists_columns(tmp_path):
    tables = make_tables()
    tables[c.ACTIVITIES] = tables[c.ACTIVITIES].rename(columns={c.TYPE: "Type "})
    issue = only(check(tmp_path, tables).errors, "missing_column")
    text = str(issue)
    assert text.startswith("activities.csv, column type: missing required column type")
    assert "activity_id, occurred_at, Type , rep_id" in text
    assert "did you mean 'Type '" in text


# --- parse errors ------------------------------------------------------------------------


def test_unparsable_timestamp_names_row_line_column_and_value(tmp_path):
    tables = make_tables()
    tables[c.ACTIVITIES].loc[16 % 6, c.OCCURRED_AT] = "2026-13-01"
    issue = only(check(tmp_path, tables).errors, "unparsable_timestamp")
    assert str(issue).startswith("activities.csv, row 5 (line 6), column occurred_at: cannot parse '2026-13-01'")
    assert (issue.row, issue.line, issue.column) == (5, 6, c.OCCURRED_AT)


@pytest.mark.parametrize("value", ["yesterday", "now", "1700000000", "01/02/2026"])
def test_non_iso_timestamps_are_errors(tmp_path, value):
    tables = make_tables()
    tables[c.RESPONSES].loc[1, c.OCCURRED_AT] = value
    issue = only(check(tmp_path, tables).errors, "unparsable_timestamp")
    assert str(issue).startswith(f"responses.csv, row 2 (line 3), column occurred_at: cannot parse '{value}'")


def test_timestamp_out_of_supported_range(tmp_path):
    tables = make_tables()
    tables[c.DEAL_STAGES].loc[0, c.ENTERED_AT] = "2999-01-01T00:00:00Z"
    issue = [i for i in check(tmp_path, tables).errors if i.column == c.ENTERED_AT][0]
    assert str(issue).startswith("deal_stages.csv, row 1 (line 2), column entered_at: '2999-01-01T00:00:00Z'")


def test_mixed_zones_names_the_minority_rows(tmp_path):
    tables = make_tables()
    tables[c.ACTIVITIES].loc[3, c.LOGGED_AT] = "2026-01-08 10:00:00"  # naive among Z values
    issue = only(check(tmp_path, tables).errors, "mixed_zones")
    assert str(issue).startswith("activities.csv, row 4 (line 5), column logged_at: '2026-01-08 10:00:00' has no zone")
    assert "5 other values" in issue.message


def test_mixed_zones_minority_with_offset(tmp_path):
    tables = make_tables()
    acts = tables[c.ACTIVITIES]
    acts[c.OCCURRED_AT] = acts[c.OCCURRED_AT].str.rstrip("Z")
    acts.loc[2, c.OCCURRED_AT] = "2026-01-07T09:00:00+02:00"
    issue = only(check(tmp_path, tables).errors, "mixed_zones")
    assert issue.row == 3 and "carries a zone" in issue.message


def test_all_naive_or_all_offsets_are_fine(tmp_path):
    tables = make_tables()
    acts = tables[c.ACTIVITIES]
    acts[c.OCCURRED_AT] = acts[c.OCCURRED_AT].str.replace("Z", "+01:00")
    acts[c.LOGGED_AT] = acts[c.LOGGED_AT].str.rstrip("Z")
    tables[c.DEAL_STAGES][c.ENTERED_AT] = ["2026-01-03", "2026-01-06", "2026-01-03"]  # dates alone: naive
    report = check(tmp_path, tables)
    assert report.ok, [str(i) for i in report.errors]


@pytest.mark.parametrize(("value", "words"), [("2.5", "must be a whole number, not '2.5'"),
                                              ("two", "'two' is not an integer")])
def test_stage_order_not_an_integer(tmp_path, value, words):
    tables = make_tables()
    tables[c.DEAL_STAGES].loc[1, c.STAGE_ORDER] = value
    report = check(tmp_path, tables)
    assert len(report.errors) == 1, [str(i) for i in report.errors]
    assert str(report.errors[0]).startswith("deal_stages.csv, row 2 (line 3), column stage_order: ")
    assert words in report.errors[0].message


def test_whole_float_stage_order_is_accepted(tmp_path):
    tables = make_tables()
    tables[c.DEAL_STAGES].loc[1, c.STAGE_ORDER] = "2.0"
    assert check(tmp_path, tables).ok


@pytest.mark.parametrize(("table", "column", "row"), [(c.ACTIVITIES, c.DURATION_S, 2), (c.DEALS, c.AMOUNT, 2),
                                                     (c.ACTIVITIES, c.PERSONALIZATION, 6)])
def test_non_numeric_value_in_float_column(tmp_path, table, column, row):
    tables = make_tables()
    tables[table].loc[row - 1, column] = "1,000"
    issue = only(check(tmp_path, tables).errors, "not_a_number")
    assert str(issue).startswith(f"{table}.csv, row {row} (line {row + 1}), column {column}: '1,000' is not a number")


@pytest.mark.parametrize("value", ["maybe", "2", "oui"])
def test_bool_column_with_other_values(tmp_path, value):
    tables = make_tables()
    tables[c.ACTIVITIES].loc[0, c.IS_AUTOMATED] = value
    issue = only(check(tmp_path, tables).errors, "not_a_boolean")
    assert str(issue).startswith(f"activities.csv, row 1 (line 2), column is_automated: '{value}' is not a boolean")


def test_bool_words_are_accepted(tmp_path):
    tables = make_tables()
    tables[c.ACTIVITIES][c.IS_AUTOMATED] = ["TRUE", "no", "1", "0", "Yes", ""]
    ds, report = parse_dataset(write_csv(tmp_path / "data", tables), now=NOW)
    assert report.ok
    assert ds[c.ACTIVITIES][c.IS_AUTOMATED].tolist() == [True, False, True, False, True, pd.NA]


@pytest.mark.parametrize("column", [c.ACTIVITY_ID, c.TYPE, c.OCCURRED_AT])
def test_empty_required_value(tmp_path, column):
    tables = make_tables()
    tables[c.ACTIVITIES].loc[3, column] = "  " if column == c.TYPE else ""
    issue = only(check(tmp_path, tables).errors, "empty_required")
    assert str(issue).startswith(f"activities.csv, row 4 (line 5), column {column}: {column} is empty")


@pytest.mark.parametrize(("table", "key"), [(c.ACTIVITIES, c.ACTIVITY_ID), (c.DEALS, c.DEAL_ID),
                                            (c.CONTACTS, c.CONTACT_ID), (c.ACCOUNTS, c.ACCOUNT_ID),
                                            (c.REPS, c.REP_ID)])
def test_duplicate_ids_name_id_and_rows(tmp_path, table, key):
    tables = make_tables()
    frame = tables[table]
    tables[table] = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    issue = only(check(tmp_path, tables).errors, "duplicate_id")
    first = frame[key].iloc[0]
    n = len(frame) + 1
    assert issue.id == first and issue.row == 1
    assert str(issue) == (f"{table}.csv, row 1 (line 2), column {key}: duplicate {key} '{first}' in 2 rows: "
                          f"rows 1, {n} (lines 2, {n + 1})")
    assert issue.count == 1  # one extra row


def test_personalization_outside_0_1(tmp_path):
    tables = make_tables()
    tables[c.ACTIVITIES].loc[1, c.PERSONALIZATION] = "1.5"
    tables[c.ACTIVITIES].loc[4, c.PERSONALIZATION] = "-0.1"
    report = check(tmp_path, tables)
    assert [str(i) for i in report.errors] == [
        "activities.csv, row 2 (line 3), column personalization: personalization must be between 0 and 1: 1.5",
        "activities.csv, row 5 (line 6), column personalization: personalization must be between 0 and 1: -0.1",
    ]


def test_negative_duration(tmp_path):
    tables = make_tables()
    tables[c.ACTIVITIES].loc[2, c.DURATION_S] = "-30"
    issue = only(check(tmp_path, tables).errors, "out_of_range")
    assert str(issue) == "activities.csv, row 3 (line 4), column duration_s: duration_s must not be negative: -30"


# --- references --------------------------------------------------------------------------


def test_response_to_unknown_activity(tmp_path):
    tables = make_tables()
    tables[c.RESPONSES].loc[1, c.ACTIVITY_ID] = "a99"
    issue = only(check(tmp_path, tables).errors, "unknown_reference")
    assert str(issue).startswith("responses.csv, row 2 (line 3), column activity_id: activity_id 'a99' is not in "
                                 "activities.csv")
    assert issue.id == "a99"


@pytest.mark.parametrize("table", [c.DEAL_STAGES, c.OUTCOMES])
def test_stage_or_outcome_of_unknown_deal_is_an_error_when_deals_exist(tmp_path, table):
    tables = make_tables()
    tables[table].loc[0, c.DEAL_ID] = "d404"
    issue = only(check(tmp_path, tables).errors, "unknown_reference")
    assert str(issue).startswith(f"{table}.csv, row 1 (line 2), column deal_id: deal_id 'd404' is not in deals.csv")


def test_unknown_deals_are_fine_without_a_deals_table(tmp_path):
    tables = make_tables()
    del tables[c.DEALS]
    tables[c.DEAL_STAGES].loc[0, c.DEAL_ID] = "d404"
    assert check(tmp_path, tables).ok


def test_activity_deal_unknown_to_deals_is_a_warning(tmp_path):
    tables = make_tables()
    tables[c.ACTIVITIES].loc[[1, 3], c.DEAL_ID] = "d404"
    report = check(tmp_path, tables)
    assert report.ok
    issue = only(report.warnings, "unknown_reference")
    assert str(issue).startswith("activities.csv, row 2 (line 3), column deal_id: deal_id 'd404' is not in deals.csv; "
                                 "2 rows have it: rows 2, 4 (lines 3, 5)")
    assert issue.count == 2


# --- all problems at once, capped ---------------------------------------------------------


def test_all_problems_of_a_file_are_reported_in_one_run(tmp_path):
    tables = make_tables()
    acts = tables[c.ACTIVITIES]
    acts.loc[0, c.OCCURRED_AT] = "not a date"
    acts.loc[2, c.PERSONALIZATION] = "7"
    acts.loc[4, c.SEQUENCE_STEP] = "first"
    tables[c.RESPONSES].loc[0, c.RESPONSE] = ""
    report = check(tmp_path, tables)
    assert len(report.errors) == 4
    assert report.by_file() .keys() == {"activities.csv", "responses.csv"}
    assert {i.column for i in report.by_file()["activities.csv"]} == {c.OCCURRED_AT, c.PERSONALIZATION,
                                                                        c.SEQUENCE_STEP}
    assert report.headline() == "4 errors in 2 files"


def test_many_bad_rows_are_listed_with_examples_and_a_count(tmp_path):
    tables = make_tables(n=40)
    tables[c.ACTIVITIES].loc[3:, c.DURATION_S] = "n/a"  # 37 bad rows
    report = check(tmp_path, tables, max_examples=5)
    assert [i.row for i in report.errors] == [4, 5, 6, 7, 8, None]
    assert str(report.errors[-1]) == ("activities.csv, column duration_s: and 32 more rows whose value is "
                                      "not a number")
    assert report.n_errors == 37 and report.headline() == "37 errors in 1 file"


def test_lines_follow_quoted_newlines_and_blank_lines(tmp_path):
    d = write_csv(tmp_path / "data", make_tables())
    text = (d / "activities.csv").read_text().splitlines()
    text[1] = text[1].replace("spring", '"spring\nsale"')  # row 1 spans two lines
    text.insert(3, "")  # a blank line before row 3
    bad = text[4].split(",")
    bad[1] = "bad-date"
    text[4] = ",".join(bad)
    (d / "activities.csv").write_text("\n".join(text) + "\n")
    issue = only(validate_dataset(d, now=NOW).errors, "unparsable_timestamp")
    assert (issue.row, issue.line) == (3, 6)


# --- unreadable files --------------------------------------------------------------------


def test_ragged_csv_lines_are_reported_and_the_rest_still_checked(tmp_path):
    d = write_csv(tmp_path / "data", make_tables())
    lines = (d / "deals.csv").read_text().splitlines()
    lines[1] += ",extra"
    lines[2] = lines[2].replace("2500.5", "lots")
    (d / "deals.csv").write_text("\n".join(lines) + "\n")
    report = validate_dataset(d, now=NOW)
    assert str(only(report.errors, "ragged_line")).startswith("deals.csv, row 1 (line 2): has 4 fields but the header "
                                                              "has 3")
    assert str(only(report.errors, "not_a_number")).startswith("deals.csv, row 2 (line 3), column amount: 'lots'")


def test_not_utf8(tmp_path):
    d = write_csv(tmp_path / "data", make_tables())
    (d / "contacts.csv").write_bytes("contact_id,title\nc1,Direktorin f\u00fcr IT\n".encode("latin-1"))
    issue = only(validate_dataset(d, now=NOW).errors, "encoding")
    assert str(issue).startswith("contacts.csv: line 2, character 16: byte 0xFC is not UTF-8")


def test_empty_file(tmp_path):
    d = write_csv(tmp_path / "data", make_tables())
    (d / "reps.csv").write_text("")
    issue = only(validate_dataset(d, now=NOW).errors, "unreadable")
    assert str(issue) == "reps.csv: the file is empty; it needs at least a header row"


def test_duplicate_header_column(tmp_path):
    d = write_csv(tmp_path / "data", make_tables())
    (d / "reps.csv").write_text("rep_id,team,team\nr1,east,west\n")
    issue = only(validate_dataset(d, now=NOW).errors, "duplicate_column")
    assert "reps.csv" in str(issue) and "'team' appears twice" in issue.message


# --- Parquet -----------------------------------------------------------------------------


def typed(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {name: coerce_table(name, frame) for name, frame in tables.items()}


def test_parquet_wrong_type_that_cannot_be_coerced(tmp_path):
    tables = typed(make_tables())
    tables[c.ACTIVITIES][c.OCCURRED_AT] = np.arange(6, dtype="int64") + 1_700_000_000
    tables[c.DEALS][c.WON] = pd.Series([T0, T0])
    d = tmp_path / "data"
    write_dataset(tables, d, fmt="parquet")
    report = validate_dataset(d, now=NOW)
    assert sorted(str(i) for i in report.errors) == [
        "activities.parquet, column occurred_at: has type int64, which cannot be read as a timestamp; "
        "store ISO 8601 text or a Parquet timestamp",
        "deals.parquet, column won: has type timestamp[us, tz=UTC], which cannot be read as a boolean; "
        "store it as a boolean",
    ]


def test_parquet_values_are_coerced_or_reported_by_row(tmp_path):
    tables = typed(make_tables())
    acts = tables[c.ACTIVITIES]
    acts[c.PERSONALIZATION] = pd.Series(["0.5", "x", "0.1", "", "1", "0"], dtype="string")  # text in Parquet
    acts[c.OCCURRED_AT] = acts[c.OCCURRED_AT].dt.tz_localize(None)  # naive Parquet timestamps are UTC
    tables[c.DEAL_STAGES][c.STAGE_ORDER] = [1.0, 2.5, 1.0]
    tables[c.DEALS][c.DEAL_ID] = [1.0, 2.0]  # numeric ids: "1", "2"
    tables[c.DEAL_STAGES][c.DEAL_ID] = ["1", "1", "2"]
    tables[c.OUTCOMES][c.DEAL_ID] = ["2"]
    d = tmp_path / "data"
    write_dataset(tables, d, fmt="parquet")
    report = validate_dataset(d, now=NOW)
    assert [str(i) for i in report.errors] == [
        "activities.parquet, row 2, column personalization: 'x' is not a number",
        "deal_stages.parquet, row 2, column stage_order: stage_order must be a whole number, not 2.5",
    ]


# --- warnings ----------------------------------------------------------------------------


def test_warnings_are_not_errors(tmp_path):
    tables = make_tables()
    acts = tables[c.ACTIVITIES]
    acts.loc[1, c.LOGGED_AT] = _ts(24 + 24 * 10)  # logged 10 days late
    acts.loc[2, c.LOGGED_AT] = _ts(0)  # logged before it happened
    acts.loc[5, c.OCCURRED_AT] = "2027-01-01T00:00:00Z"  # future
    acts.loc[5, c.LOGGED_AT] = "2027-01-01T01:00:00Z"
    tables[c.RESPONSES].loc[1, c.RESPONSE] = "Replied"
    tables[c.CONTACTS].loc[0, c.SENIORITY] = "boss"
    tables[c.DEALS] = pd.concat([tables[c.DEALS], pd.DataFrame({c.DEAL_ID: ["d3"], c.AMOUNT: ["5"], c.WON: [""]})],
                                ignore_index=True)
    d = write_csv(tmp_path / "data", tables)
    report = validate_dataset(d, now=NOW)
    assert report.ok
    codes = {i.code: str(i) for i in report.warnings}
    assert codes["logged_late"].startswith("activities.csv, row 2 (line 3), column logged_at: logged 10.0 days after")
    assert codes["logged_before_occurred"].startswith("activities.csv, row 3 (line 4), column logged_at: logged_at "
                                                      "2026-01-05T09:00:00Z is before occurred_at")
    future = [str(i) for i in report.warnings if i.code == "future_timestamp"]
    assert future == [
        "activities.csv, row 6 (line 7), column occurred_at: 2027-01-01T00:00:00Z is in the future "
        "(now is 2026-06-01T00:00:00Z)",
        "activities.csv, row 6 (line 7), column logged_at: 2027-01-01T01:00:00Z is in the future "
        "(now is 2026-06-01T00:00:00Z)",
    ]
    assert codes["deal_without_stages"] == "deals.csv, row 3 (line 4), column deal_id: deal 'd3' has no rows in " \
                                           "deal_stages.csv"
    unknown = [str(i) for i in report.warnings if i.code == "unknown_value"]
    assert unknown[0].startswith("responses.csv, row 2 (line 3), column response: 'Replied' is not a known response; "
                                 "did you mean 'replied'?")
    assert unknown[1].startswith("contacts.csv, row 1 (line 2), column seniority: 'boss' is not a known seniority; "
                                 "known values: c_level, director")
    assert len(report.warnings) == 7
    # the same dataset loads, warnings attached; the CLI accepts it
    assert len(load_dataset(d, now=NOW).warnings) == 7
    result = CliRunner().invoke(_app(), ["validate", "--data", str(d)])
    assert result.exit_code == 0, result.output
    assert "Warnings" in result.output and "'boss' is not a known seniority" in result.output


def test_late_logging_threshold_is_configurable(tmp_path):
    tables = make_tables()
    tables[c.ACTIVITIES].loc[1, c.LOGGED_AT] = _ts(24 + 24 * 3)  # 3 days late
    d = write_csv(tmp_path / "data", tables)
    assert not [i for i in validate_dataset(d, now=NOW).warnings if i.code == "logged_late"]
    late = [i for i in validate_dataset(d, now=NOW, late_log_days=2).warnings if i.code == "logged_late"]
    assert [i.row for i in late] == [2]


def test_ignored_files_and_meta(tmp_path):
    d = write_csv(tmp_path / "data", make_tables())
    pd.DataFrame({"x": [1]}).to_parquet(d / "ground_truth.parquet")
    (d / "dataset.json").write_text('{"execution_time_fields": ["activities.campaign", "activities.nope"]}')
    ds, report = parse_dataset(d, now=NOW)
    assert report.ignored_files == ["ground_truth.parquet"]
    assert ds.execution_time_fields == {"activities.campaign", "activities.nope"}
    assert str(only(report.warnings, "bad_meta")).startswith(
        "dataset.json, column execution_time_fields: execution_time_fields entry 'activities.nope' matches nothing")


def test_bad_meta_json_is_an_error(tmp_path):
    d = write_csv(tmp_path / "data", make_tables())
    (d / "dataset.json").write_text('{"execution_time_fields": [}')
    assert str(only(validate_dataset(d).errors, "bad_meta")).startswith("dataset.json: not valid JSON")


def test_table_in_both_formats_reads_parquet_and_warns(tmp_path):
    tables = make_tables()
    d = write_csv(tmp_path / "data", tables)
    write_dataset({c.REPS: coerce_table(c.REPS, tables[c.REPS])}, d / "tmp", fmt="parquet")
    (d / "tmp" / "reps.parquet").rename(d / "reps.parquet")
    (d / "tmp").rmdir()
    report = validate_dataset(d, now=NOW)
    assert report.ok and report.files[c.REPS] == "reps.parquet"
    assert report.ignored_files == ["reps.csv"]
    assert str(only(report.warnings, "duplicate_table")).startswith("reps.csv: both reps.csv and reps.parquet exist")


def test_misspelt_contract_column_read_as_custom_field_is_flagged(tmp_path):
    tables = make_tables()
    tables[c.ACTIVITIES] = tables[c.ACTIVITIES].rename(columns={c.DURATION_S: "Duration S"})
    report = check(tmp_path, tables)
    assert report.ok and report.custom_fields[c.ACTIVITIES]["Duration S"] == "numeric"
    assert str(only(report.warnings, "custom_looks_like_contract")) == (
        "activities.csv, column Duration S: 'Duration S' is read as a custom field; rename it to 'duration_s' if it "
        "is that contract column")


def test_parquet_nested_column_is_a_type_error(tmp_path):
    tables = typed(make_tables())
    tables[c.ACTIVITIES][c.PERSONALIZATION] = [[0.5]] * 6
    d = tmp_path / "data"
    write_dataset(tables, d, fmt="parquet")
    issue = only(validate_dataset(d, now=NOW).errors, "wrong_type")
    assert str(issue).startswith("activities.parquet, column personalization: has type list<element: double>")


# --- load_dataset ------------------------------------------------------------------------


def test_load_dataset_raises_with_the_report(tmp_path):
    tables = make_tables()
    tables[c.ACTIVITIES].loc[0, c.OCCURRED_AT] = "soon"
    tables[c.RESPONSES].loc[0, c.ACTIVITY_ID] = "zz"
    d = write_csv(tmp_path / "data", tables)
    with pytest.raises(DatasetError) as info:
        load_dataset(d)
    assert isinstance(info.value, ValueError)
    assert len(info.value.report.errors) == 2
    text = str(info.value)
    assert "2 errors in 2 files" in text
    assert "activities.csv, row 1 (line 2), column occurred_at: cannot parse 'soon'" in text


def test_load_dataset_missing_directory(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(tmp_path / "nope")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DatasetError)


# --- summary -----------------------------------------------------------------------------


def test_summary_rates(tmp_path):
    ds, report = parse_dataset(write_csv(tmp_path / "data", make_tables()), now=NOW)
    summary = summarize_dataset(ds)
    assert summary.n_activities == 6
    assert summary.first_activity_at == T0 and summary.last_activity_at == T0 + pd.Timedelta(days=5)
    assert summary.output_rate == pytest.approx(1 / 6)  # a1 replied; a2 only opened
    assert summary.negative_rate == 0
    assert summary.n_outcome_events == 1 and summary.n_stage_advances == 1
    assert summary.n_deals == 2 and summary.deals_with_progress_rate == 1.0


def test_stage_advances_ignore_first_stage_regressions_and_closed_lost():
    stages = coerce_table(c.DEAL_STAGES, pd.DataFrame({
        c.DEAL_ID: ["d1", "d1", "d1", "d1", "d2", "d2"],
        c.STAGE: ["s1", "s3", "s2", "s4", "s1", "lost"],
        c.STAGE_ORDER: [1, 3, 2, 4, 1, 0],
        c.ENTERED_AT: [_ts(0), _ts(1), _ts(2), _ts(3), _ts(0), _ts(1)],
    }))
    assert stage_advances(stages.iloc[::-1]).sort_index().tolist() == [False, True, False, True, False, False]


# --- the command -------------------------------------------------------------------------


def _app():
    from training.cli import app

    return app


def test_cli_valid_dataset_prints_summary(tmp_path):
    d = write_csv(tmp_path / "data", make_tables())
    (d / "notes.txt").write_text("hello")
    result = CliRunner().invoke(_app(), ["validate", "--data", str(d)])
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in ("activities.csv", "Activities: 6 from 2026-01-05T09:00:00Z to 2026-01-10T09:00:00Z",
                     "16.7% of activities got a meaningful output", "1 outcome event and 1 stage advance",
                     "100.0% of 2 deals", "activities.campaign (categorical)", "Ignored (not tables): notes.txt",
                     "OK: the dataset satisfies the data contract"):
        assert expected in out, out


def test_cli_errors_exit_1(tmp_path):
    tables = make_tables()
    tables[c.ACTIVITIES].loc[1, c.PERSONALIZATION] = "[1.5]"
    tables[c.DEALS].loc[0, c.AMOUNT] = "lots"
    d = write_csv(tmp_path / "data", tables)
    result = CliRunner().invoke(_app(), ["validate", "--data", str(d)])
    assert result.exit_code == 1
    assert "row 2 (line 3), column personalization: '[1.5]' is not a number" in result.output
    assert result.output.rstrip().endswith("2 errors in 2 files")
    assert "Traceback" not in result.output


def test_cli_missing_directory_exit_2(tmp_path):
    result = CliRunner().invoke(_app(), ["validate", "--data", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_run_validate_returns_exit_code(tmp_path, capsys):
    assert run_validate(write_csv(tmp_path / "data", make_tables())) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.slow
def test_a_million_activities_validate_well_under_a_minute(tmp_path):
    import time

    n = 1_000_000
    rng = np.random.default_rng(0)
    occurred = T0 + pd.to_timedelta(rng.integers(0, 90 * 86400, n), unit="s")
    acts = pd.DataFrame({
        c.ACTIVITY_ID: pd.array([f"a{i}" for i in range(n)], dtype="string"),
        c.OCCURRED_AT: occurred,
        c.TYPE: pd.array(rng.choice(["call", "email"], n), dtype="string"),
        c.DEAL_ID: pd.array([f"d{i}" for i in rng.integers(0, 5000, n)], dtype="string"),
        c.PERSONALIZATION: rng.random(n),
        c.DURATION_S: rng.exponential(100, n),
        c.LOGGED_AT: occurred + pd.Timedelta(hours=1),
    })
    acts.loc[::1000, c.PERSONALIZATION] = 2.0  # 1,000 bad rows
    stages = pd.DataFrame({c.DEAL_ID: pd.array([f"d{i}" for i in range(5000)], dtype="string"),
                           c.STAGE: "s1", c.STAGE_ORDER: 1, c.ENTERED_AT: T0})
    d = tmp_path / "big"
    write_dataset({c.ACTIVITIES: acts, c.DEAL_STAGES: stages}, d, fmt="csv")
    started = time.perf_counter()
    report = validate_dataset(d, now=NOW)
    elapsed = time.perf_counter() - started
    assert report.n_errors == 1000 and len(report.errors) == 6
    assert elapsed < 45, elapsed
