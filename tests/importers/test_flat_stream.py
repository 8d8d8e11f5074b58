"""The streaming ``import-flat`` writes exactly what the in-memory path writes, and fails exactly as it fails.

Random files (ties, missing values, drops, duplicate rows, time rules, custom fields whose
type only the end of the file decides, contact and account fields) are imported twice: with
``stream=False`` (``read_flat`` + ``convert_flat`` + ``write_dataset``, the reference) and
streamed in small chunks. Every file, ``dataset.json``, the report and the loaded dataset
must be equal; a streamed import must not fall back to the reference path.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import importers.flat as flat_mod
from features.dataset import load_dataset
from importers.flat import FlatImportError, import_flat, mapping_from_dict

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["mon", "tue", "wed", "thu", "fri"]


def random_file(path: Path, n: int, seed: int, *, ids: bool = True, late_text: bool = True,
                ordered: bool = True, dup_rows: bool = False, offsets: bool = True) -> Path:
    """A flat export with every kind of column the mappings below use."""
    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2026-03-20T00:00:00")  # Europe/Lisbon changes clocks on 2026-03-29 and 10-25
    steps = rng.integers(0, 4, n) * 1800  # ties: a quarter of the steps are 0
    secs = np.cumsum(steps) if ordered else rng.integers(0, 200 * 86400, n)
    when = [(base + pd.Timedelta(seconds=int(s))).isoformat() for s in secs]
    for i in rng.choice(n, n // 20 if offsets else 0, replace=False):
        when[i] = when[i] + "+02:00"  # some carry their offset (out of time order)
    months, dows, m, d = [], [], 4, 0
    for i in range(n):  # in order from May, wrapping over the year; runs of one weekday
        if i and rng.random() < 0.04:
            m = (m + int(rng.integers(1, 3))) % 12
            d = 0
        elif rng.random() < 0.15:
            d = (d + 1) % 5
        months.append(MONTHS[m])
        dows.append(DAYS[d])
    rows = []
    for i in range(n):
        contact = f"p{rng.integers(0, n // 6)}" if rng.random() > 0.1 else ""
        account = f"acc{rng.integers(0, 12)}" if rng.random() > 0.15 else ""
        outcome = rng.choice(["won", "lost", "lost", "lost", ""])
        num = f"{rng.normal():.3f}" if rng.random() > 0.2 else rng.choice(["", "n/a"])
        tf = rng.choice(["true", "False", ""])
        text = rng.choice(["alpha", "beta", " gamma ", "", "n/a"])
        late = str(rng.integers(0, 100)) if not (late_text and i > n - 5) else "see notes"
        rows.append([
            f"a{i:05d}" if ids else "", when[i], rng.choice(["Phone Call", "E-Mail"]), contact, account,
            f"r{rng.integers(0, 5)}" if rng.random() > 0.1 else "", outcome, rng.choice(["yes", "no", ""]),
            str(rng.integers(0, 600)) if rng.random() > 0.2 else "n/a",
            rng.choice(["vp", "director", ""]), rng.choice(["emea", "amer", ""]),
            str(rng.integers(1, 5000)) if rng.random() > 0.3 else "", num, tf, text, late, "",
            months[i], dows[i], f"d{rng.integers(0, n // 4)}" if rng.random() > 0.3 else "",
        ])
    if dup_rows:
        for i in rng.choice(n - 1, n // 15, replace=False):
            rows[i + 1] = list(rows[i])
    header = ["id", "when", "kind", "contact", "account", "rep", "outcome", "reply", "talk_s", "seniority",
              "region", "employees", "score", "flag", "note", "late", "empty", "month", "dow", "deal"]
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(header) + "\n")
        f.writelines(",".join(f'"{v}"' if "," in v else v for v in r) + "\n" for r in rows)
    return path


CRM = {
    "id_column": "id", "time_column": "when", "timezone": "Europe/Lisbon",
    "type_column": "kind", "type_values": {"Phone Call": "call", "E-Mail": "email"},
    "contact_column": "contact", "account_column": "account", "rep_column": "rep",
    "contact_fields": ["seniority"], "account_fields": ["region", "employees"],
    "outcome_column": "outcome", "positive": ["won"], "negative": ["lost"], "outcome_missing": "negative",
    "output_column": "reply", "output_positive": ["yes"],
    "activity_columns": {"talk_s": "duration_s"}, "execution_time": ["talk_s", "score"],
    "missing": {"*": ["n/a"]}, "drop": ["deal", "month", "dow"],
}
ROWS_OWN_DEALS = {  # no id, no contact: one deal per row; rows dropped without an outcome
    "time_column": "when", "type": "call", "account_column": "account", "outcome_column": "outcome",
    "positive": ["won"], "outcome_missing": "drop", "missing": {"note": ["n/a"]}, "drop": ["id", "contact"],
}
TIME_RULE = {  # months in file order roll the year; day-of-week runs are dates
    "time_rule": {"month": "month", "day_of_week": "dow", "start": "2020-05", "hours": [9, 18]},
    "type": "call", "deal_column": "deal", "contact_column": "contact", "outcome_column": "outcome",
    "positive": ["won"], "outcome_missing": "drop", "drop": ["id", "when"],
}
TIME_RULE_NO_DOW = {
    "time_rule": {"month": "month", "start": "2019", "hours": [12, 12]}, "type_column": "kind",
    "outcome_column": "outcome", "positive": ["won"], "outcome_missing": "negative", "drop": ["when"],
    "id_column": "id",
}


def _import_both(tmp_path: Path, src: Path, mapping: dict, fmt: str, chunk_rows: int, monkeypatch) -> tuple:
    m = mapping_from_dict(mapping)
    ref_out, new_out = tmp_path / f"ref-{fmt}", tmp_path / f"new-{fmt}"
    ref = import_flat(src, ref_out, m, fmt=fmt, stream=False)

    def no_fallback(*args, **kwargs):
        raise AssertionError("the streaming import fell back to reading the file whole")

    with monkeypatch.context() as mp:
        mp.setattr(flat_mod, "read_flat", no_fallback)
        new = import_flat(src, new_out, m, fmt=fmt, chunk_rows=chunk_rows)
    return ref, new, ref_out, new_out


def _assert_same_dataset(ref, new, ref_out: Path, new_out: Path, fmt: str) -> None:
    assert [Path(p).name for p in new.files] == [Path(p).name for p in ref.files]
    a, b = ref.to_dict(), new.to_dict()
    a.pop("files"), b.pop("files")
    assert b == a
    assert sorted(p.name for p in new_out.iterdir()) == sorted(p.name for p in ref_out.iterdir())
    for p in ref_out.iterdir():
        q = new_out / p.name
        if p.suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(q), pd.read_parquet(p), check_exact=True)
            assert pq.read_schema(q).equals(pq.read_schema(p), check_metadata=True), p.name  # pandas dtypes too
        else:
            assert q.read_bytes() == p.read_bytes(), p.name
    x, y = load_dataset(ref_out), load_dataset(new_out)
    assert set(x.tables) == set(y.tables)
    for name in x.tables:
        pd.testing.assert_frame_equal(y[name], x[name], check_exact=True)
    assert y.execution_time_fields == x.execution_time_fields
    assert not [p for p in new_out.parent.iterdir() if ".importing-" in p.name]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize(
    ("mapping", "options", "seed", "chunk_rows"),
    [
        (CRM, {}, 1, 37),
        (CRM | {"deal_column": "deal", "drop": ["month", "dow"]}, {"late_text": False}, 2, 37),
        (ROWS_OWN_DEALS, {"ids": False, "ordered": False, "dup_rows": True}, 3, 37),
        (ROWS_OWN_DEALS, {"ids": False, "dup_rows": True, "offsets": False, "late_text": False}, 4, 37),
        (TIME_RULE, {"ids": False, "dup_rows": True}, 5, 7),
        (TIME_RULE_NO_DOW, {}, 6, 37),
    ],
    ids=["crm", "crm-deal-key", "own-deals-unordered", "own-deals-ordered", "time-rule", "time-rule-no-dow"],
)
def test_streamed_import_writes_what_the_in_memory_path_writes(tmp_path, monkeypatch, mapping, options, seed,
                                                                chunk_rows, fmt):
    src = random_file(tmp_path / "flat.csv", 400, seed, **options)
    ref, new, ref_out, new_out = _import_both(tmp_path, src, mapping, fmt, chunk_rows, monkeypatch)
    _assert_same_dataset(ref, new, ref_out, new_out, fmt)


def test_reports_agree_on_what_needs_the_whole_file(tmp_path, monkeypatch):
    """Warnings, duplicates, DST notes and late type changes are there (not equal by being empty)."""
    src = random_file(tmp_path / "flat.csv", 400, 7, ids=False, dup_rows=True)
    mapping = CRM | {"id_column": None, "drop": ["id", "deal", "month", "dow"]}
    mapping = {k: v for k, v in mapping.items() if v is not None}
    ref, new, ref_out, new_out = _import_both(tmp_path, src, mapping, "parquet", 50, monkeypatch)
    _assert_same_dataset(ref, new, ref_out, new_out, "parquet")
    assert new.duplicate_rows > 0 and len(new.duplicate_examples) == 3
    assert any("carry more than one value" in w for w in new.warnings)
    assert any("daylight-saving" in n for n in new.time_notes)
    late = next(f for f in new.fields if f.column == "late")
    assert late.type == "text"  # numbers for 395 rows, then text: the whole column decides
    assert next(f for f in new.fields if f.column == "flag").type == "number"


def _mutate(src: Path, line: int, column: str, value: str) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


def _lines(src: Path, edit) -> Path:
    """Rewrite the file's lines (1-based list, header first) with ``edit(lines)``."""
    lines = src.read_text(encoding="utf-8").splitlines()
    edit(lines)
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


