"""Years a nanosecond timestamp cannot hold (before 1678, after 2261) are clear errors in every importer.

pandas 3 parses such values at microseconds, and the cast to the contract's
``datetime64[ns, UTC]`` used to raise ``OutOfBoundsDatetime`` as a traceback.
"""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from importers.crm import convert_crm
from importers.crm.errors import CrmInputError
from importers.crm.times import local_noon, parse_dates, parse_instants
from importers.flat import FlatImportError, convert_flat, mapping_from_dict, read_flat

AS_OF = "2025-05-01T00:00:00Z"


def _flat(tmp_path, rows: list[str], header: str = "id,when,result") -> object:
    path = tmp_path / "calls.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _mapping(**extra):
    return mapping_from_dict({"id_column": "id", "time_column": "when", "type": "call",
                              "outcome_column": "result", "positive": ["yes"], **extra})


# --------------------------------------------------------------------------- import-flat


@pytest.mark.parametrize("value", ["2300-01-02T10:00:00Z", "2300-01-02 10:00:00", "1500-06-01 10:00:00"])
def test_flat_time_beyond_the_nanosecond_years_names_file_row_and_column(tmp_path, value):
    path = _flat(tmp_path, ["a1,2024-01-02T10:00:00Z,yes", f"a2,{value},no", "a3,2024-01-03T10:00:00Z,no"])
    with pytest.raises(FlatImportError) as err:
        convert_flat(read_flat(path), _mapping())
    msg = str(err.value)
    assert "calls.csv" in msg and "data row 2 (line 3)" in msg and "column 'when'" in msg
    assert repr(value) in msg and "1678..2261" in msg and "(1 such rows)" in msg


def test_flat_wall_clock_time_in_a_zone_and_time_format_are_checked_too(tmp_path):
    path = _flat(tmp_path, ["a1,02/01/2024 10:00,yes", "a2,03/01/2999 10:00,no"])
    with pytest.raises(FlatImportError, match=r"data row 2 \(line 3\), column 'when': '03/01/2999 10:00' is outside"):
        convert_flat(read_flat(path), _mapping(time_format="%d/%m/%Y %H:%M", timezone="Europe/Berlin"))


def test_flat_times_inside_the_range_still_import_at_the_edges(tmp_path):
    path = _flat(tmp_path, ["a1,1678-01-02T00:00:00Z,yes", "a2,2261-12-31 23:00:00,no"])
    t = convert_flat(read_flat(path), _mapping(timezone="America/New_York")).tables[c.ACTIVITIES]
    assert str(t[c.OCCURRED_AT].dtype) == c.TIMESTAMP_DTYPE
    assert list(t[c.OCCURRED_AT]) == [pd.Timestamp("1678-01-02T00:00:00Z"), pd.Timestamp("2262-01-01T04:00:00Z")]


def test_flat_other_time_columns_are_checked_too(tmp_path):
    path = _flat(tmp_path, ["a1,2024-01-02T10:00:00Z,yes,2024-01-02T11:00:00Z",
                            "a2,2024-01-03T10:00:00Z,no,9999-01-03T11:00:00Z"], header="id,when,result,logged")
    with pytest.raises(FlatImportError, match=r"data row 2 \(line 3\), column 'logged': '9999-01-03T11:00:00Z'"):
        convert_flat(read_flat(path), _mapping(activity_columns={"logged": "logged_at"}))


def test_flat_time_rule_that_wraps_past_2261_names_the_row(tmp_path):
    # start 2261: the month goes down once at data row 3, so that row would be in 2262-01
    path = _flat(tmp_path, ["a1,nov,yes", "a2,dec,no", "a3,jan,no"], header="id,month,result")
    m = mapping_from_dict({"id_column": "id", "time_rule": {"month": "month", "start": "2261"}, "type": "call",
                           "outcome_column": "result", "positive": ["yes"]})
    with pytest.raises(FlatImportError) as err:
        convert_flat(read_flat(path), m)
    msg = str(err.value)
    assert "data row 3 (line 4), column 'month'" in msg and "year 2262" in msg and "1 year wraps" in msg


