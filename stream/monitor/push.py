"""How the exporter reaches the Pushgateway: plain http, or https with a CA file, with basic auth or without.

prometheus-client's own handlers cannot take a CA file; this one builds the
request with urllib and an SSL context. Credentials never appear in a log line,
and sending them over plain http to another host is warned about.
"""

from __future__ import annotations

import base64
import logging
import ssl
import urllib.request
from collections.abc import Callable

from stream.spec import clear_text_off_host, redact_url

logger = logging.getLogger(__name__)

Handler = Callable[[str, str, float | None, list[tuple[str, str]], bytes], Callable[[], None]]


def push_handler(user_info: str = "", ca_file: str = "") -> Handler:
    """A prometheus-client push handler: basic auth from ``user:password``, TLS verified against ``ca_file``."""
    context = ssl.create_default_context(cafile=ca_file or None)
    auth = "Basic " + base64.b64encode(user_info.encode()).decode() if user_info else None

    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                data: bytes) -> Callable[[], None]:
        def send() -> None:
            request = urllib.request.Request(url, data=data, method=method)
            for k, v in headers:
                request.add_header(k, v)
            if auth:
                request.add_header("Authorization", auth)
            with urllib.request.urlopen(request, timeout=timeout,  # noqa: S310 - the operator's configured URL
                                        context=context if url.startswith("https://") else None) as response:
                if response.status >= 400:
                    msg = f"the Pushgateway answered {response.status}"
                    raise OSError(msg)

        return send

    return handler


def warn_if_clear_text(address: str, user_info: str) -> None:
    """Warn when basic-auth credentials would cross a network unencrypted."""
    if user_info and clear_text_off_host(address):
        logger.warning('event="pushgateway credentials over plain http" address="%s" detail="the password travels '
                       'unencrypted: use an https:// HEARTRISK_PUSHGATEWAY"', redact_url(address))