def _rename(src: Path, old: str, new: str) -> Path:
    def edit(lines):
        lines[0] = ",".join(new if h == old else h for h in lines[0].split(","))
    return _lines(src, edit)


def _copy_column(src: Path, column: str, name: str) -> Path:
    """Append a column ``name`` holding ``column``'s values."""
    def edit(lines):
        at = lines[0].split(",").index(column)
        lines[:] = [f"{ln},{name if i == 0 else ln.split(',')[at]}" for i, ln in enumerate(lines)]
    return _lines(src, edit)


def _case(mapping: dict, edits=(), options=None, then=None, first=None):
    """A bad file: ``random_file``, ``first(src)``, cells replaced (``edits``: line, column, value), ``then(src)``."""
    def build(path: Path) -> Path:
        src = random_file(path, 400, 11, **(options or {}))
        if first is not None:
            first(src)
        for line, column, value in edits:
            _mutate(src, line, column, value)
        if then is not None:
            then(src)
        return src
    return mapping, build


def _all_outcomes_empty(src: Path) -> None:
    for line in range(2, 402):
        _mutate(src, line, "outcome", "")


def _bytes(edit):
    def then(src: Path) -> None:
        src.write_bytes(edit(src.read_bytes()))
    return then


def _replace_line(line: int, text: str):
    def then(src: Path) -> None:
        def edit(lines):
            lines[line - 1] = text
        _lines(src, edit)
    return then


