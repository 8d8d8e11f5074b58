"""import-flat: mappings, conversion, round trip, clear errors, the command. Builds its own small files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features import contract as c
from features.dataset import load_dataset
from features.validation import validate_dataset
from importers.flat import (
    FlatImportError,
    bundled_mappings,
    convert_flat,
    detect_delimiter,
    import_flat,
    load_mapping,
    mapping_from_dict,
    read_flat,
)

BANK_HEADER = (
    '"age";"job";"marital";"education";"default";"housing";"loan";"contact";"month";"day_of_week";'
    '"duration";"campaign";"pdays";"previous";"poutcome";"emp.var.rate";"cons.price.idx";'
    '"cons.conf.idx";"euribor3m";"nr.employed";"y"'
)
# (month, day_of_week, duration, pdays, job, y): in date order, wrapping from dec to mar.
BANK_ROWS = [
    ("may", "mon", 261, 999, "housemaid", "no"),
    ("may", "mon", 149, 999, "services", "no"),
    ("may", "tue", 226, 999, "unknown", "yes"),
    ("may", "thu", 151, 6, "admin.", "no"),
    ("may", "mon", 307, 999, "services", "no"),  # next Monday
    ("jun", "wed", 999, 999, "blue-collar", "yes"),  # duration 999 is a real length, not missing
    ("dec", "fri", 50, 3, "retired", "no"),
    ("mar", "tue", 400, 999, "student", "yes"),  # month goes back: 2009
    ("mar", "tue", 400, 999, "student", "yes"),  # exact duplicate of the previous row
    ("may", "fri", 120, 999, "technician", "no"),
]


def bank_line(month: str, dow: str, duration: int, pdays: int, job: str, y: str) -> str:
    return (
        f'41;"{job}";"married";"basic.4y";"no";"no";"no";"telephone";"{month}";"{dow}";{duration};2;{pdays};0;'
        f'"nonexistent";1.1;93.994;-36.4;4.857;5191;"{y}"'
    )


def write_bank_sample(path: Path, rows=BANK_ROWS) -> Path:
    text = "\r\n".join([BANK_HEADER, *[bank_line(*r) for r in rows]]) + "\r\n"
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.fixture
def bank_file(tmp_path: Path) -> Path:
    return write_bank_sample(tmp_path / "bank.csv")


CRM_CSV = """id,when,kind,contact,account,seniority,region,outcome,reply,talk_s,channel_note
a1,2026-03-02T09:00:00,Phone Call,p1,acme,vp,emea,won,yes,120,first try
a2,2026-03-03T10:30:00,E-Mail,p1,acme,vp,emea,,no,,
a3,2026-03-04 11:00:00+01:00,Phone Call,p2,acme,director,emea,lost,yes,30,n/a
a4,2026-03-05T12:00:00,E-Mail,p3,globex,manager,amer,lost,no,n/a,bounce
a5,2026-03-06T08:15:00,Phone Call,p3,globex,manager,amer,won,no,600,
"""


def crm_mapping(**extra) -> dict:
    data = {
        "id_column": "id",
        "time_column": "when",
        "timezone": "Europe/Lisbon",
        "type_column": "kind",
        "type_values": {"Phone Call": "call", "E-Mail": "email"},
        "contact_column": "contact",
        "account_column": "account",
        "contact_fields": ["seniority"],
        "account_fields": ["region"],
        "outcome_column": "outcome",
        "positive": ["won"],
        "negative": ["lost"],
        "outcome_missing": "negative",
        "outcome_name": "closed_won",
        "output_column": "reply",
        "output_positive": ["yes"],
        "output_response": "connected",
        "activity_columns": {"talk_s": "duration_s"},
        "execution_time": ["talk_s"],
        "missing": {"talk_s": ["n/a"], "channel_note": ["n/a"]},
    }
    return data | extra


@pytest.fixture
def crm_file(tmp_path: Path) -> Path:
    p = tmp_path / "crm.csv"
    p.write_text(CRM_CSV, encoding="utf-8")
    return p


def bank_mapping(**overrides):
    return load_mapping("bank_marketing", **overrides)


# --------------------------------------------------------------------------- bank mapping, round trip


def test_bank_mapping_is_bundled_and_round_trips_as_data():
    assert "bank_marketing" in bundled_mappings()
    m = bank_mapping()
    assert m.execution_time == ("duration",)
    assert m.missing == {"*": ("unknown",), "pdays": ("999",)}
    assert m.positive == ("yes",) and m.negative == ("no",)  # yes/no stay text, not YAML booleans
    again = mapping_from_dict(yaml.safe_load(yaml.safe_dump(m.to_dict())))
    assert again == m


def test_bank_sample_round_trips_through_the_dataset(bank_file, tmp_path):
    out = tmp_path / "ds"
    report = import_flat(bank_file, out, bank_mapping())
    ds = load_dataset(out)
    acts = ds[c.ACTIVITIES]
    src = pd.read_csv(bank_file, sep=";", dtype=str, keep_default_na=False)

    assert report.rows_read == report.rows_written == len(src) == len(acts)
    assert list(acts[c.ACTIVITY_ID]) == [f"row-{i}" for i in range(1, len(src) + 1)]
    assert (acts[c.TYPE] == "call").all()
    assert acts[c.OCCURRED_AT].is_monotonic_increasing
    # every other column comes back as a custom field with its value (declared-missing as NaN)
    assert ds.custom_fields[c.ACTIVITIES] == [col for col in src.columns if col != "y"]
    for col in src.columns.drop("y"):
        got = acts[col]
        want = src[col].where(~src[col].isin(["unknown"] + (["999"] if col == "pdays" else [])))
        if pd.api.types.is_numeric_dtype(got):
            np.testing.assert_allclose(got.to_numpy(float), pd.to_numeric(want).to_numpy(float), err_msg=col)
        else:
            assert list(got.astype(object).where(got.notna(), None)) == list(want.astype(object).where(want.notna(), None)), col
    assert acts["duration"].iloc[5] == 999.0  # only pdays treats 999 as missing
    assert pd.isna(acts["pdays"].iloc[0]) and acts["pdays"].iloc[3] == 6.0
    assert pd.isna(acts["job"].iloc[2])

    # one deal per row; a "yes" is an outcome on that deal one second after the call
    outcomes = ds[c.OUTCOMES].set_index(c.DEAL_ID)
    yes = src.index[src["y"] == "yes"]
    assert sorted(outcomes.index) == sorted(f"deal-row-{i + 1}" for i in yes)
    for i in yes:
        row = acts.iloc[i]
        assert row[c.DEAL_ID] == f"deal-row-{i + 1}"
        assert outcomes.loc[row[c.DEAL_ID], c.OCCURRED_AT] == row[c.OCCURRED_AT] + pd.Timedelta(seconds=1)
    assert (outcomes[c.OUTCOME] == "term_deposit_subscribed").all()
    assert len(ds[c.DEALS]) == len(src)
    assert ds.execution_time_fields == {"activities.duration"}
    meta = json.loads((out / c.DATASET_META_FILE).read_text())
    assert meta["execution_time_fields"] == ["activities.duration"]

    assert report.n_positive == 4 and report.outcome_rate == pytest.approx(0.4)
    checked = validate_dataset(out)
    assert checked.ok and checked.n_warnings == 0, [str(i) for i in [*checked.errors, *checked.warnings]]
    assert report.duplicate_rows == 1 and report.duplicate_examples == [(8, 9)]
    by_col = {f.column: f for f in report.fields}
    assert by_col["duration"].timing == "execution" and by_col["age"].timing == "plan"
    assert by_col["pdays"].n_declared_missing == 8 and by_col["pdays"].type == "number"
    assert by_col["job"].n_missing == 1 and by_col["job"].type == "text"


def test_bank_time_rule_places_day_runs_on_their_weekdays_and_wraps_years(bank_file):
    conv = convert_flat(read_flat(bank_file), bank_mapping())
    t = conv.tables[c.ACTIVITIES][c.OCCURRED_AT]
    dates = [ts.date().isoformat() for ts in t]
    # May 2008: Mon 5th, Tue 6th, Thu 8th, then the next Monday; Jun: first Wed; Dec: first Fri;
    # the month goes back to March, so 2009: first Tue; then May 2009: first Fri.
    assert dates == [
        "2008-05-05", "2008-05-05", "2008-05-06", "2008-05-08", "2008-05-12",
        "2008-06-04", "2008-12-05", "2009-03-03", "2009-03-03", "2009-05-01",
    ]
    # no time of day is invented: every call of a date is at noon
    assert all((ts.hour, ts.minute, ts.second) == (12, 0, 0) for ts in t)
    assert any("1 year wraps" in note for note in conv.report.time_notes)
    # or, asked to, the rows of a date are spread over working hours in file order
    rule = bank_mapping().to_dict()["time_rule"] | {"hours": [9, 18]}
    t = convert_flat(read_flat(bank_file), bank_mapping(time_rule=rule)).tables[c.ACTIVITIES][c.OCCURRED_AT]
    assert t.iloc[0] == pd.Timestamp("2008-05-05T11:15:00Z") and t.iloc[1] == pd.Timestamp("2008-05-05T15:45:00Z")
    assert t.is_monotonic_increasing and all(9 <= ts.hour < 18 for ts in t)


def test_time_rule_without_day_of_week_spreads_a_month_over_its_days(bank_file):
    m = mapping_from_dict(bank_mapping().to_dict() | {"time_rule": {"month": "month", "start": "2008"}})
    t = convert_flat(read_flat(bank_file), m).tables[c.ACTIVITIES][c.OCCURRED_AT]
    may = t.iloc[:5]
    assert [ts.day for ts in may] == [1, 7, 13, 19, 25]
    assert t.is_monotonic_increasing


# --------------------------------------------------------------------------- a generic CRM export


def test_generic_export_with_keys_output_and_contract_columns(crm_file, tmp_path):
    out = tmp_path / "crm_ds"
    report = import_flat(crm_file, out, mapping_from_dict(crm_mapping()), fmt="csv")
    ds = load_dataset(out)
    acts = ds[c.ACTIVITIES].set_index(c.ACTIVITY_ID)

    assert list(acts[c.TYPE]) == ["call", "email", "call", "email", "call"]
    # naive times are Lisbon local time (WET = UTC+0 in early March); an explicit offset is kept
    assert acts.loc["a1", c.OCCURRED_AT] == pd.Timestamp("2026-03-02T09:00:00Z")
    assert acts.loc["a3", c.OCCURRED_AT] == pd.Timestamp("2026-03-04T10:00:00Z")
    # one deal per contact
    assert list(acts[c.DEAL_ID]) == ["deal-p1", "deal-p1", "deal-p2", "deal-p3", "deal-p3"]
    assert acts.loc["a1", c.DURATION_S] == 120.0 and pd.isna(acts.loc["a4", c.DURATION_S])
    assert "talk_s" not in acts.columns and list(ds.custom_fields[c.ACTIVITIES]) == ["channel_note"]
    assert pd.isna(acts.loc["a3", "channel_note"])

    outcomes = ds[c.OUTCOMES]
    assert list(outcomes[c.DEAL_ID]) == ["deal-p1", "deal-p3"]
    assert list(outcomes[c.CONTACT_ID]) == ["p1", "p3"]
    assert (outcomes[c.OUTCOME] == "closed_won").all()
    responses = ds[c.RESPONSES]
    assert list(responses[c.ACTIVITY_ID]) == ["a1", "a3"] and (responses[c.RESPONSE] == "connected").all()

    contacts = ds[c.CONTACTS].set_index(c.CONTACT_ID)
    assert contacts.loc["p1", "seniority"] == "vp" and contacts.loc["p3", c.ACCOUNT_ID] == "globex"
    assert set(ds[c.ACCOUNTS][c.ACCOUNT_ID]) == {"acme", "globex"}
    assert ds[c.ACCOUNTS].set_index(c.ACCOUNT_ID).loc["globex", "region"] == "amer"
    deals = ds[c.DEALS].set_index(c.DEAL_ID)
    assert deals.loc["deal-p3", c.CREATED_AT] == acts.loc["a4", c.OCCURRED_AT]
    assert ds.execution_time_fields == {"activities.duration_s"}
    assert report.n_positive == 2 and report.n_outputs == 2 and report.n_contacts == 3
    checked = validate_dataset(out)
    assert checked.ok, [str(i) for i in checked.errors]
    assert any("without an outcome were counted as not positive" in w for w in report.warnings)


def test_contact_and_account_fields_fill_contract_columns_and_are_checked(crm_file, tmp_path):
    conv = convert_flat(read_flat(crm_file), mapping_from_dict(crm_mapping()))
    contacts = conv.tables[c.CONTACTS]
    assert list(contacts.columns) == [c.CONTACT_ID, c.ACCOUNT_ID, "seniority"]
    bad = tmp_path / "bad.csv"
    bad.write_text(CRM_CSV.replace("acme,vp,emea", "acme,vp,12.5"), encoding="utf-8")
    m = mapping_from_dict(crm_mapping(account_fields=["region"]))
    conv = convert_flat(read_flat(bad), m)  # region is text: any value fits
    assert conv.report.warnings  # acme carries two regions: the first is kept, and said so
    assert any("'region': 1 account_id values carry more than one value" in w for w in conv.report.warnings)
    emp = tmp_path / "emp.csv"
    emp.write_text(CRM_CSV.replace("region", "employees").replace("amer", "many").replace("emea", "120"))
    msg = _err(convert_flat, read_flat(emp), mapping_from_dict(crm_mapping(account_fields=["employees"])))
    assert "data row 4 (line 5), column 'employees': 'many' is not a whole number (employees)" in msg
    m = mapping_from_dict(crm_mapping(account_fields=["talk_s"], activity_columns={}, execution_time=[]))
    conv = convert_flat(read_flat(crm_file), m)
    assert conv.tables[c.ACCOUNTS]["talk_s"].dtype == "float64"


def test_rows_without_outcome_can_be_dropped(crm_file):
    conv = convert_flat(read_flat(crm_file), mapping_from_dict(crm_mapping(outcome_missing="drop")))
    assert list(conv.tables[c.ACTIVITIES][c.ACTIVITY_ID]) == ["a1", "a3", "a4", "a5"]
    assert conv.report.rows_dropped == 1


@pytest.mark.parametrize("delim", [",", ";", "\t", "|"])
def test_delimiter_is_detected(tmp_path, delim):
    p = tmp_path / "f.csv"
    rows = [["when", "y", "note"], ["2026-01-01T10:00:00Z", "1", "a, b; c"], ["2026-01-02T10:00:00Z", "0", "x"]]
    p.write_text("\n".join(delim.join(f'"{v}"' for v in r) for r in rows) + "\n", encoding="utf-8")
    assert detect_delimiter(p.read_text()) == delim
    conv = convert_flat(read_flat(p), mapping_from_dict({"time_column": "when", "type": "email",
                                                         "outcome_column": "y", "positive": ["1"]}))
    assert list(conv.tables[c.ACTIVITIES]["note"]) == ["a, b; c", "x"]


# --------------------------------------------------------------------------- clear errors


def _err(fn, *args, **kwargs) -> str:
    with pytest.raises(FlatImportError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_unknown_key_is_named_with_a_suggestion():
    msg = _err(mapping_from_dict, {"outcome_column": "y", "positive": ["1"], "time_column": "t",
                                   "type": "call", "excution_time": ["d"]})
    assert "unknown key 'excution_time'" in msg and "did you mean 'execution_time'" in msg
    msg = _err(mapping_from_dict, {"outcome_column": "y", "positive": ["1"], "type": "call",
                                   "time_rule": {"month": "m", "start": "2008", "weekday": "d"}})
    assert "unknown key time_rule.'weekday'" in msg


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"positive": ["1"], "time_column": "t", "type": "call"}, "outcome_column is required"),
        ({"outcome_column": "y", "time_column": "t", "type": "call"}, "positive is required"),
        ({"outcome_column": "y", "positive": ["1"], "type": "call"}, "exactly one of time_column"),
        ({"outcome_column": "y", "positive": ["1"], "time_column": "t"}, "exactly one of type"),
        ({"outcome_column": "y", "positive": ["1"], "time_column": "t", "type": "call",
          "execution_time": ["y"]}, "execution_time lists 'y', which is the outcome_column"),
        ({"outcome_column": "y", "positive": ["1"], "time_column": "t", "type": "call",
          "id_column": "y"}, "column 'y' is used both as id_column and as outcome_column"),
        ({"outcome_column": "y", "positive": ["1"], "time_column": "t", "type": "call",
          "contact_fields": ["s"]}, "contact_fields need contact_column"),
        ({"outcome_column": "y", "positive": ["1"], "time_column": "t", "type": "call",
          "activity_columns": {"x": "occurred_at"}}, "not a mappable activities column"),
        ({"outcome_column": "y", "positive": ["1"], "time_column": "t", "type": "call",
          "outcome_missing": "guess"}, "outcome_missing must be one of"),
        ({"outcome_column": "y", "positive": ["1"], "time_column": "t", "type": "call",
          "timezone": "Mars/Olympus"}, "not a known time zone"),
        ({"outcome_column": "y", "positive": ["1", "0"], "negative": ["0"], "time_column": "t",
          "type": "call"}, "listed in both positive and negative"),
        ({"outcome_column": "y", "positive": ["1"], "type": "call",
          "time_rule": {"month": "m", "start": "May 2008"}}, "time_rule.start must be YYYY or YYYY-MM"),
        ({"outcome_column": "y", "positive": ["1"], "time_column": "t", "type": "call",
          "output_column": "r", "output_positive": ["y"], "output_response": "liked"}, "output_response 'liked'"),
        ({"outcome_column": "y", "positive": {"a": 1}, "time_column": "t", "type": "call"},
         "positive must be a list"),
    ],
)
def test_malformed_mappings_are_refused(data, expected):
    assert expected in _err(mapping_from_dict, data)


def test_mapping_file_errors_name_the_file(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("outcome_column: y\npositive: [1\n", encoding="utf-8")
    msg = _err(load_mapping, p)
    assert str(p) in msg and "not valid YAML" in msg
    p.write_text("- a\n- b\n", encoding="utf-8")
    assert "expected a mapping" in _err(load_mapping, p)
    assert "no such file, and no bundled mapping" in _err(load_mapping, tmp_path / "nope.yaml")


def test_referenced_column_missing_from_the_file_is_named_with_the_header(bank_file):
    m = bank_mapping(execution_time=["durration"])
    msg = _err(convert_flat, read_flat(bank_file), m)
    assert "column 'durration' named by execution_time is not in the file" in msg
    assert "did you mean 'duration'" in msg and "the header has: age, job, marital" in msg


def test_positive_value_that_never_occurs_is_refused(bank_file):
    msg = _err(convert_flat, read_flat(bank_file), bank_mapping(positive=["Yes"], negative=None))
    assert "positive value 'Yes' never occurs in column 'y'" in msg and "'no' (6)" in msg


def test_value_outside_positive_and_negative_names_row_and_line(tmp_path):
    rows = [*BANK_ROWS[:3], ("may", "fri", 10, 999, "admin.", "maybe")]
    msg = _err(convert_flat, read_flat(write_bank_sample(tmp_path / "b.csv", rows)), bank_mapping())
    assert "data row 4 (line 5), column 'y': value 'maybe' is neither positive" in msg


def test_unparsable_timestamp_names_row_line_and_column(tmp_path):
    p = tmp_path / "t.csv"
    # a quoted field spanning two lines makes the file line differ from the row number
    p.write_text('when,y,note\n2026-01-01T10:00:00Z,1,"two\nlines"\n2026-01-02T10:00:00Z,0,x\n03/01/2026,0,y\n')
    m = mapping_from_dict({"time_column": "when", "type": "call", "outcome_column": "y", "positive": ["1"]})
    msg = _err(convert_flat, read_flat(p), m)
    assert "data row 3 (line 5), column 'when': cannot parse '03/01/2026' as ISO 8601" in msg
    assert "time_format" in msg
    ok = mapping_from_dict(m.to_dict() | {"time_format": "%Y-%m-%dT%H:%M:%SZ"})
    assert "time_format '%Y-%m-%dT%H:%M:%SZ'" in _err(convert_flat, read_flat(p), ok)


def test_bad_month_and_wrong_start_are_named(tmp_path):
    rows = [*BANK_ROWS[:3], ("mai", "tue", 10, 999, "admin.", "no")]
    msg = _err(convert_flat, read_flat(write_bank_sample(tmp_path / "b.csv", rows)), bank_mapping())
    assert "data row 4 (line 5), column 'month': 'mai' is not a month" in msg
    rule = bank_mapping().to_dict()["time_rule"] | {"start": "2008-06"}
    msg = _err(convert_flat, read_flat(write_bank_sample(tmp_path / "c.csv")), bank_mapping(time_rule=rule))
    assert "the first row is in month 5, but time_rule.start is 2008-06" in msg


def test_ragged_rows_duplicate_ids_and_contract_clashes(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("id,when,y\na,2026-01-01T00:00:00Z,1\nb,2026-01-02T00:00:00Z\nc,2026-01-03T00:00:00Z,0,9\n")
    msg = _err(read_flat, p)
    assert "data row 2 (line 3) has 2 fields, the header has 3 (1 more such rows)" in msg

    p.write_text("id,when,y\na,2026-01-01T00:00:00Z,1\na,2026-01-02T00:00:00Z,0\n")
    base = {"id_column": "id", "time_column": "when", "type": "call", "outcome_column": "y", "positive": ["1"]}
    msg = _err(convert_flat, read_flat(p), mapping_from_dict(base))
    assert "id 'a' appears in data row 1 (line 2) and data row 2 (line 3)" in msg

    p.write_text("when,y,direction\n2026-01-01T00:00:00Z,1,out\n")
    msg = _err(convert_flat, read_flat(p), mapping_from_dict({k: v for k, v in base.items() if k != "id_column"}))
    assert "column 'direction' would become a field of activities, but the contract defines" in msg

    p.write_text("when,y\n2026-01-01T00:00:00Z,1\n2026-01-02T00:00:00Z,\n")
    msg = _err(convert_flat, read_flat(p), mapping_from_dict({k: v for k, v in base.items() if k != "id_column"}))
    assert "data row 2 (line 3), column 'y': the outcome is missing (1 such rows)" in msg

    p.write_text("")
    assert "the file is empty" in _err(read_flat, p)


def test_non_empty_output_directory_needs_overwrite(bank_file, tmp_path):
    out = tmp_path / "ds"
    import_flat(bank_file, out, bank_mapping())
    (out / "contacts.csv").write_text("contact_id\nstale\n")
    (out / "notes.txt").write_text("mine")
    assert "not empty; give --overwrite" in _err(import_flat, bank_file, out, bank_mapping())
    import_flat(bank_file, out, bank_mapping(), overwrite=True)
    assert not (out / "contacts.csv").exists() and (out / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- the command


@pytest.fixture
def cli():
    from training.cli import app

    return lambda *args: CliRunner().invoke(app, [str(a) for a in args])


def test_command_imports_with_the_bundled_mapping_and_prints_the_report(cli, bank_file, tmp_path):
    out, report = tmp_path / "ds", tmp_path / "report.json"
    result = cli("import-flat", bank_file, "--mapping", "bank_marketing", "--out", out, "--report", report)
    assert result.exit_code == 0, result.output
    assert "rows: 10 read, 10 written, 0 dropped" in result.output
    assert "duplicates: 1 rows repeat an earlier row exactly" in result.output
    assert "EXECUTION-TIME" in result.output
    assert json.loads(report.read_text())["n_positive"] == 4
    assert len(load_dataset(out)[c.ACTIVITIES]) == 10


def test_command_options_alone_make_a_mapping(cli, crm_file, tmp_path):
    out = tmp_path / "ds"
    result = cli(
        "import-flat", "--in", crm_file, "--out", out, "--id-column", "id", "--time-column", "when",
        "--type", "call", "--outcome-column", "outcome", "--positive", "won", "--outcome-missing", "negative",
        "--missing", "n/a", "--missing", "talk_s=", "--execution-time", "talk_s", "--format", "csv",
    )
    assert result.exit_code == 0, result.output
    ds = load_dataset(out)
    assert ds.execution_time_fields == {"activities.talk_s"}
    assert pd.isna(ds[c.ACTIVITIES].set_index(c.ACTIVITY_ID).loc["a4", "talk_s"])
    assert (out / "activities.csv").exists()


def test_command_option_overrides_the_mapping(cli, bank_file, tmp_path):
    result = cli("import-flat", bank_file, "--mapping", "bank_marketing", "--out", tmp_path / "ds",
                 "--execution-time", "duration", "--execution-time", "campaign")
    assert result.exit_code == 0, result.output
    assert load_dataset(tmp_path / "ds").execution_time_fields == {"activities.duration", "activities.campaign"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mapping", "bank_marketing", "--positive", "Yes"], "positive value 'Yes' never occurs"),
        (["--mapping", "no_such_mapping"], "no bundled mapping of that name"),
        (["--time-column", "when"], "outcome_column is required"),
        (["--mapping", "bank_marketing", "--format", "xlsx"], "--format must be parquet or csv"),
    ],
)
def test_command_errors_are_one_clear_line(cli, bank_file, tmp_path, args, expected):
    result = cli("import-flat", bank_file, "--out", tmp_path / "ds", *args)
    assert result.exit_code == 1
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "ds").exists()


def test_command_needs_exactly_one_source(cli, bank_file, tmp_path):
    result = cli("import-flat", "--out", tmp_path / "ds", "--mapping", "bank_marketing")
    assert result.exit_code == 1 and "give the flat file once" in result.output
    result = cli("import-flat", tmp_path / "nope.csv", "--out", tmp_path / "ds", "--mapping", "bank_marketing")
    assert result.exit_code == 1 and "no such file" in result.output


def test_byte_order_mark_is_dropped_and_bad_encoding_is_named(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffwhen;y\r\n2026-01-01T10:00:00Z;1\r\n".encode())
    flat = read_flat(p)
    assert flat.header == ["when", "y"] and flat.delimiter == ";"
    p.write_bytes("when,y,name\n2026-01-01T10:00:00Z,1,ok\n2026-01-02T10:00:00Z,0,Jos\xe9\n".encode("latin-1"))
    assert "line 3 is not valid utf-8-sig text; set the mapping key encoding" in _err(read_flat, p)
    m = mapping_from_dict({"time_column": "when", "type": "call", "outcome_column": "y", "positive": ["1"],
                           "encoding": "latin-1"})
    conv = convert_flat(read_flat(p, encoding=m.encoding), m)
    assert list(conv.tables[c.ACTIVITIES]["name"]) == ["ok", "José"]


# --------------------------------------------------------------------------- time zones of naive times


def _times_mapping(**extra):
    return mapping_from_dict({"id_column": "id", "time_column": "when", "timezone": "America/New_York",
                              "type_column": "kind", "outcome_column": "outcome", "positive": ["won"],
                              "negative": ["lost"]} | extra)


def test_date_only_times_are_local_midnight_not_read_as_an_offset(tmp_path):
    # "-2025" / "-10" at the end of a date are parts of it, not a UTC offset
    p = tmp_path / "d.csv"
    p.write_text("id,when,kind,outcome\na1,10-03-2025,call,won\n", encoding="utf-8")
    got = convert_flat(read_flat(p), _times_mapping(time_format="%d-%m-%Y")).tables[c.ACTIVITIES][c.OCCURRED_AT]
    assert list(got) == [pd.Timestamp("2025-03-10T04:00:00Z")]  # midnight in New York (EDT)
    p.write_text("id,when,kind,outcome\na1,2025-03-10,call,won\na2,2025-03-10T00:00:00-05:00,call,lost\n",
                 encoding="utf-8")
    got = convert_flat(read_flat(p), _times_mapping()).tables[c.ACTIVITIES][c.OCCURRED_AT]
    assert list(got) == [pd.Timestamp("2025-03-10T04:00:00Z"), pd.Timestamp("2025-03-10T05:00:00Z")]


def test_flat_daylight_saving_follows_the_crm_rule_and_is_reported(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("id,when,kind,outcome,logged\na1,2025-11-02 01:30,call,won,2025-11-02 01:45\n"
                 "a2,2025-03-09 02:30,call,lost,\n", encoding="utf-8")
    conv = convert_flat(read_flat(p), _times_mapping(activity_columns={"logged": "logged_at"}))
    acts = conv.tables[c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    # repeated hour: the first (daylight-time) reading; skipped hour: moved forward by the gap
    assert acts.loc["a1", c.OCCURRED_AT] == pd.Timestamp("2025-11-02T05:30:00Z")
    assert acts.loc["a2", c.OCCURRED_AT] == pd.Timestamp("2025-03-09T07:30:00Z")
    # a naive mapped timestamp is in the mapping's zone too, not UTC
    assert acts.loc["a1", c.LOGGED_AT] == pd.Timestamp("2025-11-02T05:45:00Z")
    notes = "\n".join(conv.report.time_notes)
    assert "daylight-saving change in America/New_York" in notes
    assert "2 time(s) in the repeated hour" in notes and "1 in the skipped hour" in notes


def test_crm_bare_dates_are_local_midnight_in_the_portal_zone():
    from importers.crm.times import parse_instants

    got = parse_instants(pd.Series(["2025-03-10", "2025-03-10 00:00", "2025-03-10T00:00:00-05:00"]),
                         where="deals.csv, Close date", naive_tz="America/New_York")
    assert list(got) == [pd.Timestamp("2025-03-10T04:00:00Z")] * 2 + [pd.Timestamp("2025-03-10T05:00:00Z")]
