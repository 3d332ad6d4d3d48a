"""Files that are replaced whole, written so that a crash never leaves half of one.

`write_atomically(path, data)` writes `data` to a temporary file in `path`'s folder,
flushes it to disk and renames it over `path` (`os.replace`, atomic on POSIX): a reader,
or a command run again after an interruption, finds the old file or the new one, never a
truncated mix. `atomic_file(path)` does the same for writers that want a file object
(`torch.save`, `np.savez`, `csv.writer`). A failure while writing removes the temporary
file and leaves `path` as it was.

`read_text_file(path, what)` and `read_json_file(path, what, recovery)` read a file the
command line was given or wrote earlier, and name the file, what it is and the way to
recover in the error when its bytes are not UTF-8 or not JSON.

This module imports nothing of the project, so every layer may use it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """A new file object whose content replaces `path` when the block ends without error;
    `mode` is "wb" or "w" (UTF-8 text)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(descriptor, mode, **text) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, _DEFAULT_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(path: str | Path, data: bytes | str) -> None:
    """Replace `path` with `data` (text is written as UTF-8), atomically."""
    with atomic_file(path, "wb") as file:
        file.write(data.encode("utf-8") if isinstance(data, str) else data)


def read_text_file(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of `path`; bytes that are not UTF-8 raise a `ValueError` naming the
    file and the first bad byte's offset (`what` says what the file is, for the message)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: the {what} is not UTF-8 text (byte {error.start} is "
            f"{data[error.start : error.start + 1]!r}); save it as UTF-8"
        ) from None


def read_json_file(path: str | Path, what: str, recovery: str) -> object:
    """The JSON value in `path`; a file that is not UTF-8 or not JSON (garbage, cut short)
    raises a `ValueError` naming the file, the place, what the file is and `recovery`,
    the way back (e.g. "delete it to start over")."""
    text = read_text_file(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        problem = (
            "it is empty"
            if not text.strip()
            else f"{error.msg.removesuffix(' at')} at line {error.lineno} column {error.colno}"
        )
        raise ValueError(
            f"{path}: the {what} is not valid JSON ({problem}), perhaps cut short by an "
            f"interruption; {recovery}"
        ) from None


def _default_mode() -> int:
    """The mode a plain `open(path, "w")` gives: 0666 less the umask (`mkstemp` makes
    0600). Read once, at import, as reading the umask briefly changes it."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_DEFAULT_MODE = _default_mode()
