"""Files a reader sees whole or not at all: written beside their place, then renamed onto it.

Training writes caches and checkpoints that a later run trusts without checking: a run
killed mid-write (a session's end, a full disk) must leave the previous file or none,
never half of one, and no temporary file to fill the disk further.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A fresh temporary path beside `path`, with the same suffixes (Keras picks its format
    by them), renamed onto `path` when the block ends and removed if it raises. Each call
    gets its own name, so two writers of one file (runs sharing a cache) never mix."""
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp" + suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