def _insert_line(line: int, text: str):
    def then(src: Path) -> None:
        _lines(src, lambda lines: lines.insert(line - 1, text))
    return then


def _chain(*steps):
    def then(src: Path) -> None:
        for step in steps:
            step(src)
    return then


BAD_TIME_EARLY = (20, "when", "20/03/2026 10:00")  # a row-level problem early, that a later-ordered check must not beat
ERROR_CASES = {
    # reading (read_flat): bad text, malformed CSV, the header, rows of the wrong width, no rows
    "bad-text-late": _case(CRM, [BAD_TIME_EARLY], then=_bytes(lambda b: b[: len(b) - 300] + b"\xe9" + b[len(b) - 299:])),
    "malformed-csv-late": _case(CRM, [BAD_TIME_EARLY, (390, "note", '"abc"def')], then=_insert_line(100, "x,y")),
    "header-repeats-a-name": _case(CRM, then=_chain(lambda s: _rename(s, "note", "flag"), _insert_line(300, "x,y"))),
    "header-empty-name": _case(CRM, then=lambda s: _rename(s, "note", "")),
    "ragged-rows": _case(CRM, [BAD_TIME_EARLY], then=_chain(_insert_line(250, "x,y"), _insert_line(380, "x,y,z"))),
    "no-data-rows": _case(CRM, then=lambda s: _lines(s, lambda lines: lines.__delitem__(slice(1, None)))),
    "empty-file": _case(CRM, then=lambda s: s.write_bytes(b"")),
    "blank-lines-only": _case(CRM | {"delimiter": ","}, then=lambda s: s.write_bytes(b"\n  \n\n")),
    "not-a-file": _case(CRM, then=lambda s: (s.unlink(), s.mkdir())),
    "no-delimiter": _case(CRM, then=lambda s: _lines(s, lambda lines: lines.__setitem__(
        slice(None), [ln.split(",")[0] for ln in lines]))),
    # the mapping against the header
    "column-not-in-file": _case(CRM | {"rep_column": "reps"}),
    "column-not-in-file-after-ragged": _case(CRM | {"rep_column": "reps"}, then=_insert_line(333, "x,y")),
    "custom-field-named-like-contract": _case(CRM, then=lambda s: _rename(s, "note", "direction")),
    # the conversion (convert_flat), in its order; counts span chunks
    "positive-never-occurs": _case(CRM | {"positive": ["won", "closed"]}, [BAD_TIME_EARLY]),
    "outcome-neither": _case(CRM, [BAD_TIME_EARLY, (44, "outcome", "perhaps"), (380, "outcome", "maybe")]),
    "outcome-missing": _case(CRM | {"outcome_missing": "error"}, [BAD_TIME_EARLY]),
    "output-positive-never-occurs": _case(CRM | {"output_positive": ["yes", "sure"]}, [BAD_TIME_EARLY]),
    "output-neither": _case(CRM | {"output_negative": ["no"]}, [BAD_TIME_EARLY, (150, "reply", "later"),
                                                               (390, "reply", "later")]),
    # every row dropped: convert_flat's "no rows left" cannot come first (a positive value keeps its row)
    "all-outcomes-dropped": _case(ROWS_OWN_DEALS | {"outcome_missing": "drop"}, options={"ids": False},
                                  then=_all_outcomes_empty),
    "id-empty": _case(CRM, [BAD_TIME_EARLY, (250, "id", ""), (380, "id", "")]),
    "ids-repeat": _case(CRM, [BAD_TIME_EARLY, (300, "id", "a00010"), (200, "id", "a00250")]),
    "ids-repeat-after-dropped-rows": _case(CRM | {"outcome_missing": "drop"},  # the repeats are kept rows
                                           [(300, "id", "a00010"), (200, "id", "a00250"), (300, "outcome", "won"),
                                            (200, "outcome", "lost"), (12, "outcome", "lost"),
                                            (252, "outcome", "won")]),
    "time-empty": _case(CRM, [BAD_TIME_EARLY, (45, "when", ""), (300, "when", "")]),
    "time-outside-years": _case(CRM, [BAD_TIME_EARLY, (90, "when", "2300-01-01T00:00:00"),
                                      (377, "when", "1500-01-01T00:00:00+02:00")]),
    "time-unparseable": _case(CRM, [(60, "when", "not a time"), (215, "when", "31/12/2026"), (350, "when", "soon")]),
    "time-rule-month": _case(TIME_RULE, [(150, "dow", "funday"), (300, "month", "smarch")], {"ids": False}),
    "time-rule-day-of-week": _case(TIME_RULE, [(150, "dow", "funday"), (310, "dow", "caturday")], {"ids": False}),
    "time-rule-start": _case(TIME_RULE | {"time_rule": {"month": "month", "day_of_week": "dow", "start": "2020-06"}},
                             [(390, "kind", "")], {"ids": False}),
    "time-rule-years": _case(TIME_RULE | {"time_rule": {"month": "month", "start": "2261-05"}}, [], {"ids": False}),
    "type-empty": _case(CRM, [(77, "kind", ""), (301, "kind", ""), (390, "kind", "Fax")]),
    "type-no-entry": _case(CRM, [(390, "kind", "Fax"), (395, "kind", "Fax")]),
    "activity-number": _case(CRM, [(333, "talk_s", "long"), (120, "employees", "many")]),
    "activity-true-false": _case(CRM | {"activity_columns": {"talk_s": "duration_s", "flag": "is_automated"}},
                                 [(222, "flag", "maybe")]),
    "activity-whole-number": _case(CRM | {"activity_columns": {"talk_s": "duration_s", "late": "sequence_step"}}),
    "activity-0-to-1": _case(CRM | {"activity_columns": {"talk_s": "duration_s", "score": "personalization"}}),
    "activity-timestamp": _case(CRM | {"activity_columns": {"talk_s": "duration_s", "logged": "logged_at"}},
                                [(390, "logged", "later"), (101, "logged", "2999-01-01T00:00:00Z")],
                                first=lambda s: _copy_column(s, "when", "logged"), options={"offsets": False}),
    "account-field": _case(CRM, [(120, "employees", "many"), (121, "employees", "2.5")]),
}


