"""Writer schemas: what the scorer may do with each schema id it plans for.

Runs on the driver, when the Avro query is planned (at start, and again when a
new schema id appears: ``stream.app.replanning``). For every schema id it
settles a verdict:

* ``ok``: an Avro schema the reader schema can resolve (decoded in Spark);
* ``unknown``: the registry answered that it has no such id -> ``UNKNOWN_SCHEMA_ID``;
* ``incompatible``: not Avro, or not readable with the reader schema -> ``INCOMPATIBLE_SCHEMA``;
* ``unavailable``: the registry did not answer and the policy is ``dead-letter``
  -> ``REGISTRY_UNAVAILABLE``. Under the default policy, ``pause``, the scorer
  waits instead, retrying with backoff, and nothing is read past the batch.

``ok`` and ``incompatible`` verdicts are final (an id's schema never changes) and
cached; ``unknown`` is remembered for a minute; ``recheck`` asks about ``unknown``
(after that minute) and ``unavailable`` ids again without waiting, so a plan that
holds them can be replaced once the answer changes.

A flood of distinct garbage ids is bounded: one plan asks the registry about at most
``MAX_LOOKUPS`` new ids (in id order); the rest are ``unknown`` without being asked (their
detail says so), remembered as due, and asked later by ``recheck``, at most ``MAX_LOOKUPS``
at a time. The unknown verdicts remembered are at most ``MAX_REMEMBERED`` (least recently
asked first out; one forgotten is simply asked again when met).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stream.contract.avro import compatibility_error
from stream.contract.registry import SchemaRegistry
from stream.errors import RegistryUnavailable, SchemaNotFound, StoppedWhilePaused

logger = logging.getLogger(__name__)

CODES = {"unknown": "UNKNOWN_SCHEMA_ID", "incompatible": "INCOMPATIBLE_SCHEMA", "unavailable": "REGISTRY_UNAVAILABLE"}
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
UNKNOWN_TTL_S = 60.0
MAX_LOOKUPS = 100  # registry calls for new ids per plan (and per recheck)
MAX_REMEMBERED = 10_000  # unknown verdicts kept


@dataclass(frozen=True)
class Writer:
    """The verdict on one schema id."""

    schema_id: int
    status: str  # ok | unknown | incompatible | unavailable
    schema_str: str = ""
    detail: str = ""
    asked: bool = True  # False: unknown because a flood went over MAX_LOOKUPS, not because the registry said so

    @property
    def code(self) -> str | None:
        """The dead-letter code for this id's rows (None when they decode)."""
        return CODES.get(self.status)


def unknown_detail(schema_id: int | str) -> str:
    """The detail of an id the registry does not know."""
    return f"schema id {schema_id} is not in the registry"


def unasked_detail(schema_id: int | str) -> str:
    """The detail of an id a flood left unasked."""
    return (f"schema id {schema_id} was not asked about: over {MAX_LOOKUPS} new schema ids came at once (a flood?); "
            "it is asked later, and replay --code UNKNOWN_SCHEMA_ID sends such events again")


