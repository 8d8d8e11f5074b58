"""The refusal of an input too large for memory says what, how much, against which budget, and how to proceed."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import memory_budget as mb


def _file(path, n_bytes: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * n_bytes)
    return path


def _parts(message: str) -> int:
    return int(re.search(r"into at least (\d+) ", message).group(1))


def test_a_file_too_large_names_itself_its_size_the_need_and_the_budget(tmp_path, monkeypatch):
    monkeypatch.setenv(mb.MEMORY_ENV, "0.5")
    src = _file(tmp_path / "calls.csv", 30 * 2**20)
    with pytest.raises(mb.InputTooLarge) as err:
        mb.check_fits([src], "import-flat")
    msg = str(err.value)
    need = mb.estimate_bytes([src], "import-flat")
    assert msg.startswith(f"{src}: 30 MB; import-flat would need about {need / 2**30:.2f} GB of memory")
    assert "more than the budget of 0.50 GB (ACTIVITY_SCORER_MEMORY_GB)" in msg
    assert "import-flat each to its own --out" in msg
    assert "reads whole only the few files it cannot stream" in msg


@pytest.mark.parametrize("mb_size, budget_gb", [(30, 0.5), (30, 0.45), (200, 1.0), (900, 3.0)])
def test_the_number_of_parts_is_the_fewest_that_each_fit(tmp_path, monkeypatch, mb_size, budget_gb):
    monkeypatch.setenv(mb.MEMORY_ENV, str(budget_gb))
    size = mb_size * 2**20
    src = tmp_path / "calls.csv"
    src.write_bytes(b"")  # sparse: only the size matters
    with src.open("r+b") as fh:
        fh.truncate(size)
    with pytest.raises(mb.InputTooLarge) as err:
        mb.check_fits([src], "import-flat")
    k = _parts(str(err.value))
    budget = budget_gb * 2**30
    per_byte = mb.FACTORS["import-flat"][".csv"]
    assert mb.BASE_BYTES + size / k * per_byte <= budget  # each of k parts fits
    assert mb.BASE_BYTES + size / (k - 1) * per_byte > budget if k > 1 else True  # k - 1 would not


def test_a_dataset_too_large_names_its_directory_and_largest_file_and_uses_the_memory_available(tmp_path,
                                                                                                  monkeypatch):
    monkeypatch.delenv(mb.MEMORY_ENV, raising=False)
    monkeypatch.setattr(mb, "available_bytes", lambda: int(0.6 * 2**30))
    data = tmp_path / "ds"
    files = [_file(data / "activities.csv", 40 * 2**20), _file(data / "deals.csv", 2 * 2**20)]
    with pytest.raises(mb.InputTooLarge) as err:
        mb.check_fits(files, "validate")
    msg = str(err.value)
    assert msg.startswith(f"{data}: 42 MB in 2 files (the largest, activities.csv, 40 MB); validate would need")
    assert "more than the 0.60 GB available now (ACTIVITY_SCORER_MEMORY_GB sets a budget)" in msg
    assert "split the dataset by time into at least 2 datasets and validate each" in msg


def test_a_budget_below_the_program_itself_says_so_instead_of_a_number_of_parts(tmp_path, monkeypatch):
    monkeypatch.setenv(mb.MEMORY_ENV, "0.2")
    with pytest.raises(mb.InputTooLarge) as err:
        mb.check_fits([_file(tmp_path / "calls.csv", 1024)], "import-flat")
    assert "the budget is below the 0.39 GB the program itself needs" in str(err.value)
    assert "at least" not in str(err.value)


def test_an_input_that_fits_passes_silently(tmp_path, monkeypatch):
    monkeypatch.setenv(mb.MEMORY_ENV, "4")
    mb.check_fits([_file(tmp_path / "calls.csv", 2**20)], "import-flat")


def test_the_command_prints_the_whole_advice_on_one_line(tmp_path, monkeypatch):
    """A file the stream cannot convert, too large to read whole: one line with the advice, nothing written.

    (A header name starting with a NUL character is one such file, importers.flat_stream.)
    """
    from training.cli import app

    monkeypatch.setenv(mb.MEMORY_ENV, "0.45")
    src = tmp_path / "calls.csv"
    row = b"2025-01-01T00:00:00Z,y,1\n"
    src.write_bytes(b"t,r,\x00x\n" + row * (12 * 2**20 // len(row)))
    result = CliRunner().invoke(app, ["import-flat", str(src), "--out", str(tmp_path / "out"), "--type", "call",
                                      "--time-column", "t", "--outcome-column", "r", "--positive", "y"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"{src}: 12 MB;" in lines[0] and "reads whole only the few files" in lines[0]
    assert "a header name starts with a NUL character" in lines[0]
    assert "To proceed: run where about" in lines[0] and not (tmp_path / "out").exists()


def test_a_good_file_beyond_the_in_memory_budget_streams(tmp_path, monkeypatch):
    """import-flat no longer needs the whole file in memory: a file the in-memory estimate refuses converts."""
    from training.cli import app

    monkeypatch.setenv(mb.MEMORY_ENV, "0.45")
    src = tmp_path / "calls.csv"
    rows = 400_000
    with src.open("w", encoding="utf-8") as fh:
        fh.write("t,r\n")
        for i in range(rows):
            fh.write(f"2025-01-{1 + i % 28:02d}T{i % 24:02d}:00:00Z,{'y' if i % 7 == 0 else 'n'}\n")
    with pytest.raises(mb.InputTooLarge):  # what the in-memory path would need
        mb.check_fits([src], "import-flat")
    result = CliRunner().invoke(app, ["import-flat", str(src), "--out", str(tmp_path / "out"), "--type", "call",
                                      "--time-column", "t", "--outcome-column", "r", "--positive", "y"])
    assert result.exit_code == 0, result.output
    acts = pd.read_parquet(tmp_path / "out" / "activities.parquet")
    assert len(acts) == rows


def _activities(directory, n, suffix=".parquet"):
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"activity_id": [f"a{i}" for i in range(n)], "type": "call", "deal_id": "d1",
                          "occurred_at": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC")})
    if suffix == ".parquet":
        frame.to_parquet(directory / "activities.parquet", index=False)
    else:
        frame.to_csv(directory / "activities.csv", index=False)
    return directory


def test_train_refuses_a_history_too_large_to_train_with_the_count_need_and_the_way_on(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from training.cli import app

    monkeypatch.setenv("ACTIVITY_SCORER_MEMORY_GB", "0.45")  # room for ~12k activities above the base
    monkeypatch.setenv("ACTIVITY_SCORER_HOME", str(tmp_path / "home"))
    data = _activities(tmp_path / "data", 20_000)
    result = CliRunner().invoke(app, ["train", "--data", str(data)])
    assert result.exit_code == 1
    msg = " ".join(result.output.split())
    need = mb._gb(mb.BASE_BYTES + 20_000 * mb.TRAIN_BYTES_PER_ACTIVITY)
    assert str(data) in msg and "20,000 activities" in msg and f"need about {need}" in msg, msg
    assert "budget of 0.45 GB (ACTIVITY_SCORER_MEMORY_GB)" in msg and "--until" in msg and "Traceback" not in msg
    dask_need = mb._gb(mb.BASE_BYTES + 20_000 * mb.DASK_TRAIN_BYTES_PER_ACTIVITY)
    assert f"or train with --engine dask, whose process needs about {dask_need}" in msg, msg
    # the Dask engine's client holds less an activity (it lets the table go once encoded), but
    # is refused the same way when that does not fit either
    monkeypatch.setenv("ACTIVITY_SCORER_MEMORY_GB", "0.4")
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--engine", "dask"])
    msg = " ".join(result.output.split())
    assert result.exit_code == 1 and "gathers the training table on this process" in msg, msg
    assert f"need about {dask_need}" in msg and "or train with --engine dask" not in msg, msg


def test_train_counts_only_the_activities_before_until(tmp_path, monkeypatch):
    from features.memory_budget import check_train_fits, count_activities

    data = _activities(tmp_path / "data", 20_000)  # one a minute from 2026-01-01
    assert count_activities(data) == (20_000, False)
    assert count_activities(data, pd_ts("2026-01-01T01:00:00Z")) == (60, False)
    monkeypatch.setenv("ACTIVITY_SCORER_MEMORY_GB", "0.45")
    check_train_fits(data, pd_ts("2026-01-02"))  # 1,440 activities: fits
    with pytest.raises(mb.InputTooLarge, match="20,000 activities"):
        check_train_fits(data)


def test_a_csv_history_is_estimated_from_its_size(tmp_path):
    from features.memory_budget import count_activities

    n, estimated = count_activities(_activities(tmp_path / "data", 30_000, ".csv"))
    assert estimated and 27_000 <= n <= 33_000, n


def test_an_unreadable_activities_file_is_left_to_the_loader(tmp_path):
    from features.memory_budget import check_train_fits, count_activities

    (tmp_path / "activities.parquet").write_bytes(b"not parquet at all")
    assert count_activities(tmp_path) == (0, False)
    check_train_fits(tmp_path)  # no guess and no traceback here: loading the dataset names the problem


def pd_ts(text):
    return pd.Timestamp(text)
