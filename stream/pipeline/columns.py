"""Every column name the pipeline stages share, in one place.

The stages (source, decode, validate, score, encode, sink) import names from
here and never from each other, so each stage can be read, tested and replaced
on its own. Pure Python: the exporter and other pyspark-free code may import it.
It also names the project's own JVM functions (jvm/functions), and registers them.
"""

from __future__ import annotations

from typing import Any

from stream.errors import SetupError

# source: the Kafka source's columns, in order
KEY = "key"
VALUE = "value"
TOPIC = "topic"
PARTITION = "partition"
OFFSET = "offset"
TIMESTAMP = "timestamp"
RAW_COLUMNS = (KEY, VALUE, TOPIC, PARTITION, OFFSET, TIMESTAMP)

# decode: the typed event, the raw field map (only where needed), the decode verdict
EVENT = "event"
PRESENT = "_present"
DECODE_ERROR = "decode_error"
DECODE_DETAIL = "decode_detail"
SCHEMA_ID = "schema_id"
# the error a plan raises for a schema id it was not planned for (the scorer then re-plans)
UNPLANNED_SCHEMA_ID = "HEARTRISK_UNPLANNED_SCHEMA_ID"

# validate: the verdict of the whole contract, and the envelope every output needs
ERROR_CODE = "error_code"
ERROR_DETAIL = "error_detail"
STAGE = "stage"
EVENT_ID = "event_id"
PATIENT_ID = "patient_id"
EVENT_TS = "event_ts"

# score: the model's answer (null on rejected rows)
PROBABILITY = "probability_disease"
RISK_PREDICTION = "risk_prediction"
RISK_LEVEL = "risk_level"
CONTRIBUTIONS = "contributions"
IMPUTED_FIELDS = "imputed_fields"
MODEL_VERSION = "model_version"
# score, with a challenger model: its answer for the same valid events (shadow scoring)
SHADOW_PROBABILITY = "shadow_probability"
SHADOW_LEVEL = "shadow_risk_level"
SHADOW_VERSION = "shadow_model_version"

# encode: when the micro-batch was scored
SCORED_AT = "scored_at"

# The JVM's clock, read per row (milliseconds): what "now" is to validate (the event_time window) and encode
# (scored_at). Not current_timestamp(): a streaming query turns that into the micro-batch's timestamp as a
# constant inlined in the generated code, so every micro-batch compiled its stages again (2 compiles, ~0.13 s,
# per batch, measured).
JVM_NOW_MS = "cast(reflect('java.lang.System', 'currentTimeMillis') as bigint)"

# the per-batch observation (aggregates computed inside the query, read by the listener)
OBSERVATION = "heartrisk"
# Upper bounds (seconds) of the end-to-end latency histogram; +Inf is implied.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


def bucket_name(le: float) -> str:
    """The observation column of one latency bucket: ``le_0_05`` for 0.05 s."""
    return f"le_{str(le).replace('.', '_')}"


# The project's JVM functions (jvm/functions, built by `make setup`): SQL name -> Java class
JSON_FLAW_FUNCTION = "heartrisk_json_flaw"  # decode: what from_json lets through (trailing bytes, a field twice)
FERNET_SEAL_FUNCTION = "heartrisk_fernet_seal"  # encode: a dead letter's payload as a Fernet token
JAVA_UDFS = {JSON_FLAW_FUNCTION: "io.heartrisk.spark.JsonFlaw", FERNET_SEAL_FUNCTION: "io.heartrisk.spark.FernetSeal"}


def register_java_udf(spark: Any, name: str) -> None:
    """Register one of ``JAVA_UDFS`` (returning a string) in the session, once.

    Raises:
        SetupError: the class is not on Spark's classpath (``make setup`` builds it).
    """
    try:
        if not spark.catalog.functionExists(name):
            spark.udf.registerJavaFunction(name, JAVA_UDFS[name], "string")
    except Exception as exc:  # py4j / AnalysisException: the class is missing from spark.jars
        why = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else exc.__class__.__name__
        msg = f"the Spark function {name} could not be registered ({why}): run `make setup`"
        raise SetupError(msg) from exc
