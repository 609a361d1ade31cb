"""Dead letters whose payload is sealed (``--dead-letter-payload encrypted``): the keys file, and opening one.

The keys file (``HEARTRISK_DEAD_LETTER_KEY_FILE``) holds one ``KEY_ID=KEY`` a line, each KEY a
Fernet key (``python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'``).
The first line's key seals new dead letters (in the JVM: ``FernetSeal`` in jvm/functions); every
line's key opens them, chosen by the letter's ``key_id``, so a key can be rotated: put the new one
first and keep the old ones below until their letters have expired. Lines starting with ``#`` are
comments. No message here ever quotes a key.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stream.errors import ConfigError

ENCRYPTED = "encrypted"
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def read_keys(path: Path) -> dict[str, str]:
    """The keys file as {key id: Fernet key}, in file order (the first one seals).

    Raises:
        ConfigError: unreadable, empty, or a line that is not ``KEY_ID=<Fernet key>`` (by line number only).
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        msg = f"the dead-letter keys file {path} cannot be read ({exc.strerror}): see README, Dead letters"
        raise ConfigError(msg) from exc
    keys: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key_id, _, key = (part.strip() for part in text.partition("="))
        if not _KEY_ID.fullmatch(key_id) or not _is_fernet_key(key) or key_id in keys:
            msg = (f"{path}, line {number}: expected KEY_ID=<Fernet key> with a new id of letters, digits, '.', "
                   "'_' or '-' (the key is not shown)")
            raise ConfigError(msg)
        keys[key_id] = key
    if not keys:
        msg = f"the dead-letter keys file {path} holds no key: add a line KEY_ID=<Fernet key>"
        raise ConfigError(msg)
    return keys


def _is_fernet_key(text: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(text.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def sealing_key_id(path: Path) -> str:
    """The id of the key that seals new dead letters (the file's first)."""
    return next(iter(read_keys(path)))


def original_bytes(letter: Mapping[str, Any], keys: Mapping[str, str] | None) -> tuple[bytes | None, bytes | None]:
    """A dead letter's original (key, value): from base64, or opened with ``keys`` when sealed.

    Raises:
        ConfigError: the letter is sealed and no key (or not its key) is given, or it does not open.
    """
    if letter.get("payload") != ENCRYPTED:
        k, v = letter.get("key_base64"), letter.get("value_base64")
        return (base64.b64decode(k) if k is not None else None, base64.b64decode(v) if v is not None else None)
    from cryptography.fernet import Fernet, InvalidToken

    key_id = str(letter.get("key_id"))
    if not keys or key_id not in keys:
        msg = f"dead letter sealed with key {key_id!r}: give the keys file that holds it (--dead-letter-key-file)"
        raise ConfigError(msg)
    fernet = Fernet(keys[key_id].encode())
    try:
        return tuple(  # type: ignore[return-value]
            fernet.decrypt(letter[f]) if letter.get(f) is not None else None for f in ("key_fernet", "value_fernet")
        )
    except InvalidToken as exc:
        msg = f"dead letter {letter.get('event_id')!r} does not open with key {key_id!r}: a wrong or altered key"
        raise ConfigError(msg) from exc