@pytest.mark.parametrize("kind", list(ERROR_CASES))
def test_streamed_errors_are_the_in_memory_errors(tmp_path, monkeypatch, kind):
    """Every kind of bad file gets, from the streaming pass itself, the message the in-memory path gives.

    Several files hold two problems: one found early in the file, and one the in-memory path
    checks first (it must win, counted over the whole file); the bad rows span chunks of 7-50 rows.
    """
    mapping, build = ERROR_CASES[kind]
    src = build(tmp_path / "flat.csv")
    m = mapping_from_dict(mapping)
    with pytest.raises(FlatImportError) as ref:
        import_flat(src, tmp_path / "ref", m, stream=False)
    chunk_rows = (7, 13, 29, 50)[list(ERROR_CASES).index(kind) % 4]
    _assert_streamed_error(tmp_path, src, m, chunk_rows, monkeypatch, str(ref.value))


def _assert_streamed_error(tmp_path: Path, src: Path, m, chunk_rows: int, monkeypatch, expected: str) -> None:
    def no_fallback(*args, **kwargs):
        raise AssertionError("the streaming import fell back to reading the file whole")

    out = tmp_path / "new"
    with monkeypatch.context() as mp:
        mp.setattr(flat_mod, "read_flat", no_fallback)
        mp.setattr(flat_mod, "convert_flat", no_fallback)
        with pytest.raises(FlatImportError) as new:
            import_flat(src, out, m, chunk_rows=chunk_rows)
    assert str(new.value) == expected
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".importing-" in p.name]


