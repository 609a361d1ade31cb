"""The checkpoint's fingerprint: refuse to resume a checkpoint made for another input.

Beside Spark's own files, ``<checkpoint>/heartrisk-fingerprint.json`` records the
settings the query was first started with (``Settings.fingerprint``). A restart
with a different input topic (or broker, or query name) is refused with a clear
message instead of silently mixing offsets. Works on any Hadoop path.
"""

from __future__ import annotations

import json
import logging

from pyspark.sql import SparkSession

from stream.app.checkpoint_log import OFFSETS, HadoopFiles, LogFiles, batch_ids
from stream.config import Settings
from stream.errors import CheckpointError

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "heartrisk-fingerprint.json"


def fingerprint_of(files: LogFiles) -> dict[str, str] | None:
    """The stored fingerprint of a checkpoint, or None when it has none yet."""
    text = files.read(FINGERPRINT_FILE)
    if text is None:
        return None
    data: dict[str, str] = json.loads(text)
    return data


def read_fingerprint(spark: SparkSession, location: str) -> dict[str, str] | None:
    """The stored fingerprint (any Hadoop path), or None when the checkpoint has none yet."""
    return fingerprint_of(HadoopFiles(spark, location))


def check_fingerprint(spark: SparkSession, settings: Settings) -> None:
    """Write the fingerprint on first use; refuse a mismatching checkpoint.

    Raises:
        CheckpointError: the checkpoint was made with other settings.
    """
    location = settings.checkpoint_location
    wanted = settings.fingerprint()
    files = HadoopFiles(spark, location)
    stored = fingerprint_of(files)
    if stored is None:
        if batch_ids(files, OFFSETS):
            logger.warning('event="checkpoint without fingerprint, adopting it" location="%s"', location)
        files.write(FINGERPRINT_FILE, json.dumps(wanted, indent=2, sort_keys=True))
        return
    diffs = [k for k in wanted if stored.get(k) != wanted[k]]
    if diffs:
        if "input_topic" in diffs:
            what = f"input topic {stored.get('input_topic')!r}, but this query reads {wanted['input_topic']!r}"
        else:
            what = f"different settings ({', '.join(diffs)})"
        msg = (
            f"checkpoint {location} was made for {what}. Use another --query-name or "
            "--checkpoint-dir for the new input, or delete the checkpoint to start over "
            "(the new query then starts from --starting-offsets)"
        )
        raise CheckpointError(msg)
