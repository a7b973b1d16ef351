"""One resolver for every checkpoint: a local path, the project's models/ folder, or a hub id.

Offline by default: a hub id is only fetched when the caller passes ``allow_download=True``.
Every resolved file gets its sha256 recorded so result.json can say which weights made a face.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from facerecon.errors import MissingWeightsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def models_dirs() -> list[Path]:
    """Folders searched for bare file names: $FACERECON_MODELS (":"-separated), ./models, <repo>/models."""
    dirs: list[Path] = []
    env = os.environ.get("FACERECON_MODELS", "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [Path.cwd() / "models", PROJECT_ROOT / "models"]
    seen, out = set(), []
    for d in dirs:
        key = str(d.resolve()) if d.exists() else str(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path
    sha256: str


_SHA_CACHE: dict[tuple[str, float, int], str] = {}


def sha256_of(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime, st.st_size)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                h.update(str(f.relative_to(path)).encode())
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
        else:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def candidates(name: str) -> list[Path]:
    p = Path(name).expanduser()
    if p.is_absolute() or len(p.parts) > 1:
        return [p]
    return [d / name for d in models_dirs()]


def resolve(name: str, *, key: str, how_to_get: str, allow_download: bool = False,
            hub_id: str | None = None, hash_it: bool = True) -> ResolvedWeights:
    """Find checkpoint ``name`` (file or directory) for params key ``key``.

    Raises :class:`MissingWeightsError` naming the key, every place tried and ``how_to_get``.
    """
    if not name:
        raise MissingWeightsError(f"{key}: no checkpoint configured. {how_to_get}")
    tried = candidates(name)
    for path in tried:
        if path.exists():
            return ResolvedWeights(path=path, sha256=sha256_of(path) if hash_it else "")
    if allow_download and hub_id:
        try:
            from huggingface_hub import snapshot_download  # optional dependency
        except ImportError:  # pragma: no cover - depends on environment
            raise MissingWeightsError(f"{key}: {name} not found and huggingface_hub is not installed") from None
        local = Path(snapshot_download(hub_id))
        return ResolvedWeights(path=local, sha256=sha256_of(local) if hash_it else "")
    places = ", ".join(str(p) for p in tried)
    raise MissingWeightsError(f"{key}: weights file {name!r} not found (looked in: {places}). {how_to_get}")
