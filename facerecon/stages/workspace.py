"""A face's work folder: one sub-folder per stage run, named by its cache key, complete or absent.

A stage writes into a temporary sibling folder and renames it into place when it has finished,
with a ``_done.json`` inside, so a killed run leaves either a finished stage or nothing (the
next run redoes only what is missing). Keys chain: a stage's key hashes its params section,
its code version and its upstream stages' keys, so changing ``ae_optimize`` params re-runs
``ae_optimize`` and everything after it, nothing before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerecon.config import section_hash
from facerecon.io.atomic import atomic_save, atomic_write_text, make_temp_dir, remove_dead_temps
from facerecon.stages.base import AlignedFace, InvertResult, View

DONE = "_done.json"


@dataclass(frozen=True)
class StageOut:
    """What a stage hands downstream: where its files are and a JSON-able summary."""

    stage: str
    key: str
    dir: str
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False

    @property
    def path(self) -> Path:
        return Path(self.dir)


@dataclass(frozen=True)
class StageJob:
    """What a stage is run with besides its upstream outputs (one signature for every stage).

    ``root`` is the work folder the stage's own ``<stage>-<key>`` folder goes in: the photo's
    for `align`, the face's for the stages after it.
    """

    params: Any  # facerecon.config.Params
    root: Path
    face_dir: Path | None = None  # the aligned face's folder (every stage after `align`)
    photo: dict = field(default_factory=dict)  # what `export` records about the source photo
    rgb: np.ndarray | None = field(default=None, repr=False)  # the decoded photo (`align` only)
    photo_sha: str = ""  # SHA-256 of the photo's bytes (`align`'s cache key)

    def for_face(self, face_dir: Path, photo: dict | None = None) -> StageJob:
        """The job of one aligned face of this photo: its own work folder under the photo's."""
        return StageJob(self.params, self.root / face_dir.name, face_dir, dict(photo or self.photo))


def stage_key(stage: str, version: str, section: Any, upstream: list[str], extra: str = "") -> str:
    h = hashlib.sha256()
    h.update(f"{stage}|{version}|{section_hash(section) if section is not None else ''}|{extra}".encode())
    for key in upstream:
        h.update(b"|" + key.encode())
    return h.hexdigest()[:20]


def finished(root: Path, stage: str, key: str) -> StageOut | None:
    d = root / f"{stage}-{key}"
    marker = d / DONE
    if not marker.is_file():
        return None
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return StageOut(stage=stage, key=key, dir=str(d), summary=info.get("summary", {}),
                    seconds=float(info.get("seconds", 0.0)), cached=True)


@contextlib.contextmanager
def stage_dir(root: Path, stage: str, key: str) -> Iterator[Path]:
    """Temporary folder for a stage run, renamed to ``<stage>-<key>`` on success."""
    root.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(root, f".{stage}-{key}.")  # a killed run's half-written attempt at this stage
    tmp = make_temp_dir(root, f".{stage}-{key}.{os.getpid()}.")
    try:
        yield tmp
        final = root / f"{stage}-{key}"
        if final.exists():  # an incomplete leftover (no _done.json) or a concurrent duplicate
            shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def mark_done(d: Path, summary: dict, seconds: float) -> None:
    atomic_write_text(d / DONE, json.dumps({"summary": summary, "seconds": seconds}, indent=1, default=str))


# ------------------------------------------------------------------ (de)serialisation


def save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    atomic_save(path, lambda p: Image.fromarray(arr).save(p, format="PNG"))


def load_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB") if im.mode not in ("L", "1") else im)


def save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_save(path, lambda p: np.save(p, np.asarray(arr), allow_pickle=False))


def load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def save_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=_jsonable))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def load_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_face(d: Path, face: AlignedFace) -> None:
    save_png(d / "aligned.png", face.image)
    save_png(d / "mask.png", face.mask.astype(np.uint8) * 255)
    if face.landmarks is not None:
        save_npy(d / "landmarks.npy", face.landmarks.astype(np.float32))
    save_json(d / "face.json", {"yaw": face.yaw, "pitch": face.pitch, "roll": face.roll, "meta": face.meta})


def load_face(d: Path) -> AlignedFace:
    info = load_json(d / "face.json")
    lm_path = d / "landmarks.npy"
    return AlignedFace(image=load_png(d / "aligned.png")[..., :3], mask=load_png(d / "mask.png") > 127,
                       landmarks=load_npy(lm_path) if lm_path.exists() else None,
                       yaw=info["yaw"], pitch=info["pitch"], roll=info["roll"], meta=info.get("meta", {}))


def save_inverted(d: Path, inv: InvertResult) -> None:
    if inv.depth is not None:
        save_npy(d / "depth.npy", inv.depth.astype(np.float32))
    if inv.latent is not None:
        save_npy(d / "latent.npy", inv.latent.astype(np.float32))
    if inv.reconstruction is not None:
        save_png(d / "reconstruction.png", inv.reconstruction)
    files = {k: str(Path(v).relative_to(d)) if Path(v).is_relative_to(d) else str(v) for k, v in inv.files.items()}
    save_json(d / "inverted.json", {"files": files, "info": inv.info})


def load_inverted(d: Path) -> InvertResult:
    info = load_json(d / "inverted.json")
    files = {k: str(d / v) if not Path(v).is_absolute() else v for k, v in info["files"].items()}
    return InvertResult(
        depth=load_npy(d / "depth.npy") if (d / "depth.npy").exists() else None,
        latent=load_npy(d / "latent.npy") if (d / "latent.npy").exists() else None,
        reconstruction=load_png(d / "reconstruction.png") if (d / "reconstruction.png").exists() else None,
        files=files, info=info["info"])


def save_views(d: Path, views: list[View]) -> None:
    entries = []
    for v in views:
        save_png(d / f"{v.name}.png", v.image)
        entries.append({"name": v.name, "yaw": float(v.yaw), "alpha": v.alpha, "info": v.info})
    save_json(d / "views.json", entries)


def load_views(d: Path) -> list[View]:
    path = d / "views.json"
    if not path.exists():
        return []
    return [View(image=load_png(d / f"{e['name']}.png")[..., :3], yaw=e["yaw"], name=e["name"],
                 alpha=e.get("alpha"), info=e.get("info", {})) for e in load_json(path)]


def view_summary(views: list[View]) -> list[dict]:
    return [{k: v for k, v in asdict(view).items() if k != "image"} for view in views]


def run_cached(root: Path, stage: str, key: str, body) -> StageOut:
    """Return the finished run of ``stage`` with ``key`` or run ``body(dir) -> summary`` to make it."""
    import time

    hit = finished(root, stage, key)
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    with stage_dir(root, stage, key) as d:
        summary = body(d) or {}
        seconds = time.perf_counter() - t0
        mark_done(d, summary, seconds)
    return StageOut(stage=stage, key=key, dir=str(root / f"{stage}-{key}"), summary=summary, seconds=seconds)
