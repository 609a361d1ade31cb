"""Hot swap: the scorer follows the registry's aliases and changes models at a batch boundary.

With ``--model-uri models:/heart-risk@champion`` the scorer asks the registry,
every ``--model-check-interval`` seconds, which versions hold ``champion`` and
``challenger``. When one moved it first fetches, verifies and compiles the new
version while the old one keeps scoring; a version that fails any of that is
refused (a log line, ``heartrisk_model_swap_failures_total``) and not tried
again until the alias moves on. Then the switch: the scoring plan holds the
model's coefficients as constants (``stream.model.compiled``), so a new model is
a new plan: the micro-batch in flight finishes and commits on the old model
(a graceful stop), and the query starts again on the same checkpoint with the
new one. Every event is scored once, by the version named in its prediction.
The process, its Spark session and its listener stay up; only the query's run
changes: about 1.2 s to fetch, verify and compile, 1.3 s to stop and start, and
3.3-5.7 s from the alias change to the first prediction by the new version with a
1 s check interval (tests/integration/test_model_lifecycle.py, four runs).

In real-time mode there is no gap between "batches" to stop in, so a swap stops
the query at once and the records since its last checkpoint are scored again,
by the new model (at-least-once, as after a crash).

A path (``--model-dir``, or ``--model-uri`` a path) or a fixed ``models:/NAME/N``
is loaded once and never followed, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from pyspark.errors import StreamingQueryException
from pyspark.sql.streaming.query import StreamingQuery

from stream.app.graceful import stop_gracefully
from stream.config import Settings
from stream.errors import ModelError
from stream.model.artifact import LoadedModel, load_metadata, load_model, resolve_model_dir
from stream.model.registry import CHALLENGER, LOCAL_DIR, ModelRegistry
from stream.model.uri import ModelUri

logger = logging.getLogger(__name__)

SWAP_WAIT_S = 60.0  # for a gap between batches; a stream with none for so long is stopped mid-batch (logged)


@dataclass
class Models:
    """The models a scoring plan uses; the plan reads them each time it is (re)built."""

    champion: LoadedModel
    challenger: LoadedModel | None = None
    numbers: dict[str, int | None] = field(default_factory=dict)  # alias -> registry version

    def describe(self) -> dict[str, Any]:
        """What the progress file (and so the exporter) shows of them."""
        def one(model: LoadedModel | None, role: str) -> dict[str, Any] | None:
            if model is None:
                return None
            return {"version": model.version, "number": self.numbers.get(role)}

        return {"champion": one(self.champion, "champion"), "challenger": one(self.challenger, CHALLENGER)}


class ModelSource:
    """Where the scorer's models come from, and whether (and when) to look again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.uri = ModelUri.parse(settings.model_uri, settings.path(settings.model_dir))
        self.registry = ModelRegistry.from_settings(settings, self.uri.name) if self.uri.path is None else None
        self.downloads = settings.path(LOCAL_DIR) / "downloads"
        self.interval = settings.model_check_interval
        self.refused: set[tuple[str, int]] = set()
        self.failures = 0

    @property
    def follows(self) -> bool:
        """True when the scorer follows an alias (and so checks the registry while running)."""
        return self.uri.alias is not None

    def check_files(self) -> None:
        """Before Spark starts: a local model must verify (a registry one is fetched and verified at load).

        Raises:
            ModelError: it does not.
        """
        if self.uri.path is not None:
            load_metadata(resolve_model_dir(self.uri.path))

    def _load_number(self, number: int, engine: str) -> LoadedModel:
        """Fetch, verify and load a version; its download is deleted once loaded (Spark holds the model)."""
        assert self.registry is not None
        model_dir, meta = self.registry.fetch(number, self.downloads)
        try:
            return load_model(model_dir, meta, cast(Any, engine))
        finally:
            self.registry.discard(model_dir)

    def load(self) -> Models:
        """The models to start with (needs the Spark session).

        Raises:
            ModelError: the champion cannot be found, fetched or verified.
        """
        engine = self.settings.engine
        if self.uri.path is not None:
            model_dir = resolve_model_dir(self.uri.path)  # once: CURRENT may move later
            return Models(load_model(model_dir, load_metadata(model_dir), engine))
        assert self.registry is not None
        if self.uri.number is not None:
            return Models(self._load_number(self.uri.number, engine), numbers={"champion": self.uri.number})
        alias = cast(str, self.uri.alias)
        number = self.registry.holder(alias)
        if number is None:
            msg = (f"alias {alias!r} of {self.uri.name} is not set in {self.registry.uri}: "
                   f"`heartrisk model import --champion-if-unset`, or `heartrisk model promote N --alias {alias}`")
            raise ModelError(msg)
        models = Models(self._load_number(number, engine), numbers={"champion": number})
        self._challenger(models, models)
        return models

    def _challenger(self, current: Models, into: Models) -> bool:
        """Load the challenger into ``into`` if it moved since ``current``; False when it was refused."""
        assert self.registry is not None
        number = self.registry.holder(CHALLENGER)
        before, serving = current.numbers.get(CHALLENGER), current.challenger
        into.numbers[CHALLENGER] = number
        if number is None:
            into.challenger = None
            return True
        if before == number and serving is not None:
            into.challenger = serving
            return True
        try:
            into.challenger = self._load_number(number, "compiled")  # shadow scoring runs the compiled plan
            return True
        except ModelError as exc:
            self._refuse(CHALLENGER, number, exc)
            into.challenger = serving
            into.numbers[CHALLENGER] = before if serving is not None else None
            return False

    def _refuse(self, role: str, number: int, exc: BaseException) -> None:
        self.refused.add((role, number))
        self.failures += 1
        logger.error('event="model swap refused" role="%s" number=%d reason="%s" detail="the current model keeps '
                     'serving"', role, number, str(exc).splitlines()[0][:400])

    def poll(self, current: Models) -> tuple[Models | None, int]:
        """Ask the registry whether an alias moved; the new models (None: no change) and the new refusals."""
        assert self.registry is not None and self.uri.alias is not None
        failures = self.failures
        try:
            number = self.registry.holder(self.uri.alias)
            challenger = self.registry.holder(CHALLENGER)
        except Exception as exc:  # the registry is down: keep serving, ask again next time
            logger.warning('event="model registry not reachable" reason="%s"', str(exc).splitlines()[0][:300])
            return None, 0
        champion_moved = number is not None and number != current.numbers.get("champion")
        challenger_moved = challenger != current.numbers.get(CHALLENGER)
        new = Models(current.champion, current.challenger, dict(current.numbers))
        if champion_moved and ("champion", cast(int, number)) not in self.refused:
            try:
                new.champion = self._load_number(cast(int, number), self.settings.engine)
                new.numbers["champion"] = number
            except ModelError as exc:
                self._refuse("champion", cast(int, number), exc)
        if challenger_moved and (challenger is None or (CHALLENGER, challenger) not in self.refused):
            self._challenger(current, new)
        changed = new.numbers != current.numbers
        return (new if changed else None), self.failures - failures


