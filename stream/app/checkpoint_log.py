"""Spark's checkpoint logs, read (and, for ``checkpoint reset``, extended) outside the query.

A streaming checkpoint keeps, per micro-batch N:

* ``offsets/N``: ``v1``, the batch's metadata (JSON), then one line of end
  offsets per source (``{"topic": {"partition": offset}}``);
* ``commits/N``: ``v1`` and ``{"nextBatchWatermarkMs": ...}``, written once the
  batch's output is committed;
* ``sources/0/0``: where a new query started.

The query resumes after the highest committed batch: from that batch's end
offsets. A local checkpoint is read with plain Python (``heartrisk status``
needs no JVM); any other Hadoop path (``hdfs://``, ``s3a://``) through Spark's
Hadoop file system.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

OFFSETS = "offsets"
COMMITS = "commits"
INITIAL = "sources/0/0"


class LogFiles(Protocol):
    """The small files of one checkpoint."""

    location: str

    def names(self, folder: str) -> list[str]:
        """The names of the files in a folder (sorted; [] when there is no such folder)."""
        ...

    def read(self, name: str) -> str | None:
        """A file's text, or None when it does not exist."""
        ...

    def write(self, name: str, text: str) -> None:
        """Create or replace a file (whole, never half-written)."""
        ...


def is_local(location: str) -> bool:
    """A plain path or ``file://`` URI (read without Spark)."""
    return "://" not in location or location.startswith("file://")


class LocalFiles:
    """A checkpoint on the local file system."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.root = Path(location.removeprefix("file://"))

    def names(self, folder: str) -> list[str]:
        """Names of the files in a folder."""
        d = self.root / folder
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def read(self, name: str) -> str | None:
        """Text of a file, or None."""
        try:
            return (self.root / name).read_text()
        except FileNotFoundError:
            return None

    def write(self, name: str, text: str) -> None:
        """Atomic: a temporary file, then a rename."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)


class HadoopFiles:
    """A checkpoint on any Hadoop file system, through a Spark session's JVM."""

    def __init__(self, spark: Any, location: str) -> None:
        self.location = location
        self.jvm = spark._jvm
        conf = spark._jsc.hadoopConfiguration()
        self.root = self.jvm.org.apache.hadoop.fs.Path(location)
        self.fs = self.root.getFileSystem(conf)

    def _path(self, name: str) -> Any:
        return self.jvm.org.apache.hadoop.fs.Path(self.root, name)

    def names(self, folder: str) -> list[str]:
        """Names of the files in a folder."""
        d = self._path(folder)
        if not self.fs.exists(d):
            return []
        return sorted(str(f.getPath().getName()) for f in self.fs.listStatus(d))

    def read(self, name: str) -> str | None:
        """Text of a file, or None."""
        path = self._path(name)
        if not self.fs.exists(path):
            return None
        stream = self.fs.open(path)
        try:
            reader = self.jvm.java.io.BufferedReader(self.jvm.java.io.InputStreamReader(stream, "UTF-8"))
            return "\n".join(iter(reader.readLine, None))
        finally:
            stream.close()

    def write(self, name: str, text: str) -> None:
        """Create or replace, never half-written: a temporary file, then a rename (on HDFS, atomic)."""
        path = self._path(name)
        tmp = self.jvm.org.apache.hadoop.fs.Path(path.getParent(), f".{path.getName()}.tmp")
        out = self.fs.create(tmp, True)
        try:
            out.write(bytearray(text.encode()))
        finally:
            out.close()
        if self.fs.exists(path):
            self.fs.delete(path, False)
        self.fs.rename(tmp, path)


def batch_ids(files: LogFiles, folder: str) -> list[int]:
    """The numbered entries of ``offsets`` or ``commits`` (ascending)."""
    return sorted(int(n) for n in files.names(folder) if n.isdigit())


def open_log(location: str, spark: Any = None) -> LogFiles:
    """The checkpoint's files: local ones directly, others through ``spark`` (required then)."""
    if is_local(location):
        return LocalFiles(location)
    if spark is None:
        msg = f"{location} is not a local path: reading it needs a Spark session"
        raise ValueError(msg)
    return cast(LogFiles, HadoopFiles(spark, location))


@dataclass(frozen=True)
class Position:
    """Where a query stands in its input topic."""

    batch_id: int | None  # the last committed batch (None: nothing committed yet)
    offsets: dict[int, int]  # partition -> next offset to read
    metadata: dict[str, Any]  # the batch's metadata line (empty when none)


def source_offsets(text: str, topic: str) -> dict[int, int] | None:
    """The offsets of ``topic`` in an offsets-log entry (or in ``sources/0/0``)."""
    for line in text.splitlines()[1:]:
        line = line.strip()
        if line.startswith("{"):
            data = json.loads(line)
            if topic in data:
                return {int(p): int(o) for p, o in data[topic].items()}
    return None


def committed(files: LogFiles, topic: str) -> Position | None:
    """The end of the last committed batch, or where a new query started; None for an empty checkpoint."""
    done = batch_ids(files, COMMITS)
    for batch_id in reversed(done):
        text = files.read(f"{OFFSETS}/{batch_id}")
        if text is None:
            continue
        offsets = source_offsets(text, topic)
        if offsets is not None:
            lines = text.splitlines()
            meta = json.loads(lines[1]) if len(lines) > 1 and lines[1].startswith("{") else {}
            return Position(batch_id, offsets, meta)
    initial = files.read(INITIAL)
    if initial is not None:
        offsets = source_offsets(initial, topic)
        if offsets is not None:
            return Position(None, offsets, {})
    return None
