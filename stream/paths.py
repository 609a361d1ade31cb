"""Where the project's files are: the source tree in a checkout, the bundled copy in an installed wheel.

A checkout (``make setup`` installs it editable) reads and writes under the
repository, as it always did. A wheel carries the read-only resources it needs
(``schemas/``, ``models/``, ``jvm/``, ``data/``) inside the package, in
``stream/_bundled/`` (links to the top-level folders, copied by the build). Run
from a wheel, a relative path means the working directory when it exists there
(a user's own model folder, the checkpoints the scorer writes), else the bundled
copy when that has it, else the working directory (a folder about to be made).
"""

from __future__ import annotations

from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent
BUNDLED = Path(__file__).resolve().parent / "_bundled"
IN_SOURCE_TREE = (SOURCE_ROOT / "pyproject.toml").is_file() and (SOURCE_ROOT / "schemas").is_dir()
# the resources' root: the repository, or the bundled copy
PROJECT_ROOT = SOURCE_ROOT if IN_SOURCE_TREE else BUNDLED


def resolve(value: str | Path) -> Path:
    """A path setting as a path: absolute as given; relative to the repository, or as the module says for a wheel."""
    p = Path(value)
    if p.is_absolute():
        return p
    if IN_SOURCE_TREE:
        return SOURCE_ROOT / p
    here = Path.cwd() / p
    return BUNDLED / p if not here.exists() and (BUNDLED / p).exists() else here
