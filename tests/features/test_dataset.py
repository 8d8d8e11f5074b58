"""Dataset reader/writer: CSV and Parquet load to identical typed frames; custom fields are typed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features.dataset import (
    Dataset,
    DatasetError,
    Issue,
    coerce_column,
    coerce_table,
    empty_table,
    infer_custom,
    load_dataset,
    read_raw_table,
    table_path,
    write_dataset,
)
from features.validation import parse_dataset

T0 = pd.Timestamp("2026-02-02T08:30:00Z")
NOW = pd.Timestamp("2026-12-01T00:00:00Z")


def make_typed_tables() -> dict[str, pd.DataFrame]:
    """Every table and every contract kind, with missing values and custom fields of each type."""
    at = [T0 + pd.Timedelta(minutes=37 * i) for i in range(5)]
    acts = pd.DataFrame({
        c.ACTIVITY_ID: ["1001", "1002", "a-3", "a-4", "a-5"],  # numeric-looking ids stay text
        c.OCCURRED_AT: at,
        c.TYPE: ["call", "email", "meeting", "none", "email"],
        c.REP_ID: ["r1", "r2", None, "r1", "r2"],
        c.DEAL_ID: ["d1", "d1", "d2", None, "d2"],
        c.CONTACT_ID: ["c1", "c2", "c1", "c2", None],
        c.ACCOUNT_ID: ["acc1", "acc1", "acc1", "acc1", "acc1"],
        c.DIRECTION: ["outbound", "outbound", "inbound", None, "outbound"],
        c.DURATION_S: [120.5, np.nan, 1800.0, 0.0, np.nan],
        c.PERSONALIZATION: [0.25, 1.0, np.nan, 0.0, 0.125],
        c.IS_AUTOMATED: [False, True, None, False, True],
        c.SEQUENCE_STEP: [None, 2, None, None, 3],
        c.LOGGED_AT: [a + pd.Timedelta(hours=2) for a in at[:4]] + [None],
        "custom_score": [0.5, 1.5, np.nan, 2.0, 3.25],  # numeric custom field
        "custom_segment": ["smb", "ent", None, "smb", "mid"],  # categorical custom field
        "custom_flag": [True, False, True, True, False],  # boolean custom field: 1/0
    })
    tables = {
        c.ACTIVITIES: acts,
        c.RESPONSES: pd.DataFrame({c.ACTIVITY_ID: ["1001", "a-5"], c.RESPONSE: ["replied", "unsubscribed"],
                                   c.OCCURRED_AT: [at[0] + pd.Timedelta(hours=1), at[4] + pd.Timedelta(days=1)]}),
        c.DEAL_STAGES: pd.DataFrame({c.DEAL_ID: ["d1", "d1", "d2"], c.STAGE: ["qualify", "propose", "qualify"],
                                     c.STAGE_ORDER: [1, 2, 1],
                                     c.ENTERED_AT: [T0 - pd.Timedelta(days=3), T0 + pd.Timedelta(days=1),
                                                    T0 - pd.Timedelta(days=1)]}),
        c.OUTCOMES: pd.DataFrame({c.DEAL_ID: ["d2"], c.OUTCOME: ["goals_agreed"],
                                  c.OCCURRED_AT: [T0 + pd.Timedelta(days=2)], c.CONTACT_ID: ["c1"]}),
        c.DEALS: pd.DataFrame({c.DEAL_ID: ["d1", "d2"], c.ACCOUNT_ID: ["acc1", "acc1"], c.OWNER_REP_ID: ["r1", "r2"],
                               c.CREATED_AT: [T0 - pd.Timedelta(days=10), T0 - pd.Timedelta(days=5)],
                               c.AMOUNT: [10000.0, np.nan], c.PRODUCT: ["core", "core"], c.CLOSED_AT: [None, None],
                               c.WON: [None, None], "deal_tier": ["gold", "silver"]}),
        c.CONTACTS: pd.DataFrame({c.CONTACT_ID: ["c1", "c2"], c.ACCOUNT_ID: ["acc1", "acc1"],
                                  c.TITLE: ["CFO", "Buyer, Senior"], c.SENIORITY: ["c_level", "manager"],
                                  c.DEPARTMENT: ["finance", None]}),
        c.ACCOUNTS: pd.DataFrame({c.ACCOUNT_ID: ["acc1"], c.INDUSTRY: ["retail"], c.EMPLOYEES: [1200],
                                  c.REGION: ["emea"]}),
        c.REPS: pd.DataFrame({c.REP_ID: ["r1", "r2"], c.TEAM: ["east", "west"], c.HIRED_AT: [T0, None]}),
    }
    return {name: coerce_table(name, frame) for name, frame in tables.items()}


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return make_typed_tables()


def test_csv_and_parquet_round_trip_identically(tmp_path, tables):
    write_dataset(tables, tmp_path / "csv", fmt="csv")
    write_dataset(tables, tmp_path / "parquet", fmt="parquet")
    from_csv = load_dataset(tmp_path / "csv", now=NOW)
    from_parquet = load_dataset(tmp_path / "parquet", now=NOW)
    assert from_csv.tables.keys() == from_parquet.tables.keys() == tables.keys()
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(from_csv[name], from_parquet[name], check_exact=True, obj=name)
        pd.testing.assert_frame_equal(from_parquet[name], frame, check_exact=True, obj=name)
    assert from_csv.custom_fields == from_parquet.custom_fields
    assert from_csv.warnings == [] and from_parquet.warnings == []


def test_loaded_frames_have_contract_dtypes(tmp_path, tables):
    write_dataset(tables, tmp_path / "csv", fmt="csv")
    ds = load_dataset(tmp_path / "csv", now=NOW)
    for name, frame in ds.tables.items():
        for col in frame.columns:
            kind = c.TABLES[name].kind(col)
            if kind:
                assert str(frame[col].dtype) == str(pd.Series(dtype=c.PANDAS_DTYPES[kind]).dtype), (name, col)
    assert ds[c.ACTIVITIES][c.ACTIVITY_ID].tolist()[:2] == ["1001", "1002"]
    assert ds[c.CONTACTS][c.TITLE].tolist() == ["CFO", "Buyer, Senior"]
    assert ds[c.ACTIVITIES][c.OCCURRED_AT].iloc[1] == T0 + pd.Timedelta(minutes=37)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_custom_fields_detected_with_types(tmp_path, tables, fmt):
    write_dataset(tables, tmp_path / fmt, fmt=fmt)
    ds = load_dataset(tmp_path / fmt, now=NOW)
    assert ds.custom_fields[c.ACTIVITIES] == ["custom_score", "custom_segment", "custom_flag"]
    assert ds.custom_fields[c.DEALS] == ["deal_tier"]
    assert ds.custom_fields[c.REPS] == []
    acts = ds[c.ACTIVITIES]
    assert acts["custom_score"].dtype == "float64"
    assert isinstance(acts["custom_segment"].dtype, pd.StringDtype)
    assert acts["custom_flag"].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]


def test_meta_execution_time_fields_round_trip(tmp_path, tables):
    ds = Dataset(dict(tables), execution_time_fields={"activities.custom_score"})
    write_dataset(ds, tmp_path / "d", fmt="csv")
    assert load_dataset(tmp_path / "d", now=NOW).execution_time_fields == {"activities.custom_score"}


def test_load_dataset_refuses_a_broken_dataset_with_every_problem(tmp_path, tables):
    write_dataset(tables, tmp_path / "d", fmt="csv")
    path = tmp_path / "d" / "activities.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("1002", "1001")  # duplicate id in row 2
    lines[3] = lines[3].replace("2026-02-02T09:44:00Z", "2026-02-30T09:44:00Z")  # no such day, row 3
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path / "d")
    messages = [str(i) for i in info.value.report.errors]
    assert messages == [
        "activities.csv, row 3 (line 4), column occurred_at: cannot parse '2026-02-30T09:44:00Z' as a timestamp; "
        "use ISO 8601 like 2026-03-01T14:30:00Z",
        "activities.csv, row 1 (line 2), column activity_id: duplicate activity_id '1001' in 2 rows: rows 1, 2 "
        "(lines 2, 3)",
    ]


def test_load_dataset_keeps_warnings(tmp_path, tables):
    future = {**tables, c.REPS: tables[c.REPS].assign(**{c.HIRED_AT: [NOW + pd.Timedelta(days=1), pd.NaT]})}
    write_dataset(future, tmp_path / "d", fmt="parquet")
    ds = load_dataset(tmp_path / "d", now=NOW)
    assert [i.code for i in ds.warnings] == ["future_timestamp"]
    assert isinstance(ds.warnings[0], Issue)
    assert str(ds.warnings[0]).startswith("reps.parquet, row 1, column hired_at: 2026-12-02T00:00:00Z is in the future")


def test_parquet_with_float_ids_and_a_named_index(tmp_path, tables):
    d = tmp_path / "d"
    write_dataset(tables, d, fmt="parquet")
    accounts = pd.DataFrame({c.ACCOUNT_ID: [17.0, 18.0], c.EMPLOYEES: [3.0, np.nan]})
    accounts.to_parquet(d / "accounts.parquet")
    reps = tables[c.REPS].set_index(c.REP_ID)  # the key written as the index
    reps.to_parquet(d / "reps.parquet")
    ds, report = parse_dataset(d, now=NOW)
    assert [str(i) for i in report.errors] == []
    assert ds[c.ACCOUNTS][c.ACCOUNT_ID].tolist() == ["17", "18"]
    assert ds[c.ACCOUNTS][c.EMPLOYEES].tolist() == [3, pd.NA]
    assert ds[c.REPS][c.REP_ID].tolist() == ["r1", "r2"]


def test_coerce_column_whole_float_ids_become_integer_text():
    assert coerce_column(pd.Series([17.0, np.nan, 3.0]), c.STR).tolist() == ["17", pd.NA, "3"]
    assert coerce_column(pd.Series([1.5, 2.0]), c.STR).tolist() == ["1.5", "2.0"]


def test_infer_custom_types():
    assert infer_custom(pd.Series(["1", " 2.5 ", None], dtype="string")).tolist()[:2] == [1.0, 2.5]
    assert infer_custom(pd.Series(["TRUE", "false", ""], dtype="string")).tolist()[:2] == [1.0, 0.0]
    text = infer_custom(pd.Series(["yes", "no"], dtype="string"))
    assert isinstance(text.dtype, pd.StringDtype)


def test_public_helpers_still_work(tmp_path, tables):
    write_dataset(tables, tmp_path / "d", fmt="csv")
    path = table_path(tmp_path / "d", c.ACTIVITIES)
    assert path is not None and path.name == "activities.csv"
    raw = read_raw_table(path)
    assert raw[c.ACTIVITY_ID].tolist()[0] == "1001"
    assert list(empty_table(c.REPS).columns) == c.TABLES[c.REPS].column_names
    assert table_path(tmp_path / "d", "nothing") is None