ERROR_EDITS = [  # (mapping change, column, bad value): a problem each, all mappings based on CRM
    ({}, "when", "not a time"), ({}, "when", "2400-01-01T00:00:00"), ({}, "when", ""), ({}, "kind", "Fax"),
    ({}, "kind", ""), ({}, "outcome", "maybe"), ({}, "id", ""), ({}, "id", "a00007"), ({}, "talk_s", "long"),
    ({}, "employees", "many"), ({"output_negative": ["no"]}, "reply", "later"),
    ({"outcome_missing": "error"}, "outcome", ""),
]


@pytest.mark.parametrize("seed", range(8))
def test_random_mixes_of_problems_get_the_in_memory_error(tmp_path, monkeypatch, seed):
    """Random problems at random rows, several at once: the stream names the one the in-memory path names."""
    rng = np.random.default_rng(100 + seed)
    src = random_file(tmp_path / "flat.csv", 300, seed, late_text=False)
    mapping = dict(CRM)
    picks = rng.choice(len(ERROR_EDITS), int(rng.integers(1, 4)), replace=False)
    for k in picks:
        change, column, value = ERROR_EDITS[k]
        mapping |= change
        for line in rng.choice(np.arange(2, 302), int(rng.integers(1, 4)), replace=False):
            _mutate(src, int(line), column, value)
    m = mapping_from_dict(mapping)
    with pytest.raises(FlatImportError) as ref:
        import_flat(src, tmp_path / "ref", m, stream=False)
    _assert_streamed_error(tmp_path, src, m, int(rng.integers(7, 51)), monkeypatch, str(ref.value))


def test_non_empty_output_is_refused_before_converting_and_left_as_it_was(tmp_path):
    src = random_file(tmp_path / "flat.csv", 120, 13)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    import importers.flat_stream as stream

    def must_not_run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("converted before refusing the output directory")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stream, "stream_convert", must_not_run)
        with pytest.raises(FlatImportError, match="not empty"):
            import_flat(src, out, mapping_from_dict(CRM), chunk_rows=40)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if ".importing-" in p.name]
    report = import_flat(src, out, mapping_from_dict(CRM), chunk_rows=40, overwrite=True)
    assert (out / "activities.parquet").exists() and (out / "keep.txt").exists()
    assert report.rows_read == 120


