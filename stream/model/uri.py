"""What the scorer's ``--model-uri`` names: a path, a fixed registry version, or an alias to follow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stream.errors import ModelError

NAME = "heart-risk"


@dataclass(frozen=True)
class ModelUri:
    """What ``--model-uri`` names: a path, a registry version, or an alias to follow."""

    path: Path | None = None
    name: str = NAME
    number: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, uri: str, default_path: Path) -> ModelUri:
        """``models:/NAME@ALIAS``, ``models:/NAME/N``, a path, or empty (``default_path``).

        Raises:
            ModelError: a ``models:/`` URI of another shape.
        """
        if not uri:
            return cls(path=default_path)
        if not uri.startswith("models:/"):
            return cls(path=Path(uri))
        rest = uri.removeprefix("models:/")
        if "@" in rest and rest.split("@", 1)[0] and rest.split("@", 1)[1]:
            name, alias = rest.split("@", 1)
            return cls(name=name, alias=alias)
        name, _, number = rest.partition("/")
        if name and number.isdigit():
            return cls(name=name, number=int(number))
        msg = f"model URI {uri!r}: expected models:/NAME@ALIAS (e.g. models:/heart-risk@champion) or models:/NAME/N"
        raise ModelError(msg)
