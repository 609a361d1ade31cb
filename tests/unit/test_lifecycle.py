"""The scorer's process lifecycle: how the wait ends, what an end means, and a stop under a paused registry."""

from __future__ import annotations

import threading

from pyspark.errors import StreamingQueryException

from stream.app.ends import failure_message, jvm_death, query_failure
from stream.app.lifecycle import await_stop_or_end, stop_gracefully
from stream.config import load_settings
from stream.errors import BrokerError, HeartriskError, StoppedWhilePaused


class EndedQuery:
    """A query whose wait raises the way PySpark does when the query ended with an error."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.waits = 0

    @property
    def isActive(self) -> bool:  # noqa: N802 (PySpark's name)
        return self.waits == 0

    def awaitTermination(self, timeout: float) -> None:  # noqa: N802 (PySpark's name)
        self.waits += 1
        raise self.error


def test_a_query_ended_by_an_error_during_the_wait_is_left_to_the_caller():
    query = EndedQuery(StreamingQueryException(message=f"boom: {StoppedWhilePaused.MARKER}"))
    await_stop_or_end(query, threading.Event())  # type: ignore[arg-type]
    assert query.waits == 1, "returns at once instead of raising out of the scorer"


def test_a_stop_while_paused_is_a_clean_end_and_every_other_error_a_failure():
    paused = RuntimeError(f"Traceback ...\nStoppedWhilePaused: {StoppedWhilePaused.MARKER}: schema id 3")
    other = RuntimeError("Py4JJavaError: disk full\nmore")
    assert failure_message(None, stopped=False) is None
    assert failure_message(paused, stopped=True) is None
    assert failure_message(paused, stopped=False) == "the streaming query failed: Traceback ..."
    assert failure_message(other, stopped=True) == "the streaming query failed: Py4JJavaError: disk full"




class BusyQuery:
    """A query whose trigger is active for ``busy_polls`` status reads, then idle."""

    def __init__(self, busy_polls: int) -> None:
        self.busy_polls = busy_polls
        self.polls = 0
        self.stopped_at: int | None = None

    @property
    def isActive(self) -> bool:  # noqa: N802 (PySpark's name)
        return self.stopped_at is None

    @property
    def status(self) -> dict[str, bool]:
        self.polls += 1
        return {"isTriggerActive": self.polls <= self.busy_polls}

    def stop(self) -> None:
        self.stopped_at = self.polls


def test_a_graceful_stop_waits_for_the_batch_in_flight_then_stops():
    query = BusyQuery(busy_polls=3)
    stop_gracefully(query, timeout_s=10)  # type: ignore[arg-type]
    assert query.stopped_at == 4, "stopped on the first idle status, not before"


def test_a_graceful_stop_gives_up_waiting_at_its_deadline():
    query = BusyQuery(busy_polls=10**9)
    stop_gracefully(query, timeout_s=0.1)  # type: ignore[arg-type]
    assert query.stopped_at is not None and query.stopped_at < 10**9


def test_real_time_mode_stops_at_once():
    query = BusyQuery(busy_polls=10**9)
    stop_gracefully(query, timeout_s=10, real_time=True)  # type: ignore[arg-type]
    assert query.stopped_at == 0


def test_run_explains_a_dead_scorer_by_its_signal_or_its_last_error(tmp_path):
    from stream.app.run import last_error

    log = tmp_path / "scorer.log"
    log.write_text("INFO started\n2026 ERROR Query terminated with error\nheartrisk: error: disk full\nINFO bye\n")
    assert last_error(log, 1) == "heartrisk: error: disk full", "our own one-line error first"
    assert last_error(log, -9) == "killed by signal SIGKILL", "a signal is the cause, whatever the JVM logged"
    log.write_text("INFO started\n2026 ERROR Query terminated with error\nINFO bye\n")
    assert last_error(log, 1) == "2026 ERROR Query terminated with error"
    log.write_text("")
    assert last_error(log, 1) == "no output"


def test_a_broker_that_stopped_answering_is_a_broker_error_that_says_a_restart_is_safe():
    settings = load_settings({"bootstrap_servers": "kafka-1:9093", "broker_wait": 45.0})
    seen = [
        "org.apache.kafka.common.errors.TimeoutException: Timeout of 45000ms expired before the position for "
        "partition events-1 could be determined",
        "Job aborted ...\nCaused by: org.apache.kafka.common.errors.TimeoutException: Expiring 12 record(s) for "
        "risk-predictions-0: 45004 ms has passed since batch creation",
        "java.util.concurrent.TimeoutException: Cannot fetch record for offset 5 in 45000 milliseconds",
    ]
    for text in seen:
        err = query_failure(RuntimeError(text), stopped=False, settings=settings)
        assert isinstance(err, BrokerError) and err.exit_code == 4, text
        (line,) = str(err).splitlines()
        assert "(kafka-1:9093) did not answer for 45s" in line and "HEARTRISK_BROKER_WAIT" in line
        assert "nothing is lost" in line
    other = query_failure(RuntimeError("Py4JJavaError: disk full"), stopped=False, settings=settings)
    assert type(other) is HeartriskError and other.exit_code == 1
    assert str(other) == "the streaming query failed: Py4JJavaError: disk full"
    assert query_failure(None, stopped=False, settings=settings) is None


def test_the_broker_wait_reaches_every_spark_kafka_client_and_raw_options_still_win():
    opts = load_settings({"broker_wait": 20.0}).spark_kafka_options()
    assert (opts["kafka.default.api.timeout.ms"], opts["kafka.delivery.timeout.ms"]) == ("20000", "20000")
    assert opts["kafka.request.timeout.ms"] == "10000", "the producer refuses delivery < linger + request"
    assert load_settings({}).spark_kafka_options()["kafka.request.timeout.ms"] == "30000"
    mine = load_settings({"broker_wait": 20.0, "kafka_options": {"delivery.timeout.ms": "7"},
                          "kafka_java_options": {"default.api.timeout.ms": "9"}}).spark_kafka_options()
    assert (mine["kafka.delivery.timeout.ms"], mine["kafka.default.api.timeout.ms"]) == ("7", "9")


def test_each_client_has_its_own_raw_options():
    s = load_settings({}, environ={"HEARTRISK_KAFKA_JAVA_OPTIONS": "metadata.max.age.ms=1000",
                                   "HEARTRISK_KAFKA_LIBRDKAFKA_OPTIONS": "topic.metadata.refresh.interval.ms=2000",
                                   "HEARTRISK_KAFKA_OPTIONS": "client.id=x"})
    java, librdkafka = s.spark_kafka_options(), s.kafka_client_config()
    assert java["kafka.metadata.max.age.ms"] == "1000" and "kafka.topic.metadata.refresh.interval.ms" not in java
    assert librdkafka["topic.metadata.refresh.interval.ms"] == "2000" and "metadata.max.age.ms" not in librdkafka
    assert java["kafka.client.id"] == librdkafka["client.id"] == "x"


def test_a_deleted_topic_is_named_with_what_to_do():
    text = ("Job aborted ...\nCaused by: org.apache.kafka.common.errors.TimeoutException: Topic risk-predictions "
            "not present in metadata after 60000 ms.")
    err = query_failure(RuntimeError(text), stopped=False, settings=load_settings({}))
    assert isinstance(err, BrokerError)
    assert str(err).startswith("the topic risk-predictions does not exist on the broker (deleted?)")
    assert "heartrisk kafka topics" in str(err) and "nothing is lost" in str(err)


def test_a_dead_spark_jvm_is_one_line_found_through_the_errors_raised_during_it():
    from py4j.protocol import Py4JError, Py4JNetworkError

    direct = Py4JNetworkError("Answer from Java side is empty")
    try:  # Python's own chaining: the dead gateway, then a clean-up call that failed during it
        try:
            raise Py4JNetworkError("Error while sending or receiving")
        except Py4JNetworkError:
            raise Py4JError("An error occurred while calling o42.stop") from None
    except Py4JError as exc:
        chained = exc
    chained.__context__ = Py4JNetworkError("An error occurred while trying to connect to the Java server")
    for exc in (direct, chained):
        (line,) = jvm_death(exc).splitlines()
        assert line.startswith("the Spark JVM under this command died") and "nothing is lost" in line
    assert jvm_death(Py4JError("An error occurred while calling o1.count")) is None
    assert jvm_death(ValueError("bad value")) is None