def test_a_defect_of_the_streaming_pass_costs_memory_not_the_import(tmp_path, monkeypatch, caplog):
    import importers.flat_stream as stream

    src = random_file(tmp_path / "flat.csv", 150, 14, late_text=False)
    m = mapping_from_dict(CRM)
    ref = import_flat(src, tmp_path / "ref", m, stream=False)

    def broken(self, raw, lines):
        raise RuntimeError("a bug")

    monkeypatch.setattr(stream._Pass, "chunk", broken)
    new = import_flat(src, tmp_path / "new", m, chunk_rows=40)
    assert "the streaming pass failed (RuntimeError: a bug)" in caplog.text
    _assert_same_dataset(ref, new, tmp_path / "ref", tmp_path / "new", "parquet")


@pytest.mark.parametrize(("mapping", "options", "most"), [(CRM, {"late_text": False}, 40), (TIME_RULE, {"ids": False, "late_text": False}, None)])
def test_the_streaming_pass_holds_a_chunk_of_rows_not_the_file(tmp_path, monkeypatch, mapping, options, most):
    """Rows reach the conversion a chunk at a time; with a time rule a chunk ends with its month."""
    import importers.flat_stream as stream

    src = random_file(tmp_path / "flat.csv", 400, 15, **options)
    seen: list[pd.DataFrame] = []
    chunk = stream._Pass.chunk

    def spy(self, raw, lines):
        seen.append(raw)
        return chunk(self, raw, lines)

    monkeypatch.setattr(stream._Pass, "chunk", spy)
    import_flat(src, tmp_path / "out", mapping_from_dict(mapping), chunk_rows=40)
    assert sum(len(raw) for raw in seen) == 400  # one pass (no type changes down the file)
    if most is not None:
        assert max(len(raw) for raw in seen) == most
    else:  # whole months: each chunk is at most 40 rows plus the month it ends in
        months = [raw["month"] for raw in seen]
        for a, b in itertools.pairwise(months):
            assert a.iloc[-1] != b.iloc[0]
        longest_month = max(pd.Series(np.cumsum(s.to_numpy(object)[1:] != s.to_numpy(object)[:-1])).value_counts().max()
                            for s in months if len(s) > 1)
        assert max(len(raw) for raw in seen) <= 40 + longest_month


