"""Write-to-temp-then-rename, so a reader never sees half a file (DESIGN.md §2 house rule)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    Writers that insist on a file name (PIL, imageio, torch.save) write to the yielded path.
    The temp name keeps the suffix so format detection by extension still works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:40]}.{os.getpid()}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should be readable like any file
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if fsync:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        if fsync:  # the rename itself survives a power cut only once the folder is synced
            _fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the file itself is synced
    finally:
        os.close(fd)


def make_temp_dir(folder: Path, prefix: str) -> Path:
    """``mkdtemp`` with the umask's permissions (not 0700), since the folder is renamed into a result."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
    os.chmod(tmp, 0o777 & ~_UMASK)
    return tmp


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (temp names carry their writer's pid)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def remove_dead_temps(folder: Path, prefix: str) -> list[Path]:
    """Delete ``folder/<prefix><pid>.*`` entries whose writer process is gone (a killed run's leftovers)."""
    import re
    import shutil

    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if not p.name.startswith(prefix):
            continue
        m = re.match(r"(\d+)\.", p.name[len(prefix):])
        if m and not pid_alive(int(m.group(1))):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = False) -> Path:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_save(path: str | Path, writer: Callable[[Path], object], *, fsync: bool = False) -> Path:
    """``writer(tmp_path)`` writes the file; it is renamed into place only if the writer returns."""
    with atomic_path(path, fsync=fsync) as tmp:
        writer(tmp)
    return Path(path)
