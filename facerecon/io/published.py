"""What a published face is, for every storage: safe keys, its files, the completeness marker.

Shared by the local folders (``facerecon.io.storage``) and S3 (``facerecon.io.s3``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from facerecon.errors import DestinationError, StorageError

COMPLETE = "_complete.json"  # written last into a published face: present = the face is complete


@dataclass(frozen=True)
class Entry:
    key: str
    size: int
    version: str


def _name_bytes(name: str) -> bytes:
    """The bytes a name stands for: file names that are not UTF-8 arrive as surrogate escapes."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return name.encode("utf-8", "surrogatepass")


def display_key(name: str) -> str:
    """A name fit for logs, tables and parquet: valid UTF-8, control characters shown as escapes."""
    text = _name_bytes(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


MAX_KEY_BYTES = 100  # + hash and "_faceN" suffix stays far below the 255-byte limit of file names


def safe_relative_key(name: str) -> str:
    """A safe relative name for any input name: no '..', no absolute paths, no control characters."""
    raw = name
    name = unicodedata.normalize("NFKC", _name_bytes(name).decode("utf-8", "replace"))
    parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".", "..")]
    clean = "_".join(re.sub(r"[^\w.\-]+", "_", p).strip("._") for p in parts).strip("._") or "photo"
    clean = clean.encode("utf-8")[:MAX_KEY_BYTES].decode("utf-8", "ignore")
    if clean != raw:  # changed by sanitising: a short hash keeps two different raw names apart
        clean = f"{clean}-{hashlib.sha256(_name_bytes(raw)).hexdigest()[:6]}"
    return clean


# errno values that mean "this destination takes no more writes", not "this one file is bad"
FATAL_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})


def write_error(where: Path | str, exc: OSError, what: str = "cannot write") -> StorageError:
    """The user-facing error for a failed write: DestinationError when retrying cannot help."""
    cls = DestinationError if exc.errno in FATAL_WRITE_ERRNOS else StorageError
    return cls(f"{where}: {what} ({exc.strerror or exc})")


def publishable_files(local_dir: Path) -> list[Path]:
    """The files of a finished stage folder that make up a published face (no _done.json, temps)."""
    return [f for f in sorted(Path(local_dir).iterdir()) if f.is_file() and not f.name.startswith(("_", "."))]


def marker_for(files: list[Path], meta: dict | None = None) -> dict:
    """``_complete.json``: every file of the face with size and sha256, plus the publisher's meta."""
    listing = {f.name: {"size": f.stat().st_size, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
               for f in files}
    return {"complete": True, "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": listing, "meta": dict(meta or {})}


def parse_marker(raw: bytes | None) -> dict | None:
    try:
        marker = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return marker if isinstance(marker, dict) and marker.get("complete") is True else None
