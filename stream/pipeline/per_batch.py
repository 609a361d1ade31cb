"""Per-batch scoring, for Avro input: the writer schemas are settled before each micro-batch is decoded.

Spark's ``from_avro`` takes its writer schema when the plan is built, and a
streaming plan is built once, at start. So a query planned with the schema ids
known at start could not decode a schema id that appears later without being
restarted. With Avro (or auto) input the scorer therefore runs the pipeline in
``foreachBatch``. For each micro-batch, on the driver, it:

1. caches the batch's raw rows and collects its distinct schema ids (one small pass);
2. settles a verdict for each id that is new (``stream.contract.writer_schemas``): it fetches
   the schema from the registry and checks it against the reader schema. If the
   registry is down, the batch waits here (the ``pause`` policy);
3. plans decode -> validate -> score -> encode for exactly those ids, and writes
   the batch to Kafka (predictions and dead letters, as the JSON path does).

The checkpoint commits the batch only after step 3, so a crash anywhere replays it
(at-least-once, like the JSON path). Every row is still decoded and scored in the
JVM; the Python here runs once per batch, not per row. A producer can therefore
move to a new schema version mid-stream, and the next batch decodes it, with no
restart and no checkpoint reset.

Limit: Spark's real-time mode has no ``foreachBatch``, so Avro input needs a
micro-batch trigger (``check_real_time`` says so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from stream.config import Settings
from stream.contract.writer_schemas import WriterSchemas
from stream.model.artifact import LoadedModel
from stream.pipeline.build import build_scores
from stream.pipeline.columns import VALUE
from stream.pipeline.decode import has_header, schema_id_column
from stream.pipeline.encode import encode_output
from stream.pipeline.sink import kafka_sink_options

logger = logging.getLogger(__name__)

OnCounts = Callable[[int, dict[str, Any]], None]


def batch_schema_ids(raw: DataFrame) -> list[int]:
    """The distinct schema ids of the framed messages in a batch."""
    value = F.col(VALUE)
    rows = raw.where(has_header(value)).select(schema_id_column(value).alias("id")).distinct().collect()
    return sorted(int(r["id"]) for r in rows)


class BatchScorer:
    """The ``foreachBatch`` function of the Avro scorer.

    ``counted`` are the aggregates to compute over each scored batch (the
    scorer's observation), handed with the batch id to ``on_counts``.
    """

    def __init__(
        self,
        settings: Settings,
        model: LoadedModel,
        writers: WriterSchemas,
        prediction_schema_id: int | None,
        counted: Sequence[Column] = (),
        on_counts: OnCounts | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.writers = writers
        self.prediction_schema_id = prediction_schema_id
        self.counted = list(counted)
        self.on_counts = on_counts

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """Score one micro-batch and write it to Kafka."""
        batch = batch.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            ids = batch_schema_ids(batch)
            verdicts = self.writers.resolve(ids)
            scored = build_scores(batch, self.model, self.settings.input_format, verdicts)
            # Cached, so the counts below come from the very rows written (an Observation is not
            # filled by the Kafka batch writer, which runs its own inner query).
            scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
            try:
                out = encode_output(scored, self.settings, self.prediction_schema_id)
                out.write.format("kafka").options(**kafka_sink_options(self.settings)).save()
                counts: dict[str, Any] = {}
                if self.counted:
                    counts = scored.agg(*self.counted).first().asDict()  # type: ignore[union-attr]
            finally:
                scored.unpersist()
            if self.on_counts is not None:
                self.on_counts(batch_id, counts)
            logger.debug('event="avro batch" batch_id=%d schema_ids=%s rows=%s', batch_id, ids, counts.get("rows"))
        finally:
            batch.unpersist()