class WriterSchemas:
    """Verdicts by schema id, settled against the registry and the reader schema."""

    def __init__(
        self,
        registry: SchemaRegistry,
        reader: Any,
        on_unavailable: str = "pause",
        stop: threading.Event | None = None,
        sleep: Callable[[float], Any] | None = None,
        on_pause: Callable[[int, int], Any] | None = None,
        on_resume: Callable[[], Any] | None = None,
    ) -> None:
        self.registry = registry
        self.reader = reader
        self.on_unavailable = on_unavailable
        self.stop = stop or threading.Event()
        self.sleep = sleep or self.stop.wait  # a stop request ends the wait at once
        self.on_pause = on_pause  # (schema id, attempt) on every retry: the progress file's pause heartbeat
        self.on_resume = on_resume
        self._final: dict[int, Writer] = {}
        self._unknown: OrderedDict[int, tuple[float, Writer]] = OrderedDict()  # id -> (asked at, verdict), an LRU

    def _remember_unknown(self, schema_id: int, asked_at: float, w: Writer) -> None:
        self._unknown[schema_id] = (asked_at, w)
        self._unknown.move_to_end(schema_id)
        while len(self._unknown) > MAX_REMEMBERED:
            self._unknown.popitem(last=False)

    def _verdict(self, schema_id: int) -> Writer:
        found = self.registry.writer_schema(schema_id)  # raises SchemaNotFound / RegistryUnavailable
        if found.schema_type.upper() != "AVRO":
            return Writer(schema_id, "incompatible", detail=f"schema id {schema_id} is {found.schema_type}, not AVRO")
        try:
            err = compatibility_error(found.parsed, self.reader)
        except Exception as exc:  # a schema the registry accepted but fastavro cannot expand
            err = f"the writer schema does not parse: {str(exc)[:200]}"
        if err:
            return Writer(schema_id, "incompatible", detail=f"schema id {schema_id} cannot be read: {err}")
        return Writer(schema_id, "ok", schema_str=found.schema_str)

    def _back(self, schema_id: int, attempts: int) -> None:
        if attempts:
            logger.info('event="schema registry back" schema_id=%d after_attempts=%d', schema_id, attempts)
            if self.on_resume:
                self.on_resume()

    def _settle(self, schema_id: int) -> Writer:
        attempt = 0
        while True:
            try:
                w = self._verdict(schema_id)
                self._final[schema_id] = w
                self._back(schema_id, attempt)
                logger.info('event="writer schema" schema_id=%d status="%s"', schema_id, w.status)
                return w
            except SchemaNotFound:
                self._back(schema_id, attempt)
                w = Writer(schema_id, "unknown", detail=unknown_detail(schema_id))
                self._remember_unknown(schema_id, time.monotonic(), w)
                return w
            except RegistryUnavailable as exc:
                if self.on_unavailable == "dead-letter":
                    logger.warning('event="registry unavailable, dead-lettering" schema_id=%d', schema_id)
                    return Writer(schema_id, "unavailable", detail=str(exc)[:300])
                if self.stop.is_set():
                    msg = f"{StoppedWhilePaused.MARKER}: schema id {schema_id}; the batch stays uncommitted"
                    logger.warning(
                        'event="stop while paused" schema_id=%d note="the batch ends uncommitted and is read again '
                        'on restart; the FOREACH_BATCH_USER_FUNCTION_ERROR traces that follow are expected"',
                        schema_id,
                    )
                    raise StoppedWhilePaused(msg) from exc
                wait = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                attempt += 1
                logger.warning(
                    'event="paused: schema registry unavailable" schema_id=%d attempt=%d retry_in_s=%.0f reason="%s"',
                    schema_id, attempt, wait, str(exc)[:200],
                )
                if self.on_pause:
                    self.on_pause(schema_id, attempt)
                self.sleep(wait)

    def recheck(self, planned: Mapping[int, Writer]) -> bool:
        """Ask once more about the planned ids whose verdict may change; True if one did.

        Never waits: an unanswered question keeps the planned verdict.
        """
        now = time.monotonic()
        changed = False
        due = []
        for i, w in sorted(planned.items()):
            if w.status == "unknown":
                recent = self._unknown.get(i)
                if recent is not None and now - recent[0] < UNKNOWN_TTL_S:
                    continue
            elif w.status != "unavailable":
                continue
            due.append((i, w))
        due.sort(key=lambda iw: self._unknown[iw[0]][0] if iw[0] in self._unknown else float("-inf"))
        for i, w in due[:MAX_LOOKUPS]:  # a flood is asked about a slice at a time, least recently asked first
            try:
                fresh = self._verdict(i)
            except SchemaNotFound:
                self._remember_unknown(i, now, Writer(i, "unknown", detail=unknown_detail(i)))
                changed = changed or w.status != "unknown"  # asked at last, still unknown: the same code, no re-plan
                continue
            except RegistryUnavailable:
                continue
            self._final[i] = fresh
            self._unknown.pop(i, None)
            logger.info('event="writer schema changed" schema_id=%d was="%s" now="%s"', i, w.status, fresh.status)
            changed = True
        return changed

    def resolve(self, schema_ids: Iterable[int]) -> dict[int, Writer]:
        """Verdicts for these ids (and every final one known so far).

        Raises:
            StoppedWhilePaused: paused on the registry when a stop was requested.
        """
        out = dict(self._final)
        now = time.monotonic()
        lookups = 0
        for i in sorted(set(schema_ids)):
            recent = self._unknown.get(i)
            if i in self._final:
                out[i] = self._final[i]
            elif recent is not None and (now - recent[0] < UNKNOWN_TTL_S or lookups >= MAX_LOOKUPS):
                out[i] = recent[1]
            elif lookups >= MAX_LOOKUPS:  # a flood: the rest are not asked now (recheck asks them later)
                out[i] = Writer(i, "unknown", detail=unasked_detail(i), asked=False)
                self._remember_unknown(i, now - UNKNOWN_TTL_S, out[i])  # due at the next recheck
            else:
                lookups += 1
                out[i] = self._settle(i)
        if lookups >= MAX_LOOKUPS:
            logger.warning('event="schema id flood" new_ids=%d asked=%d note="the rest are UNKNOWN_SCHEMA_ID, asked '
                           'later"', sum(1 for w in out.values() if not w.asked), lookups)
        return out
