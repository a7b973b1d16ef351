"""Local folders behind a small storage interface; hostile names never escape the destination."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from facerecon.errors import StorageError
from facerecon.io.atomic import atomic_write_bytes


@dataclass(frozen=True)
class Entry:
    key: str
    size: int
    version: str


def safe_relative_key(name: str) -> str:
    """A safe relative name for any input name: no '..', no absolute paths, no control characters."""
    raw = name
    name = unicodedata.normalize("NFKC", name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".", "..")]
    clean = "_".join(re.sub(r"[^\w.\-]+", "_", p).strip("._") for p in parts) or "photo"
    clean = clean[:120]
    if clean != raw:  # changed by sanitising: a short hash keeps two different raw names apart
        clean = f"{clean}-{hashlib.sha256(raw.encode('utf-8', 'surrogateescape')).hexdigest()[:6]}"
    return clean


class LocalStorage:
    def __init__(self, root: Path, create: bool = False) -> None:
        self.root = Path(root)
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"{self.root}: cannot create ({exc.strerror or exc})") from None
        elif not self.root.is_dir():
            raise StorageError(f"{self.root}: folder does not exist")

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if not p.is_relative_to(self.root.resolve()):
            raise StorageError(f"{key}: outside {self.root}")
        return p

    def list(self, prefix: str = "", suffixes: tuple[str, ...] | None = None) -> Iterator[Entry]:
        base = self.root
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                key = p.relative_to(base).as_posix()
                if not key.startswith(prefix) or (suffixes and not key.lower().endswith(suffixes)):
                    continue
                try:
                    st = p.stat()
                except OSError:
                    continue
                yield Entry(key, st.st_size, f"{st.st_mtime_ns}")

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"{self.root / key}: cannot read ({exc.strerror or exc})") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        try:
            atomic_write_bytes(self._path(key), data)
        except OSError as exc:
            raise StorageError(f"{self.root / key}: cannot write ({exc.strerror or exc})") from None

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def put_tree(self, local_dir: Path, prefix: str) -> None:
        """Publish a folder as ``prefix`` in one rename: readers see the old one or the new one."""
        target = self._path(prefix)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            for f in sorted(Path(local_dir).iterdir()):
                if f.is_file() and not f.name.startswith("_"):
                    shutil.copy2(f, tmp / f.name)
            old = None
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                target.rename(old)
            tmp.rename(target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            raise StorageError(f"{target}: cannot publish ({exc.strerror or exc})") from None

    def url_for(self, key: str) -> str:
        return str(self.root / key)


def open_storage(url: str, *, endpoint_url: str | None = None, create: bool = False) -> LocalStorage:
    if url.startswith("s3://"):
        raise StorageError(f"{url}: S3 storage is not available in this build")
    return LocalStorage(Path(url), create=create)
