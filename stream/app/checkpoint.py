"""The checkpoint's fingerprint: refuse to resume a checkpoint made for another input.

Beside Spark's own files, ``<checkpoint>/heartrisk-fingerprint.json`` records the
settings the query was first started with (``Settings.fingerprint``). A restart
with a different input topic (or broker, or query name) is refused with a clear
message instead of silently mixing offsets. Works on any Hadoop path.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from pyspark.sql import SparkSession

from stream.config import Settings
from stream.errors import CheckpointError

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "heartrisk-fingerprint.json"


def _jvm(spark: SparkSession) -> Any:
    return cast(Any, spark)._jvm


def _hpath(spark: SparkSession, *parts: Any) -> Any:
    return _jvm(spark).org.apache.hadoop.fs.Path(*parts)


def _fs_and_path(spark: SparkSession, location: str) -> tuple[Any, Any]:
    conf = cast(Any, spark)._jsc.hadoopConfiguration()
    path = _hpath(spark, location)
    return path.getFileSystem(conf), path


def read_fingerprint(spark: SparkSession, location: str) -> dict[str, str] | None:
    """The stored fingerprint, or None when the checkpoint has none yet."""
    fs, root = _fs_and_path(spark, location)
    jvm = _jvm(spark)
    path = _hpath(spark, root, FINGERPRINT_FILE)
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        text = "".join(iter(reader.readLine, None))
    finally:
        stream.close()
    data: dict[str, str] = json.loads(text)
    return data


def check_fingerprint(spark: SparkSession, settings: Settings) -> None:
    """Write the fingerprint on first use; refuse a mismatching checkpoint.

    Raises:
        CheckpointError: the checkpoint was made with other settings.
    """
    location = settings.checkpoint_location
    wanted = settings.fingerprint()
    stored = read_fingerprint(spark, location)
    if stored is None:
        fs, root = _fs_and_path(spark, location)
        has_offsets = fs.exists(_hpath(spark, root, "offsets"))
        if has_offsets:
            logger.warning('event="checkpoint without fingerprint, adopting it" location="%s"', location)
        fs.mkdirs(root)
        out = fs.create(_hpath(spark, root, FINGERPRINT_FILE), True)
        try:
            out.write(bytearray(json.dumps(wanted, indent=2, sort_keys=True).encode()))
        finally:
            out.close()
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
