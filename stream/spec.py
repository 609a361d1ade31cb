"""How a setting is declared: ``setting()`` (one dataclass field), its ``Spec``, the value parsers, the CLI groups.

``stream.config`` declares every setting with ``setting()``; the environment
variable, flag, ``--help`` text and CLI group of each derive from that one
declaration. Nothing here reads the environment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.errors import ConfigError

# any option key holding one of these names a secret: SASL (jaas, password, OAuth bearer config and client
# secret), TLS private keys and their passwords (ssl.key.pem, ssl.keystore.key, ssl.key.password, ...)
SECRET_HINTS = ("password", "secret", "jaas", "token", "credential", "oauthbearer.config", "ssl.key.pem",
                "ssl.keystore.key", "private", "user.info", "userinfo", "keytab")
REDACTED = "***"


def redact_url(url: str) -> str:
    """``http://user:pass@host/x`` -> ``http://***@host/x``."""
    return re.sub(r"(://)[^/@]+@", r"\1" + REDACTED + "@", url)


def redact_values(text: str, options: Mapping[str, str]) -> str:
    """``text`` with the value of every secret option (``is_secret`` of its key) replaced by ``***``."""
    for key, value in options.items():
        if value and is_secret(key):
            text = text.replace(value, REDACTED)
    return text


def clear_text_off_host(url: str) -> bool:
    """True for an ``http://`` URL (or a bare host:port) to anything but this machine.

    Credentials sent there would cross a network unencrypted.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"http://{url}")
    return parts.scheme == "http" and (parts.hostname or "") not in ("localhost", "127.0.0.1", "::1")


def is_secret(key: str) -> bool:
    """Whether an option key names a secret that must never be printed."""
    k = key.lower()
    return any(h in k for h in SECRET_HINTS)


def parse_kv(text: str) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` (or newline-separated) into a dict."""
    out: dict[str, str] = {}
    for part in re.split(r"[,\n]", text):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            msg = f"expected key=value, got {part!r}"
            raise ConfigError(msg)
        k, v = part.split("=", 1)
        if not k.strip():
            msg = f"expected key=value, got an empty key in {part!r}"
            raise ConfigError(msg)
        out[k.strip()] = v.strip()
    return out


def positive_int(text: str) -> int:
    """A whole number above 0."""
    value = int(text)
    if value <= 0:
        msg = f"must be a positive integer, got {text!r}"
        raise ValueError(msg)
    return value


def positive_float(text: str) -> float:
    """A number above 0."""
    value = float(text)
    if not value > 0:
        msg = f"must be a positive number, got {text!r}"
        raise ValueError(msg)
    return value


_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"\s*([0-9]{1,7})\s*([smhd])\s*")


def time_window_ms(text: str) -> tuple[int, int] | None:
    """``PAST:FUTURE`` (e.g. ``3650d:1d``; units s, m, h, d) as milliseconds, or None for ``off``.

    Raises:
        ValueError: not ``off`` nor two durations.
    """
    if text.strip().lower() == "off":
        return None
    parts = text.split(":")
    matches = [_DURATION.fullmatch(p) for p in parts]
    if len(parts) != 2 or not all(matches):
        msg = f"must be PAST:FUTURE durations such as 3650d:1d (units s, m, h, d), or off; got {text!r}"
        raise ValueError(msg)
    past, future = (int(m.group(1)) * _UNIT_MS[m.group(2)] for m in matches if m)
    return past, future


def time_window(text: str) -> str:
    """A ``PAST:FUTURE`` window (see ``time_window_ms``), checked and kept as text."""
    time_window_ms(text)
    return text.strip().lower()


def port(text: str) -> int:
    """A TCP port, 1-65535."""
    value = int(text)
    if not 1 <= value <= 65535:
        msg = f"must be a TCP port (1-65535), got {text!r}"
        raise ValueError(msg)
    return value


def choice(*allowed: str, upper: bool = False) -> Callable[[str], str]:
    """A parser that accepts one of ``allowed`` (case-insensitive)."""
    def parse(text: str) -> str:
        value = text.strip().upper() if upper else text.strip().lower()
        if value not in allowed:
            msg = f"must be one of {' | '.join(allowed)}, got {text!r}"
            raise ValueError(msg)
        return value

    return parse


GROUPS: dict[str, str] = {
    "kafka": "Kafka (any broker)",
    "topics": "topics",
    "formats": "formats and the schema registry",
    "local_registry": "the local schema registry",
    "local_broker": "the local KRaft broker",
    "local_cluster": "the local Spark standalone cluster",
    "model": "the model and its data",
    "scorer": "the scorer",
    "spark": "Spark",
    "exporter": "the sidecar exporter",
    "feedback": "outcome feedback (heartrisk feedback)",
    "serve": "the HTTP service (heartrisk serve)",
    "auth": "the HTTP service's bearer tokens (JWT)",
    "general": "general",
}


@dataclass(frozen=True)
class Spec:
    """How one setting is named, parsed and documented (read off its ``Settings`` field)."""

    name: str
    default: Any
    help: str
    group: str
    parse: Callable[[str], Any] = str
    secret: bool = False
    metavar: str | None = None

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return "HEARTRISK_" + self.name.upper()

    @property
    def flag(self) -> str:
        """The command-line flag that sets it."""
        return "--" + self.name.replace("_", "-")

    def from_env(self, env: Mapping[str, str]) -> Any:
        """Its value parsed from ``env`` (``HEARTRISK_<NAME>``, or a secret's ``..._FILE``); None when unset.

        Raises:
            ConfigError: the variable does not parse, or its file cannot be read; the message names it
                (and never echoes a secret's value).
        """
        raw = env.get(self.env)
        source = self.env
        if (raw is None or raw == "") and self.secret and env.get(self.env + "_FILE"):
            source = self.env + "_FILE"
            try:
                raw = Path(env[source]).read_text().strip()
            except OSError as exc:
                msg = f"{source}: cannot read {env[source]!r}: {exc.strerror}"
                raise ConfigError(msg) from exc
        if raw is None or raw == "":
            return None
        try:
            return self.parse(raw)
        except (ValueError, ConfigError) as exc:
            if self.secret:
                msg = f"{source} is invalid (its value is secret and not shown): expected {self.metavar}"
            else:
                msg = f"{source}={raw!r} is invalid: {exc}"
            raise ConfigError(msg) from (None if self.secret else exc)  # a secret's cause would quote it


def setting(
    default: Any,
    help: str,  # noqa: A002 - the field's help text, as argparse calls it
    group: str,
    parse: Callable[[str], Any] = str,
    secret: bool = False,
    metavar: str | None = None,
) -> Any:
    """Declare one setting: its default, help, CLI group and parser, in one place (a dataclass field)."""
    meta = {"help": help, "group": group, "parse": parse, "secret": secret, "metavar": metavar}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)