class RestartableQuery:
    """A JSON scorer's streaming query that can be planned again at a batch boundary (same checkpoint).

    It offers what the scorer's callers use of ``StreamingQuery``; the query id
    stays (it lives in the checkpoint), the run id changes with each re-plan.
    """

    def __init__(self, start: Callable[[], StreamingQuery]) -> None:
        self._start = start
        self._query = start()

    def replan(self, real_time: bool = False, interval_s: float | None = None) -> float:
        """Stop after the batch in flight commits, then start again (the plan is rebuilt); seconds stopped."""
        stop_gracefully(self._query, SWAP_WAIT_S, real_time, interval_s)
        t0 = time.monotonic()
        self._query = self._start()
        return time.monotonic() - t0

    @property
    def isActive(self) -> bool:  # noqa: N802 - StreamingQuery's name
        """True while the current run is active."""
        return bool(self._query.isActive)

    @property
    def id(self) -> str:
        """The query id (kept across re-plans)."""
        return str(self._query.id)

    @property
    def runId(self) -> str:  # noqa: N802 - StreamingQuery's name
        """The current run's id."""
        return str(self._query.runId)

    @property
    def status(self) -> dict[str, Any]:
        """The current run's status."""
        return dict(self._query.status)

    @property
    def lastProgress(self) -> dict[str, Any] | None:  # noqa: N802 - StreamingQuery's name
        """The current run's last progress."""
        return self._query.lastProgress

    def awaitTermination(self, timeout: float | None = None) -> bool | None:  # noqa: N802
        """Wait for the current run's end (raises its error, as ``StreamingQuery`` does)."""
        return self._query.awaitTermination(cast(Any, timeout))

    def exception(self) -> StreamingQueryException | None:
        """Why the current run failed, if it did."""
        return self._query.exception()

    def stop(self) -> None:
        """Stop now."""
        self._query.stop()
