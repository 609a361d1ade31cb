"""The exporter pushes to a real Pushgateway over https with basic auth, and fails loudly (never leaking) without."""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from stream.local.secure import SecurityDir
from stream.monitor.progress import empty_totals, write_progress
from tests.helpers import free_port, terminate, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))
PASSWORD = "pushgateway-secret-7"


def _get(url: str, ca: Path, user_info: str) -> str:
    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(user_info.encode()).decode())
    with urllib.request.urlopen(request, timeout=5, context=ssl.create_default_context(cafile=str(ca))) as r:
        return r.read().decode()


def test_the_exporter_pushes_over_https_with_basic_auth(tmp_path):
    sec = SecurityDir(tmp_path)
    sec.create()  # a local CA, and a certificate for localhost/127.0.0.1 ("broker") the Pushgateway serves
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {sec.dir / 'broker.crt'}\n  key_file: {sec.dir / 'broker.key'}\n"
                   f"basic_auth_users:\n  pusher: '{hashed}'\n")
    port = free_port()
    binary = shutil.which("prometheus-pushgateway")
    assert binary, "prometheus-pushgateway comes from Debian, installed by `make setup`"
    gateway = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web}"],
                               stdout=open(tmp_path / "pushgateway.log", "wb"), stderr=subprocess.STDOUT)
    progress = tmp_path / "progress.json"
    write_progress(progress, {"state": "active", "query_name": "tls", "model_version": "1.0.0",
                              "last_progress_at": 9e18, "totals": {**empty_totals(), "predictions": 42}})
    base = {**os.environ, "HEARTRISK_PROGRESS_FILE": str(progress), "HEARTRISK_QUERY_NAME": "tls",
            "HEARTRISK_PUSHGATEWAY": f"https://localhost:{port}", "HEARTRISK_EXPORTER_INTERVAL": "0.5"}
    url = f"https://localhost:{port}/metrics"
    ca = sec.dir / "ca.pem"
    exporters = []
    try:
        wait_for(lambda: _ready(url, ca), 30, what="the TLS Pushgateway")
        for name, extra in (("no-ca", {"HEARTRISK_PUSHGATEWAY_USER_INFO": f"pusher:{PASSWORD}"}),
                            ("wrong-password", {"HEARTRISK_PUSHGATEWAY_USER_INFO": "pusher:nope",
                                                "HEARTRISK_TLS_CA_FILE": str(ca)}),
                            ("good", {"HEARTRISK_PUSHGATEWAY_USER_INFO": f"pusher:{PASSWORD}",
                                      "HEARTRISK_TLS_CA_FILE": str(ca)})):
            log = tmp_path / f"exporter-{name}.log"
            proc = subprocess.Popen([HEARTRISK, "exporter", "--exporter-port", str(free_port())],
                                    env={**base, **extra}, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
            exporters.append((name, proc, log))
        for name, _proc, log in exporters[:2]:
            wait_for(lambda log=log: "push failed" in log.read_text(), 30, what=f"the {name} exporter to fail")
        wait_for(lambda: 'heartrisk_predictions_total{instance="tls",job="heartrisk"} 42' in
                 _get(url, ca, f"pusher:{PASSWORD}"), 30, what="the good exporter's push")
        assert "certificate verify failed" in (tmp_path / "exporter-no-ca.log").read_text()
        assert "401" in (tmp_path / "exporter-wrong-password.log").read_text()
    finally:
        terminate([p for _, p, _ in exporters] + [gateway])
    for _, _, log in exporters:
        assert PASSWORD not in log.read_text() and "pusher:nope" not in log.read_text()


def _ready(url: str, ca: Path) -> bool:
    try:
        _get(url, ca, f"pusher:{PASSWORD}")
        return True
    except OSError:
        time.sleep(0.2)
        return False
