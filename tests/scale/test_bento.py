"""The built Bento passes the same integration tests as ``serve``.

``activity-scorer build``'s library step packs the integration tests' bundle into a Bento
(``bentofile.yaml``, the model imported into a BentoML store of the test's own); the Bento
is served with ``bentoml serve activity-scorer:<version>`` from outside the repository, without
``ACTIVITY_SCORER_BUNDLE``: the service finds the model the Bento packs. Then every test of
``tests/serving/test_integration.py`` runs against it (imported below; only ``server`` differs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import API_KEY, bundle_dir, dataset, score_item  # noqa: F401 - fixtures
from tests.serving.helpers import PRIVACY_ENV, Server, free_port
from tests.serving.test_integration import *  # noqa: F403 - the same tests, against the Bento
from tests.serving.test_integration import LIMITS

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("bento-server")]


class BentoServer(Server):
    """``bentoml serve <bento tag>`` on a free loopback port, run outside the repository."""

    def __init__(self, bento: str, bentoml_home: Path, home: Path, env: dict[str, str]):  # noqa: D107
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = self.home / f"bento-{self.port}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVITY_SCORER_")}
        environ |= PRIVACY_ENV | {"BENTOML_HOME": str(bentoml_home), "OMP_NUM_THREADS": "1"} | env
        cmd = [str(Path(sys.executable).parent / "bentoml"), "serve", bento, "--host", "127.0.0.1",
               "--port", str(self.port)]
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(cmd, env=environ, cwd=self.home, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)


@pytest.fixture(scope="module")
def bento(late, tmp_path_factory):
    """The Bento of the integration tests' bundle, in a BentoML home of its own."""
    from training.build_command import build_bento

    bentoml_home = tmp_path_factory.mktemp("bento-home") / "bentoml"
    env = dict(os.environ, BENTOML_HOME=str(bentoml_home), **PRIVACY_ENV)
    tag, model_tag = build_bento(late["bundle"], env=env)
    return {"tag": tag, "model": model_tag, "home": bentoml_home}


@pytest.fixture(scope="module")
def server(late, bento):
    srv = BentoServer(bento["tag"], bento["home"], late["root"] / "bento-run",
                      env={"ACTIVITY_SCORER_API_KEYS": API_KEY, **LIMITS})
    try:
        srv.wait_ready(timeout_s=120)
        yield srv
    finally:
        srv.stop()


def test_the_bento_serves_the_model_it_packs(server, bento):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.get("/model", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    assert r.json()["source"] == f"bento:{bento['model']}"
    built = Path(bento["home"]) / "bentos" / "activity-scorer" / bento["tag"].split(":")[1]
    assert (built / "src" / "serving" / "service.py").is_file()
    assert f"model_tag: {bento['model']}" in (built / "bento.yaml").read_text()