def test_flat_command_prints_one_line_and_no_traceback(tmp_path):
    from training.cli import app

    path = _flat(tmp_path, ["a1,2024-01-02T10:00:00Z,yes", "a2,2300-01-02T10:00:00Z,no"])
    result = CliRunner().invoke(app, ["import-flat", str(path), "--out", str(tmp_path / "ds"), "--id-column", "id",
                                      "--time-column", "when", "--type", "call", "--outcome-column", "result",
                                      "--positive", "yes"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "OutOfBounds" not in result.output
    assert "data row 2 (line 3), column 'when'" in result.output and "1678..2261" in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


# --------------------------------------------------------------------------- CRM adapters


@pytest.mark.parametrize("value, kw", [
    ("2300-01-02T10:00:00.000Z", {}),
    ("2300-01-02 10:00:00", {}),
    ("2300-01-02 10:00:00", {"naive_tz": "Europe/Paris"}),
    ("03/10/2300 10:30 AM", {"naive_tz": "America/Chicago", "lenient": True}),
    ("99999999999999", {}),  # epoch milliseconds in the year 5138
])
def test_crm_instants_beyond_the_years_name_file_column_and_row(value, kw):
    raw = pd.Series(["2025-01-02T10:00:00.000Z", value])
    with pytest.raises(CrmInputError) as err:
        parse_instants(raw, where="Task.csv, CreatedDate", **kw)
    assert str(err.value) == (f"Task.csv, CreatedDate: 1 value(s) are not a date-time in the supported years "
                              f"1678..2261: row 2: {value!r}")


def test_crm_instants_in_range_keep_their_milliseconds_and_the_contract_dtype():
    got = parse_instants(pd.Series(["1700000000000", "2025-01-02T10:00:00.123Z", None]), where="x.csv, C")
    assert str(got.dtype) == "datetime64[ns, UTC]"
    assert got.iloc[1] == pd.Timestamp("2025-01-02T10:00:00.123Z") and pd.isna(got.iloc[2])


def test_crm_dates_and_local_noon_beyond_the_years():
    with pytest.raises(CrmInputError, match=r"Task.csv, ActivityDate: 1 value\(s\) are not a date in the supported"):
        parse_dates(pd.Series(["2025-01-02", "2300-01-02"]), where="Task.csv, ActivityDate")
    with pytest.raises(CrmInputError, match=r"Opportunity.csv, Won__c: .* line 7: '2300-01-02'"):
        local_noon(pd.Series(["2300-01-02"]), pd.Series(["UTC"]), where="Opportunity.csv, Won__c",
                   row_labels=pd.Series(["line 7"]))


def test_salesforce_export_with_a_task_in_2300_is_a_reported_error(crm, tmp_path):
    late = crm.task(2, CreatedDate="2300-03-03T16:00:00.000Z", CompletedDateTime="2300-03-03T16:00:00.000Z")
    conversion = convert_crm("salesforce", crm.write_sf_export(tmp_path, tasks=[crm.task(1), late]), as_of=AS_OF)
    assert len(conversion.report.errors) == 1
    assert "Task.csv, CompletedDateTime" in conversion.report.errors[0]
    assert "1678..2261" in conversion.report.errors[0] and "'2300-03-03T16:00:00.000Z'" in conversion.report.errors[0]


def test_hubspot_export_with_a_call_in_2300_is_a_reported_error(crm, tmp_path):
    calls = [crm.hs_call("901", "2025-03-18T13:00:00Z"), crm.hs_call("902", "2300-03-18T13:00:00Z")]
    conversion = convert_crm("hubspot", crm.write_hs_export(tmp_path, calls=calls), as_of=AS_OF)
    assert len(conversion.report.errors) == 1
    assert "1678..2261" in conversion.report.errors[0] and "'2300-03-18T13:00:00Z'" in conversion.report.errors[0]


def test_import_crm_command_prints_the_error_without_a_traceback(crm, tmp_path):
    from training.cli import app

    late = crm.task(2, CreatedDate="2300-03-03T16:00:00.000Z", CompletedDateTime="2300-03-03T16:00:00.000Z")
    src = crm.write_sf_export(tmp_path / "in", tasks=[crm.task(1), late])
    result = CliRunner().invoke(app, ["import-crm", "salesforce", "--in", str(src), "--out", str(tmp_path / "out"),
                                      "--as-of", AS_OF])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "1678..2261" in result.output
