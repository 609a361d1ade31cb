"""``heartrisk serve``: the HTTP service on uvicorn, until SIGINT/SIGTERM (requests in flight finish first)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any

from stream.config import Settings
from stream.errors import ConfigError

logger = logging.getLogger(__name__)
GRACE_S = 10


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    """Load the model, check the auth settings, serve until a signal."""
    import os

    import uvicorn

    from stream.serve.app import build_app

    if args.dev:
        settings = dataclasses.replace(settings, serve_auth="off")
    if bool(settings.serve_tls_cert) != bool(settings.serve_tls_key):
        msg = "HTTPS needs both --serve-tls-cert and --serve-tls-key (or neither, behind a TLS proxy)"
        raise ConfigError(msg)
    if settings.serve_auth == "off" and settings.serve_host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning('event="no authentication on a non-loopback address" host="%s": --dev is for a laptop',
                       settings.serve_host)
    app = build_app(settings)  # loads the model and the keys now: a bad setting fails here, in one line
    scheme = "https" if settings.serve_tls_cert else "http"
    auth = "no auth: --dev" if settings.serve_auth == "off" else "bearer JWT, scope " + settings.jwt_scope
    print(f"heartrisk serve: model {app.state.predictor.version} at {scheme}://{settings.serve_host}:"
          f"{settings.serve_port}/v1/predict ({auth}; {settings.serve_workers} process(es))", flush=True)
    target: Any = app
    if settings.serve_workers > 1:  # each worker process builds its own app from the same settings
        os.environ.update(settings.to_env())
        target = "stream.serve.app:app_from_settings"
    uvicorn.run(
        target,
        factory=settings.serve_workers > 1,
        workers=settings.serve_workers,
        host=settings.serve_host,
        port=settings.serve_port,
        loop="uvloop",
        http="httptools",
        access_log=settings.serve_access_log == "on",
        log_config=None,
        ssl_certfile=settings.serve_tls_cert or None,
        ssl_keyfile=settings.serve_tls_key or None,
        timeout_graceful_shutdown=GRACE_S,
        server_header=False,
    )
    return 0
