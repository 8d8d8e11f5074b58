"""Abuse of the data path (issue 12): hostile CSV / Parquet inputs to ``validate`` and ``import-flat``.

Formula-injection cells, a 30 MB field, binary garbage, mixed encodings, NUL bytes, an empty file,
a Parquet file that is not Parquet: each gets either one clear error naming the file (and line) and a
non-zero exit, or a pass that keeps every value exactly (no truncation, no formula evaluated or
rewritten). Never a traceback. The 2 GB case is ``benchmarks/bench_big_input.py`` (peak memory).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from training.cli import _register_commands, app

FORMULAS = ["=cmd|' /C calc'!A0", '=HYPERLINK("http://x.example","y")', "@SUM(1+1)", "+1-2", "-2+3"]
STAGES = "deal_id,stage,stage_order,entered_at\nd1,s,1,2026-01-01T00:00:00Z\n"
FLAT_ARGS = ["--id-column", "call_id", "--time-column", "started_at", "--type", "call", "--outcome-column", "result",
             "--positive", "yes"]
HUGE = 30_000_000


@pytest.fixture(scope="module", autouse=True)
def commands():
    _register_commands()


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert "Traceback" not in result.output and not isinstance(result.exception, (KeyError, TypeError, AttributeError,
                                                                                     IndexError, MemoryError)), \
        result.output[-2000:]
    return result


def _dataset(tmp_path: Path, activities: bytes, name: str = "activities.csv") -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / name).write_bytes(activities)
    (d / "deal_stages.csv").write_text(STAGES)
    return d


def _csv_quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def test_validate_keeps_formula_cells_as_text(tmp_path):
    rows = [f"a{k},2026-01-0{k + 1}T00:00:00Z,call,d1,{_csv_quote(v)}" for k, v in enumerate(FORMULAS)]
    d = _dataset(tmp_path, ("activity_id,occurred_at,type,deal_id,note\n" + "\n".join(rows) + "\n").encode())
    result = _invoke(["validate", "--data", str(d)])
    assert result.exit_code == 0, result.output


def test_import_flat_keeps_formula_cells_exactly(tmp_path):
    src = tmp_path / "calls.csv"
    rows = [f"{_csv_quote(v) if k == 0 else f'c{k}'},2026-01-0{k + 1}T10:00:00Z,{'yes' if k % 2 else 'no'},"
            f"{_csv_quote(v)}" for k, v in enumerate(FORMULAS)]
    src.write_text("call_id,started_at,result,note\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = _invoke(["import-flat", str(src), "--out", str(out), *FLAT_ARGS])
    assert result.exit_code == 0, result.output
    acts = pd.read_parquet(out / "activities.parquet")
    assert list(acts["note"]) == FORMULAS  # not evaluated, not escaped, not cut
    assert acts["activity_id"].iloc[0] == FORMULAS[0]
    assert _invoke(["validate", "--data", str(out)]).exit_code == 0


def test_validate_passes_a_huge_field_whole(tmp_path):
    d = _dataset(tmp_path, b"activity_id,occurred_at,type,deal_id,note\na1,2026-01-01T00:00:00Z,call,d1,"
                 + b"x" * HUGE + b"\na2,2026-01-02T00:00:00Z,call,d1,ok\n")
    result = _invoke(["validate", "--data", str(d)])
    assert result.exit_code == 0, result.output[-2000:]
    from features.dataset import load_dataset

    assert len(load_dataset(d)["activities"]["note"].iloc[0]) == HUGE  # read whole, not truncated


def test_import_flat_refuses_a_huge_field_naming_the_line(tmp_path):
    src = tmp_path / "calls.csv"
    src.write_bytes(b"call_id,started_at,result,note\nc1,2026-01-01T10:00:00Z,yes," + b"x" * HUGE + b"\n")
    result = _invoke(["import-flat", str(src), "--out", str(tmp_path / "out"), *FLAT_ARGS])
    assert result.exit_code != 0
    assert "calls.csv" in result.output and "line 2" in result.output and "field" in result.output
    assert not (tmp_path / "out" / "activities.parquet").exists()  # nothing half written


# Garbage from a seeded generator: collection must be identical on every xdist worker, and
# the ids are named (pytest would otherwise print 200 kB of escaped bytes as the test id).
_GARBAGE = random.Random(20261206)


@pytest.mark.parametrize("content, expected", [
    (_GARBAGE.randbytes(200_000), "not UTF-8"),
    (b"activity_id,occurred_at,type,deal_id\na1,2026-01-01T00:00:00Z,caf\xc3\xa9,d1\na2,2026-01-02T00:00:00Z,caf\xe9,d1\n",
     "line 3"),
    (b"", "activities.csv"),
], ids=["random-bytes", "mixed-encodings", "empty"])
def test_validate_refuses_garbage_and_mixed_encodings_clearly(tmp_path, content, expected):
    d = _dataset(tmp_path, content)
    result = _invoke(["validate", "--data", str(d)])
    assert result.exit_code == 1
    assert "activities.csv" in result.output and expected in result.output, result.output[-1500:]


def test_validate_refuses_a_parquet_file_that_is_not_parquet(tmp_path):
    d = _dataset(tmp_path, os.urandom(100_000), "activities.parquet")
    result = _invoke(["validate", "--data", str(d)])
    assert result.exit_code == 1 and "activities.parquet" in result.output and "Parquet" in result.output


@pytest.mark.parametrize("content, expected", [
    (_GARBAGE.randbytes(300_000), "line 1 is not valid"),
    (b"call_id,started_at,result,note\nc1,2026-01-01T10:00:00Z,yes,caf\xc3\xa9\nc2,2026-01-02T10:00:00Z,no,caf\xe9\n",
     "line 3 is not valid"),
    (b"", "the file is empty"),
], ids=["random-bytes", "mixed-encodings", "empty"])
def test_import_flat_refuses_garbage_and_mixed_encodings_clearly(tmp_path, content, expected):
    src = tmp_path / "calls.csv"
    src.write_bytes(content)
    result = _invoke(["import-flat", str(src), "--out", str(tmp_path / "out"), *FLAT_ARGS])
    assert result.exit_code == 1
    assert "calls.csv" in result.output and expected in result.output, result.output[-1500:]


def test_import_flat_keeps_nul_bytes_inside_a_value(tmp_path):
    src = tmp_path / "calls.csv"
    src.write_bytes(b"call_id,started_at,result,note\nc1,2026-01-01T10:00:00Z,yes,a\x00b\n")
    result = _invoke(["import-flat", str(src), "--out", str(tmp_path / "out"), *FLAT_ARGS])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(tmp_path / "out" / "activities.parquet")["note"].iloc[0] == "a\x00b"


@pytest.mark.parametrize("command", ["validate", "import-flat"])
def test_an_input_too_large_for_memory_is_refused_before_reading(tmp_path, monkeypatch, command):
    monkeypatch.setenv("ACTIVITY_SCORER_MEMORY_GB", "0.45")  # a budget below what a 10 MB file needs
    src = tmp_path / "calls.csv"
    src.write_bytes(b"call_id,started_at,result,note\n" + b"c1,2026-01-01T10:00:00Z,yes,abc\n" * 350_000)
    # import-flat streams a file, good or bad (a repeated id as above is named in bounded memory); it reads
    # whole what it cannot stream: here a positive value that never occurs in an outcome column of more
    # distinct values than a stream counts (its message lists them by count)
    flat = tmp_path / "flat.csv"
    flat.write_bytes(b"call_id,started_at,result,note\n"
                     + b"".join(b"c%d,2026-01-01T10:00:00Z,r%d,abc\n" % (i, i) for i in range(350_000)))
    if command == "validate":
        d = _dataset(tmp_path, src.read_bytes().replace(b"call_id,started_at,result,note",
                                                       b"activity_id,occurred_at,type,note"))
        result = _invoke(["validate", "--data", str(d)])
    else:
        result = _invoke(["import-flat", str(flat), "--out", str(tmp_path / "out"), *FLAT_ARGS])
    assert result.exit_code == 1, result.output
    assert "would need about" in result.output and "ACTIVITY_SCORER_MEMORY_GB" in result.output
    assert len(result.output.strip().splitlines()) == 1
    monkeypatch.setenv("ACTIVITY_SCORER_MEMORY_GB", "nonsense")
    result = _invoke(["import-flat", str(flat), "--out", str(tmp_path / "out2"), *FLAT_ARGS])
    assert result.exit_code == 1 and "expected a number of gigabytes" in result.output
