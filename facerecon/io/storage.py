"""Local folders and S3 prefixes behind one small storage interface (``open_storage`` picks one).

Hostile names never escape the destination. A published face is complete exactly when its
``_complete.json`` marker exists: it is written last (locally the whole folder appears in one
rename; on S3 the files are staged under ``_staging/`` and copied into place first), so a reader
that checks the marker never sees half a face.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from facerecon.errors import InputImageError, StorageError
from facerecon.io.atomic import atomic_write_bytes, make_temp_dir, pid_alive
from facerecon.io.published import (  # noqa: F401 - the storage interface's names, re-exported
    COMPLETE,
    FATAL_WRITE_ERRNOS,
    MAX_KEY_BYTES,
    Entry,
    display_key,
    marker_for,
    parse_marker,
    publishable_files,
    safe_relative_key,
    write_error,
)


class LocalStorage:
    def __init__(self, root: Path, create: bool = False) -> None:
        self.root = Path(root)
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise write_error(self.root, exc, "cannot create") from None
        elif not self.root.is_dir():
            raise StorageError(f"{self.root}: folder does not exist")

    def _path(self, key: str) -> Path:
        if "\x00" in key:
            raise StorageError(f"{display_key(key)}: NUL byte in name")
        p = (self.root / key).resolve()
        if not p.is_relative_to(self.root.resolve()):
            raise StorageError(f"{display_key(key)}: outside {self.root}")
        return p

    def list(self, prefix: str = "", suffixes: tuple[str, ...] | None = None, *,
             skipped: dict[str, str] | None = None) -> Iterator[Entry]:
        """Entries one at a time (a generator over os.walk): a huge folder is never held in memory.

        ``skipped`` (key -> reason) receives what is not listed although a user may have meant it:
        hidden folders, links to folders, folders named like photos, files that cannot be stat'ed.
        """
        from facerecon.io.images import is_image_name

        base = self.root
        note = skipped.__setitem__ if skipped is not None else (lambda k, r: None)
        for dirpath, dirnames, filenames in os.walk(base):
            keep = []
            for d in sorted(dirnames):
                key = (Path(dirpath) / d).relative_to(base).as_posix()
                if not key.startswith(prefix):
                    continue
                if d.startswith("."):  # our temp folders, .git...
                    note(key, "hidden folder")
                elif os.path.islink(os.path.join(dirpath, d)):
                    note(key, "a link to a folder, not followed")
                else:
                    if is_image_name(d):
                        note(key, "a folder")
                    keep.append(d)
            dirnames[:] = keep
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                key = p.relative_to(base).as_posix()
                if not key.startswith(prefix) or (suffixes and not key.lower().endswith(suffixes)):
                    continue
                try:
                    st = p.stat()
                except OSError as exc:
                    note(key, f"unreadable: {exc.strerror or exc.__class__.__name__}")
                    continue
                yield Entry(key, st.st_size, f"{st.st_mtime_ns}")

    def read_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        """The file's bytes; with ``max_bytes`` a larger file is an InputImageError, never read."""
        path = self.root / key
        try:
            with open(self._path(key), "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if max_bytes is not None and size > max_bytes:
                    raise InputImageError(f"{display_key(key)}: {size} bytes is larger than the limit "
                                          f"(input.max_bytes={max_bytes})")
                return fh.read()
        except OSError as exc:
            raise StorageError(f"{display_key(str(path))}: cannot read ({exc.strerror or exc})") from None

    def write_bytes(self, key: str, data: bytes, *, fsync: bool = False) -> None:
        try:
            atomic_write_bytes(self._path(key), data, fsync=fsync)
        except OSError as exc:
            raise write_error(self.root / key, exc) from None

    def check_writable(self) -> None:
        """Fail before any work when DST cannot take a file (read-only, permission, disk full)."""
        probe = f".facerecon-write-test-{os.getpid()}"
        self.write_bytes(probe, b"ok")
        with contextlib.suppress(OSError):
            self._path(probe).unlink()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def read_optional(self, key: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"{display_key(str(self.root / key))}: cannot read ({exc.strerror or exc})") from None

    def complete_marker(self, prefix: str) -> dict | None:
        """The published face's ``_complete.json``, or None when it is not (completely) there."""
        return parse_marker(self.read_optional(f"{prefix}/{COMPLETE}"))

    def put_tree(self, local_dir: Path, prefix: str, meta: dict | None = None) -> None:
        """Publish a folder as ``prefix`` in one rename: readers see the old one or the new one.

        The copy is built in a hidden temp sibling (removed again if anything fails, e.g. disk
        full) and swapped in by rename, so ``prefix`` is always complete or absent.
        """
        target = self._path(prefix)
        tmp = old = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temps(target)
            tmp = make_temp_dir(target.parent, f".{target.name}.tmp-{os.getpid()}-")
            files = publishable_files(Path(local_dir))
            for f in files:
                shutil.copy2(f, tmp / f.name)
            (tmp / COMPLETE).write_text(json.dumps(marker_for(files, meta), indent=1))
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                if old.exists():
                    shutil.rmtree(old)
                target.rename(old)
            tmp.rename(target)
            tmp = None
        except OSError as exc:
            if old is not None and not target.exists():
                with contextlib.suppress(OSError):
                    old.rename(target)  # put the previous result back
                    old = None
            raise write_error(target, exc, "cannot publish") from None
        finally:
            for leftover in (tmp, old):
                if leftover is not None:
                    shutil.rmtree(leftover, ignore_errors=True)

    def url_for(self, key: str) -> str:
        return str(self.root / key)


def _remove_stale_temps(target: Path) -> None:
    """Temp siblings of ``target`` left by a killed run (their process is gone) are deleted."""
    for p in target.parent.glob(f".{glob.escape(target.name)}.*"):
        m = re.fullmatch(rf"\.{re.escape(target.name)}\.(?:tmp|old)-(\d+)(?:-.*)?", p.name)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def open_storage(url: str, *, endpoint_url: str | None = None, create: bool = False):
    """The single entry point: ``s3://bucket/prefix`` → S3Storage (facerecon.io.s3), else a folder.

    An S3 bucket is never created implicitly (``create`` applies to local folders only).
    """
    if url.startswith("s3://"):
        from facerecon.io.s3 import S3Storage

        return S3Storage(url, endpoint_url=endpoint_url)
    if "://" in url:
        raise StorageError(f"{url}: unsupported storage scheme (use a local path or s3://bucket/prefix)")
    return LocalStorage(Path(url), create=create)
