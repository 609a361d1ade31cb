"""The HTTP routes (FastAPI on uvicorn): /v1/predict, /v1/predict/batch, /v1/model, /healthz, /readyz, /metrics.

Bodies are read as bytes and checked by ``Predictor`` exactly as the stream
checks a message; responses are JSON written here, so no framework validation
sits between the bytes and the verdict. Every refusal has the same shape
(``error_code``, ``error_detail``, ``field``) and never carries a stack trace
or patient data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from stream import __version__
from stream.config import Settings
from stream.serve.auth import AuthError, TokenVerifier
from stream.serve.limits import RateLimiter, retry_after_header
from stream.serve.metrics import ServeMetrics
from stream.serve.predict import Predictor, error_body

logger = logging.getLogger(__name__)
JSON = "application/json"
DRAIN_FACTOR = 4
Handler = Callable[[Request], Awaitable[Response]]


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, allow_nan=False).encode(), status, headers, JSON)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` bytes.

    An oversized body is still read (and dropped) up to ``DRAIN_FACTOR`` times the
    limit, so the client gets its 413 rather than a reset connection.
    """
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit * DRAIN_FACTOR:
            break
        if size <= limit:
            chunks.append(chunk)
    return None if size > limit else b"".join(chunks)


def build_app(settings: Settings) -> FastAPI:
    """The service from its settings: the model loaded, the token keys read (``serve_auth=off``: none)."""
    from stream.contract.check import parse_ranges
    from stream.spec import time_window_ms

    verifier = None if settings.serve_auth == "off" else TokenVerifier(settings)
    predictor = Predictor(settings.path(settings.model_dir), parse_ranges(settings.field_ranges),
                          time_window_ms(settings.event_time_window))
    return create_app(settings, predictor, verifier)


def app_from_settings() -> FastAPI:
    """The app of each worker process (``serve_workers`` > 1; uvicorn's factory): settings from the environment."""
    from stream.config import load_settings

    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return build_app(settings)


def create_app(settings: Settings, predictor: Predictor, verifier: TokenVerifier | None) -> FastAPI:
    """The service; ``verifier`` None means no authentication (``--dev`` only)."""
    metrics = ServeMetrics()
    metrics.serving(predictor.version)
    limiter = RateLimiter(settings.serve_rate, settings.serve_burst)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_reload_loop())
        logger.info('event="serving" model_version="%s" auth="%s"', predictor.version,
                    "jwt" if verifier else "off (--dev)")
        try:
            yield
        finally:
            task.cancel()

    async def _reload_loop() -> None:
        while True:
            await asyncio.sleep(settings.serve_reload_interval)
            failures = predictor.reload_failures
            if await asyncio.to_thread(predictor.reload):
                metrics.serving(predictor.version)
            if predictor.reload_failures > failures:
                metrics.reload_failures.inc()

    app = FastAPI(title="heartrisk", version=__version__, lifespan=lifespan,
                  description="Heart-disease risk for one patient event: the stream's answer over HTTP.")
    app.state.predictor = predictor

    def guarded(route: str, handler: Handler) -> Handler:
        """Authentication, rate limit, latency and status counting around a scoring route."""
        async def run(request: Request) -> Response:
            start = time.perf_counter()
            try:
                client = request.client.host if request.client else "?"
                if verifier is not None:
                    client = verifier.verify(request.headers.get("authorization")).subject
                wait = limiter.allow(client)
                if wait > 0:
                    response = _json(429, error_body("RATE_LIMITED", f"over {settings.serve_rate:g} requests/s; "
                                                     "retry after the Retry-After seconds"),
                                     {"Retry-After": retry_after_header(wait)})
                    metrics.errors.labels(error_code="RATE_LIMITED").inc()
                else:
                    response = await handler(request)
            except AuthError as exc:
                challenge = 'Bearer error="invalid_token"' if exc.status == 401 else 'Bearer error="insufficient_scope"'
                response = _json(exc.status, error_body(exc.code, exc.detail), {"WWW-Authenticate": challenge})
                metrics.errors.labels(error_code=exc.code).inc()
            metrics.latency.labels(route=route).observe(time.perf_counter() - start)
            metrics.requests.labels(route=route, status=str(response.status_code)).inc()
            return response
        return run

    async def predict(request: Request) -> Response:
        body = await _read_body(request, settings.serve_max_body)
        if body is None:
            metrics.errors.labels(error_code="MESSAGE_TOO_LARGE").inc()
            return _json(413, error_body("MESSAGE_TOO_LARGE", f"the body is over {settings.serve_max_body} bytes"))
        out = predictor.predict(body)
        if out.status == 200:
            metrics.predictions.labels(risk_level=out.body["risk_level"]).inc()
        else:
            metrics.errors.labels(error_code=out.code).inc()
        return _json(out.status, out.body)

    async def predict_batch(request: Request) -> Response:
        body = await _read_body(request, settings.serve_max_body)
        if body is None:
            metrics.errors.labels(error_code="REQUEST_TOO_LARGE").inc()
            return _json(413, error_body("REQUEST_TOO_LARGE", f"the body is over {settings.serve_max_body} bytes"))
        status, out = predictor.predict_batch(body, settings.serve_batch_max)
        if status != 200:
            metrics.errors.labels(error_code=out["error_code"]).inc()
        for item in out.get("results", []):
            if item["status"] == 200:
                metrics.predictions.labels(risk_level=item["risk_level"]).inc()
            else:
                metrics.errors.labels(error_code=item["error_code"]).inc()
        return _json(status, out)

    async def model(request: Request) -> Response:
        meta = predictor.meta
        return _json(200, {
            "name": meta["name"], "version": predictor.version, "created_at": meta["created_at"],
            "metrics": {k: v for k, v in meta["metrics"].items() if not isinstance(v, list | dict)},
            "risk_thresholds": {k: meta["risk_thresholds"][k] for k in ("medium", "high")},
            "decision_threshold": 0.5,
            "card": f"models/{predictor.model_dir.name}/{predictor.version}/model.json",
        })

    app.add_api_route("/v1/predict", guarded("/v1/predict", predict), methods=["POST"])
    app.add_api_route("/v1/predict/batch", guarded("/v1/predict/batch", predict_batch), methods=["POST"])
    app.add_api_route("/v1/model", guarded("/v1/model", model), methods=["GET"])

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        return _json(200, {"status": "ready", "model_version": predictor.version})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), 200, media_type="text/plain; version=0.0.4")

    return app
