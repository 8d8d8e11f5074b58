"""Hot model swap (serving.reload): a real server follows a pointer file under load (issue 12).

Two bundles trained on different histories (registry versions 1 and 2) answer the same request
differently, so an answer that named one version but came from the other bundle would show. A third
"bundle" is broken: pointing at it must keep version 2 serving and say why in ``GET /model``.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from models.bundle import MANIFEST_FILE
from tests.serving.helpers import Server, make_dataset, train_bundle
from training.follow import write_atomically

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _versioned(bundle: Path, out: Path, version: str) -> Path:
    shutil.copytree(bundle, out)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["model_version"] = version
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    return out


def _point(pointer: Path, bundle: Path, version: str) -> None:
    write_atomically(pointer, json.dumps({"bundle": str(bundle), "version": version}))


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def bundles(rel_bundle, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("swap-bundles")
    other = train_bundle(make_dataset(n_activities=3000, seed=11), root / "other")
    broken = _versioned(rel_bundle, root / "v3", "3")
    for booster in broken.rglob("*.txt"):  # every booster file unreadable
        booster.write_text("garbage")
    return {"1": _versioned(rel_bundle, root / "v1", "1"), "2": _versioned(other, root / "v2", "2"), "3": broken}


def test_swap_under_load_keeps_every_answer_whole(bundles, tmp_path):
    pointer = tmp_path / "pointer.json"
    _point(pointer, bundles["1"], "1")
    server = Server(bundles["1"], tmp_path / "home", env={
        "ACTIVITY_SCORER_FOLLOW": str(pointer), "ACTIVITY_SCORER_FOLLOW_INTERVAL_S": "0.5",
        "ACTIVITY_SCORER_PREDICTION_LOG": "off"})
    body = json.dumps({"items": [{"activity": {"type": "call", "occurred_at": "2026-03-02T15:04:00Z",
                                               "duration_s": 300, "direction": "outbound"}}]}).encode()
    answers: list[tuple[float, str, float]] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            req = urllib.request.Request(server.url + "/score", data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    data = json.loads(r.read())
                answers.append((time.monotonic(), data["model"]["version"], data["results"][0]["p_outcome"]))
            except Exception as err:  # noqa: BLE001  (every failure is counted)
                failures.append(repr(err))

    try:
        server.wait_ready()
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        _point(pointer, bundles["2"], "2")
        deadline = time.monotonic() + 20
        while _get(server.url + "/model")["version"] != "2" and time.monotonic() < deadline:
            time.sleep(0.2)
        swapped_at = time.monotonic()
        time.sleep(1.5)
        _point(pointer, bundles["3"], "3")  # broken: version 2 keeps serving
        deadline = time.monotonic() + 20
        while not _get(server.url + "/model")["follow"]["last_error"] and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(timeout=20)
        info = _get(server.url + "/model")
    finally:
        stop.set()
        server.stop()

    assert not failures, failures[:5]
    assert len(answers) > 50
    versions = {v for _, v, _ in answers}
    assert versions == {"1", "2"}, versions
    by_version = {v: {p for _, vv, p in answers if vv == v} for v in versions}
    assert all(len(ps) == 1 for ps in by_version.values()), by_version  # one bundle per version, never mixed
    assert by_version["1"] != by_version["2"]
    assert all(v == "2" for t, v, _ in answers if t > swapped_at + 0.5)  # no way back after the swap
    assert info["version"] == "2" and info["follow"]["swaps"] == 1
    assert str(bundles["3"]) in info["follow"]["failed_bundle"] and info["follow"]["last_error"]
    log = server.log_path.read_text(errors="replace")
    assert "model swapped: now serving version 2" in log
    assert "model swap refused, still serving" in log and "Traceback" not in log
