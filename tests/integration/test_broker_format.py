"""KRaft storage formatting copes with every cluster id, including one that starts with "-"."""

from __future__ import annotations

import uuid

import pytest

from stream.config import PROJECT_ROOT
from stream.local.broker import LocalBroker
from tests.helpers import free_port

pytestmark = pytest.mark.integration


def test_format_accepts_a_cluster_id_that_starts_with_a_dash(tmp_path, monkeypatch):
    # 0xF8... encodes to "-" first in URL-safe base64; such ids once made the format step fail at random.
    dashed = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
    monkeypatch.setattr("stream.local.broker.uuid.uuid4", lambda: dashed)
    broker = LocalBroker(
        state_dir=tmp_path, port=free_port(), controller_port=free_port(), jvm_dir=PROJECT_ROOT / ".jvm"
    )
    broker.state_dir.mkdir(parents=True, exist_ok=True)
    broker.config_file.write_text(broker.server_properties())
    (broker.state_dir / "log4j2.properties").write_text("status = warn\n")
    broker._format_storage()
    meta = (broker.data_dir / "meta.properties").read_text()
    assert "cluster.id=-" in meta
