"""A real ``bentoml serve`` with a history store: the deal page in a real headless Chromium, and durability
(the server SIGKILLed while events stream in; every acknowledged row is there after the restart).

The page screenshots are kept as test artefacts in ``.activity-scorer/test-artefacts/`` under the
repository (``ACTIVITY_SCORER_ARTEFACTS`` to put them elsewhere): ``deal-page.png``,
``deal-page-unknown.png``, ``deal-page-sign-in.png``.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from features import contract as c
from tests.serving.conftest import API_KEY
from tests.serving.helpers import ROOT, Server
from tests.store.browser import Browser, chromium_path

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("store-server")]
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def artefacts() -> Path:
    path = Path(os.environ.get("ACTIVITY_SCORER_ARTEFACTS", ROOT / ".activity-scorer" / "test-artefacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _copy_store(sqlite_url: str, dst: Path) -> str:
    src = Path(sqlite_url[len("sqlite:///"):])
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst / "store.db")
    return f"sqlite:///{dst / 'store.db'}"


@pytest.fixture(scope="module")
def page_server(history, sqlite_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("page-server")
    url = _copy_store(sqlite_url, root / "store")
    srv = Server(history["bundle"], root / "home", env={"ACTIVITY_SCORER_STORE": url,
                                                        "ACTIVITY_SCORER_API_KEYS": API_KEY})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_deal_page_in_chromium(page_server, history):
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing under CI: make test runs scripts/system-deps.sh")
        pytest.skip("chromium not installed (scripts/system-deps.sh installs Debian's chromium as root)")
    acts = history["dataset"][c.ACTIVITIES].set_index(c.ACTIVITY_ID)
    deal = acts.loc[history["ids"][5], c.DEAL_ID]
    at = (history["at"] - pd.Timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")  # inside the (old) history
    base = page_server.url
    with httpx.Client(base_url=base, timeout=60) as http:  # the JSON twin, behind the same key
        assert http.get(f"/deals/{deal}/next").status_code == 401
        data = http.get(f"/deals/{deal}/next", params={"at": at}, headers=AUTH).json()
        assert len(data["ranked"]) == 5
        assert http.get(f"/ui/deals/{deal}", headers=AUTH).status_code == 200  # the header works for the page too
        assert http.get(f"/ui/deals/{deal}", params={"key": API_KEY}).status_code == 401  # never a key in the URL
    out = artefacts()
    with Browser() as browser:
        browser.open(f"{base}/ui/deals/{deal}?at={at}")
        assert "Sign in" in browser.text() and "What to do next" not in browser.text()
        browser.screenshot(out / "deal-page-sign-in.png")
        browser.evaluate(f"document.querySelector('input[name=key]').value = '{API_KEY}'; document.forms[0].submit()")
        time.sleep(0.5)
        browser.wait_loaded("/ui/deals/")
        text = browser.text()
        assert "What to do next" in text and f"Deal {deal}" in text and "Recent activity" in text, text[:2000]
        assert browser.evaluate("document.querySelectorAll('ol.next > li').length") == 5
        first = browser.evaluate("document.querySelector('ol.next > li .what').innerText")
        assert first.split(" ")[0] in {"Call", "Email", "Meeting", "Demo", "InMail", "Social", "Send", "Workshop", "Wait:"}
        assert browser.evaluate("document.cookie") == ""  # the key cookie is HttpOnly
        assert API_KEY not in browser.evaluate("location.href")
        assert browser.evaluate("document.querySelectorAll('script, link[rel=stylesheet], img').length") == 0
        shot = browser.screenshot(out / "deal-page.png")
        assert shot.stat().st_size > 20_000
        browser.open(f"{base}/ui/deals/no-such-deal")
        assert "Deal not found" in browser.text() and "no-such-deal" in browser.text()
        browser.screenshot(out / "deal-page-unknown.png")


def test_durability_sigkill_while_events_stream_in(history, sqlite_url, tmp_path):
    from store import open_store

    url = _copy_store(sqlite_url, tmp_path / "store")
    env = {"ACTIVITY_SCORER_STORE": url}
    srv = Server(history["bundle"], tmp_path / "home", env=env)
    srv.wait_ready()
    start = pd.Timestamp("2026-06-01T09:00:00Z")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def stream(worker: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            for k in range(10_000):
                if stop.is_set():
                    return
                rows = [{c.ACTIVITY_ID: f"dur-{worker}-{k}-{j}", c.TYPE: "email",
                         c.OCCURRED_AT: (start + pd.Timedelta(minutes=10 * k + j)).isoformat(),
                         c.DEAL_ID: f"dur-deal-{worker}", c.CONTACT_ID: f"dur-contact-{worker}"} for j in range(10)]
                try:
                    r = http.post("/events", json={"activities": rows})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked.extend(row[c.ACTIVITY_ID] for row in rows)

    threads = [threading.Thread(target=stream, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    probe = [f"dur-{w}-{k}-5" for w in range(4) for k in range(3)]  # later rows never reach these (point in time)

    def ready() -> bool:  # enough rows, and every probe stored (else it is scored as unknown before, known after)
        with lock:
            return len(acked) >= 200 and set(probe) <= set(acked)

    deadline = time.monotonic() + 60
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready(), srv.log_tail()
    items = [{"activity": {c.ACTIVITY_ID: a, c.TYPE: "call"}} for a in probe]
    before = httpx.post(f"{srv.url}/score", json={"items": items, "explain": True}, timeout=30).json()["results"]
    time.sleep(0.5)  # more events in flight
    pids = srv.pids()  # the arbiter and its workers: a BentoML worker runs in a process group of its own
    assert len(pids) >= 2, pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    stop.set()
    srv.process.wait(timeout=30)
    import psutil

    def alive() -> list[int]:
        out = []
        for p in pids:
            try:
                if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    # SIGKILL is delivered asynchronously: a worker can still be exiting (tearing down its
    # memory) for a moment after the arbiter was reaped
    gone_by = time.monotonic() + 10
    while alive() and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not alive()
    for t in threads:
        t.join(timeout=30)
    srv.stop()
    with lock:
        acknowledged = list(acked)
    store = open_store(url)
    missing = [a for a in acknowledged if store.get(c.ACTIVITIES, a) is None]
    store.close()
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged rows lost"
    again = Server(history["bundle"], tmp_path / "home2", env=env)
    try:
        again.wait_ready()
        after = httpx.post(f"{again.url}/score", json={"items": items, "explain": True}, timeout=30).json()["results"]
    finally:
        again.stop()
    assert after == before
    assert all(r["unseen"] == [] or c.DEAL_ID not in r["unseen"] for r in after)