def test_command_import_flat_streams(tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from training.cli import app

    src = random_file(tmp_path / "flat.csv", 120, 16, late_text=False)
    mapping = tmp_path / "m.yaml"
    mapping.write_text(yaml.safe_dump(CRM), encoding="utf-8")

    def no_fallback(*args, **kwargs):
        raise AssertionError("the command read the file whole")

    monkeypatch.setattr(flat_mod, "read_flat", no_fallback)
    out = tmp_path / "ds"
    result = CliRunner().invoke(app, ["import-flat", str(src), "--mapping", str(mapping), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rows: 120 read, 120 written, 0 dropped" in result.output
    assert len(load_dataset(out)["activities"]) == 120


def test_a_bad_file_gets_its_error_whatever_the_memory_budget(tmp_path, monkeypatch):
    """Naming a bad file's problem no longer reads it whole: a budget the in-memory path exceeds does not matter."""
    from features import memory_budget as mb

    src = _mutate(random_file(tmp_path / "flat.csv", 400, 17), 350, "when", "not a time")
    m = mapping_from_dict(CRM)
    with pytest.raises(FlatImportError) as ref:
        import_flat(src, tmp_path / "ref", m, stream=False)
    monkeypatch.setenv(mb.MEMORY_ENV, "0.01")
    with pytest.raises(mb.InputTooLarge):  # what reading it whole would need
        mb.check_fits([src], "import-flat")
    _assert_streamed_error(tmp_path, src, m, 40, monkeypatch, str(ref.value))
    assert "data row 349 (line 350), column 'when': cannot parse 'not a time' as ISO 8601" in str(ref.value)


# an outcome column with more distinct values than the stream counts: 'never occurs' lists them by count
MANY_VALUES = {k: v for k, v in CRM.items() if k not in ("negative", "drop")} | {
    "outcome_column": "note", "positive": ["delta"], "drop": ["outcome", "deal", "month", "dow"]}


def test_what_the_stream_cannot_word_is_read_whole_within_the_budget(tmp_path, monkeypatch):
    """The listed fallbacks: the in-memory path words the error when the file fits the budget, else a clear refusal."""
    import importers.flat_stream as stream
    from features import memory_budget as mb

    src = random_file(tmp_path / "flat.csv", 200, 19, late_text=False)
    m = mapping_from_dict(MANY_VALUES)
    with pytest.raises(FlatImportError) as ref:
        import_flat(src, tmp_path / "ref", m, stream=False)
    assert "positive value 'delta' never occurs in column 'note'; its values are: " in str(ref.value)
    _assert_streamed_error(tmp_path, src, m, 30, monkeypatch, str(ref.value))  # 4 distinct values: counted

    monkeypatch.setattr(stream, "VALUE_COUNT_LIMIT", 2)
    read = []
    real_read_flat = flat_mod.read_flat
    monkeypatch.setattr(flat_mod, "read_flat", lambda *a, **k: read.append(a) or real_read_flat(*a, **k))
    with pytest.raises(FlatImportError) as new:
        import_flat(src, tmp_path / "new", m, chunk_rows=30)
    assert str(new.value) == str(ref.value) and len(read) == 1  # read whole, once

    monkeypatch.setenv(mb.MEMORY_ENV, "0.01")
    with pytest.raises(FlatImportError) as refused:
        import_flat(src, tmp_path / "new", m, chunk_rows=30)
    msg = str(refused.value)
    assert len(read) == 1  # not read whole again: refused first
    assert "positive value 'delta' never occurs in column 'note' (more than 2 distinct values" in msg
    assert "the in-memory import, which reads it whole, cannot run" in msg and mb.MEMORY_ENV in msg
    assert not (tmp_path / "new").exists() and not [p for p in tmp_path.iterdir() if ".importing-" in p.name]


def test_a_header_name_starting_with_nul_is_converted_in_memory(tmp_path, monkeypatch):
    src = random_file(tmp_path / "flat.csv", 120, 20, late_text=False)
    _lines(src, lambda lines: lines.__setitem__(slice(None), [ln + (",\x00x" if i == 0 else ",1")
                                                              for i, ln in enumerate(lines)]))
    m = mapping_from_dict(CRM | {"drop": ["deal", "month", "dow", "\x00x"]})
    ref = import_flat(src, tmp_path / "ref", m, stream=False)
    read = []
    real_read_flat = flat_mod.read_flat
    monkeypatch.setattr(flat_mod, "read_flat", lambda *a, **k: read.append(a) or real_read_flat(*a, **k))
    new = import_flat(src, tmp_path / "new", m, chunk_rows=30)
    assert len(read) == 1
    _assert_same_dataset(ref, new, tmp_path / "ref", tmp_path / "new", "parquet")


def test_a_bad_file_is_checked_a_chunk_at_a_time_and_nothing_is_written_after_the_problem(tmp_path, monkeypatch):
    """After a failed check the pass writes nothing more but reads every chunk (a later check may come first)."""
    import importers.flat_stream as stream

    src = _mutate(_mutate(random_file(tmp_path / "flat.csv", 400, 21, late_text=False), 30, "when", "soon"),
                  390, "outcome", "maybe")
    seen: list[int] = []
    written: list[int] = []
    chunk, write = stream._Pass.chunk, stream._TableSink.write

    def spy_chunk(self, raw, lines):
        seen.append(len(raw))
        return chunk(self, raw, lines)

    def spy_write(self, frame):
        written.append(len(frame))
        return write(self, frame)

    monkeypatch.setattr(stream._Pass, "chunk", spy_chunk)
    monkeypatch.setattr(stream._TableSink, "write", spy_write)
    with pytest.raises(FlatImportError, match=r"data row 389 \(line 390\), column 'outcome': value 'maybe'"):
        import_flat(src, tmp_path / "out", mapping_from_dict(CRM), chunk_rows=40)
    assert sum(seen) == 400 and max(seen) == 40
    assert sum(written) == 0  # the bad time is in the first chunk


@pytest.mark.parametrize("mapping", [CRM, CRM | {"deal_column": "deal", "drop": ["month", "dow"]}])
def test_entity_merges_along_the_way_give_the_same_tables(tmp_path, monkeypatch, mapping):
    """Deals, contacts, accounts and reps merged every few chunks (past 1M keys in real files)."""
    import importers.flat_stream as stream

    monkeypatch.setattr(stream, "_REDUCE_ROWS", 20)
    src = random_file(tmp_path / "flat.csv", 400, 18, late_text=False)
    ref, new, ref_out, new_out = _import_both(tmp_path, src, mapping, "parquet", 30, monkeypatch)
    _assert_same_dataset(ref, new, ref_out, new_out, "parquet")
    assert any("carry more than one value" in w for w in new.warnings)
