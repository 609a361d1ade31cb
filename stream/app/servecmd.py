"""``heartrisk serve``: the HTTP service on uvicorn, until SIGINT/SIGTERM (requests in flight finish first)."""

from __future__ import annotations

import argparse
import logging

from stream.config import Settings
from stream.contract.check import parse_ranges
from stream.errors import ConfigError

logger = logging.getLogger(__name__)
GRACE_S = 10


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    """Load the model, check the auth settings, serve until a signal."""
    import uvicorn

    from stream.serve.app import create_app
    from stream.serve.auth import TokenVerifier
    from stream.serve.predict import Predictor

    if bool(settings.serve_tls_cert) != bool(settings.serve_tls_key):
        msg = "HTTPS needs both --serve-tls-cert and --serve-tls-key (or neither, behind a TLS proxy)"
        raise ConfigError(msg)
    verifier = None if args.dev else TokenVerifier(settings)
    if args.dev and settings.serve_host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning('event="no authentication on a non-loopback address" host="%s": --dev is for a laptop',
                       settings.serve_host)
    predictor = Predictor(settings.path(settings.model_dir), parse_ranges(settings.field_ranges))
    app = create_app(settings, predictor, verifier)
    scheme = "https" if settings.serve_tls_cert else "http"
    print(f"heartrisk serve: model {predictor.version} at {scheme}://{settings.serve_host}:{settings.serve_port}"
          f"/v1/predict ({'no auth: --dev' if verifier is None else 'bearer JWT, scope ' + settings.jwt_scope})",
          flush=True)
    uvicorn.run(
        app,
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
