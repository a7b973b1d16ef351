"""Torch datasets for pretraining and evaluation: the synthetic set, and the thesis's real face sets.

:class:`SynthDataset` reads one split written by ``synth.make_synth_dataset`` (memory-mapped,
so 20k images cost no RAM up front).

:class:`FolderDataset` reads the real sets the thesis pretrains on, in their published folder
layouts, crops the face square and resizes it to the AE's input size:

* ``celeba`` — ``img_align_celeba/*.jpg`` (aligned 178×218; a fixed square around the face),
  ``img_celeba/*.jpg`` + ``list_bbox_celeba.txt`` (in-the-wild; square around the box), or
  Unsup3D's ``celeba_cropped/{train,val,test}/`` (already square). ``list_eval_partition.txt``
  (``name 0|1|2``) selects ``split`` when present.
* ``cfp`` — Celebrities in Frontal-Profile: ``Data/Images/<id>/{frontal,profile}/NN.jpg``,
  cropped around ``Data/Fiducials/<id>/<view>/NN.txt`` points (``x,y`` per line) when present.
* ``hpid`` — Head Pose Image Database (Pointing'04): ``PersonNN/personNNSII±tilt±pan.jpg``
  with a same-name ``.txt`` (name, label, centre x, centre y, width, height) face box; tilt and
  pan are read from the file name, in the database's own convention.
* ``comsats`` — COMSATS face (50 subjects × 17 poses): ``<subject>/<image>``; centre square.
* ``folder`` — any images below the root; centre square.

A corrupt or unreadable image is skipped, counted (:attr:`FolderDataset.skipped`) and logged
once; it never stops a pretraining run. A missing root, or a root with no usable image, is a
:class:`DatasetError`. ``verify()`` decodes every file up front when a count before training is
wanted.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from facerecon.errors import DatasetError, InputImageError

log = logging.getLogger(__name__)

LAYOUTS = ("auto", "celeba", "cfp", "hpid", "comsats", "folder")
SPLITS = ("train", "val", "test")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
_HPID_NAME = re.compile(r"^person(\d{2})(\d)(\d{2})([+-]\d+)([+-]\d+)$", re.IGNORECASE)
# aligned CelebA (178×218): eyes at y≈111, 39 px apart. The synthetic faces put the eyes 45 %
# down a square whose width is ~3.2 eye distances; the same framing here is a 125-px square.
_CELEBA_ALIGNED_CROP = (26.0, 55.0, 125.0)


# --------------------------------------------------------------------------- synthetic


class SynthDataset(Dataset):
    """One split of the synthetic set: ``{"image": (3, S, S) float in [0, 1], "depth": (S, S),
    "mask": (S, S) float 0/1}`` (+ ``"canon_depth"`` with ``canonical=True``)."""

    REQUIRED = ("images.npy", "depth.npy", "mask.npy", "meta.json")

    def __init__(self, split_dir: str | Path, *, canonical: bool = False) -> None:
        self.dir = Path(split_dir)
        if not self.dir.is_dir():
            raise DatasetError(f"{self.dir}: synthetic split folder does not exist (run the synth stage first)")
        missing = [f for f in self.REQUIRED + (("canon_depth.npy",) if canonical else ()) if not (self.dir / f).is_file()]
        if missing:
            raise DatasetError(f"{self.dir}: missing {', '.join(missing)} (an interrupted or old synth run? re-run synth)")
        try:
            self.meta = json.loads((self.dir / "meta.json").read_text(encoding="utf-8"))
            self.images = np.load(self.dir / "images.npy", mmap_mode="r")
            self.depth = np.load(self.dir / "depth.npy", mmap_mode="r")
            self.mask = np.load(self.dir / "mask.npy", mmap_mode="r")
            self.canon = np.load(self.dir / "canon_depth.npy", mmap_mode="r") if canonical else None
        except (ValueError, OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{self.dir}: unreadable synthetic split ({exc.__class__.__name__}: {exc})") from None
        n, s = len(self.images), self.images.shape[1] if self.images.ndim == 4 else -1
        if self.images.ndim != 4 or self.images.shape[1:] != (s, s, 3) or self.images.dtype != np.uint8:
            raise DatasetError(f"{self.dir}/images.npy: expected uint8 (N, S, S, 3), got {self.images.dtype} "
                               f"{self.images.shape}")
        for name, arr in (("depth", self.depth), ("mask", self.mask), ("canon_depth", self.canon)):
            if arr is not None and arr.shape != (n, s, s):
                raise DatasetError(f"{self.dir}/{name}.npy: shape {arr.shape} does not match images ({n}, {s}, {s})")
        if self.meta.get("count", n) != n:
            raise DatasetError(f"{self.dir}: meta.json says {self.meta.get('count')} images, images.npy has {n}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def camera(self) -> dict[str, float]:
        """fov / min_depth / max_depth the set was rendered with (from meta.json)."""
        p = self.meta.get("params", {})
        return {"fov": float(p.get("fov", 10.0)), "min_depth": float(p.get("min_depth", 0.9)),
                "max_depth": float(p.get("max_depth", 1.1))}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        out = {
            "image": torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1).float() / 255.0,
            "depth": torch.from_numpy(np.array(self.depth[i], dtype=np.float32)),
            "mask": torch.from_numpy(np.array(self.mask[i], dtype=np.float32)),
        }
        if self.canon is not None:
            out["canon_depth"] = torch.from_numpy(np.array(self.canon[i], dtype=np.float32))
        return out

    @property
    def views_per_face(self) -> int:
        """Consecutive images showing one identity (``synth.views_per_face``; 1 for older sets)."""
        return int(self.meta.get("views_per_face", 1))

    def true_views(self) -> np.ndarray:
        """(N, 6) float32 ground-truth viewpoints (radians, depth units) from ``params.npz``."""
        if getattr(self, "_views", None) is None:
            from facerecon.geometry.camera import view_vectors

            try:
                with np.load(self.dir / "params.npz") as z:
                    rp = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("render/")}
                self._views = view_vectors(rp).numpy()
            except (OSError, KeyError, ValueError) as exc:
                raise DatasetError(f"{self.dir}/params.npz: no readable render parameters ({exc})") from None
        return self._views

    def batch(self, index: np.ndarray | slice) -> dict[str, torch.Tensor]:
        """Many items at once (evaluation): image (N, 3, S, S), depth (N, S, S), mask (N, S, S) bool
        (+ ``canon_depth`` (N, S, S) with ``canonical=True``)."""
        out = {
            "image": torch.from_numpy(np.array(self.images[index])).permute(0, 3, 1, 2).float() / 255.0,
            "depth": torch.from_numpy(np.array(self.depth[index], dtype=np.float32)),
            "mask": torch.from_numpy(np.array(self.mask[index], dtype=bool)),
        }
        if self.canon is not None:
            out["canon_depth"] = torch.from_numpy(np.array(self.canon[index], dtype=np.float32))
        return out


# ------------------------------------------------------------------------------ folders


@dataclass(frozen=True)
class FolderItem:
    """One image: its path, the square crop (x0, y0, side) in source pixels or None for the
    centred square, and the pose the dataset labels it with (NaN when unknown)."""

    path: Path
    crop: tuple[float, float, float] | None = None
    crop_file: Path | None = None  # a side file read lazily: HPID face box or CFP fiducial points
    crop_kind: str = ""            # "box" or "points"
    tilt: float = math.nan
    pan: float = math.nan


def _images_below(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())


def _square(cx: float, cy: float, side: float) -> tuple[float, float, float]:
    return (cx - side / 2.0, cy - side / 2.0, side)


def detect_layout(root: Path) -> str:
    """Guess a layout from the folder's signature files (``comsats`` has none: name it)."""
    if (root / "img_align_celeba").is_dir() or (root / "img_celeba").is_dir() or \
            (root / "list_eval_partition.txt").is_file():
        return "celeba"
    if (root / "Data" / "Images").is_dir() or (root / "cfp-dataset" / "Data" / "Images").is_dir():
        return "cfp"
    if any(_HPID_NAME.match(p.stem) for p in root.glob("Person*/*.jpg")) or \
            any(_HPID_NAME.match(p.stem) for p in root.glob("person*.jpg")):
        return "hpid"
    return "folder"


def _celeba_items(root: Path, split: str | None) -> list[FolderItem]:
    part: dict[str, int] = {}
    part_file = root / "list_eval_partition.txt"
    if part_file.is_file():
        for line in part_file.read_text(encoding="utf-8", errors="replace").splitlines():
            f = line.split()
            if len(f) == 2 and f[1].isdigit():
                part[f[0]] = int(f[1])
    want = None if split is None else SPLITS.index(split)

    def keep(name: str) -> bool:
        return want is None or not part or part.get(name) == want

    if (root / "img_align_celeba").is_dir():
        return [FolderItem(p, _CELEBA_ALIGNED_CROP)
                for p in _images_below(root / "img_align_celeba") if keep(p.name)]
    if (root / "img_celeba").is_dir():
        boxes: dict[str, tuple[float, float, float]] = {}
        bbox_file = root / "list_bbox_celeba.txt"
        if bbox_file.is_file():
            for line in bbox_file.read_text(encoding="utf-8", errors="replace").splitlines():
                f = line.split()
                if len(f) == 5 and all(v.lstrip("-").isdigit() for v in f[1:]):
                    x, y, w, h = map(float, f[1:])
                    boxes[f[0]] = _square(x + w / 2, y + h / 2, 0.9 * max(w, h))
        return [FolderItem(p, boxes.get(p.name)) for p in _images_below(root / "img_celeba") if keep(p.name)]
    # Unsup3D's celeba_cropped/{train,val,test}: already square crops
    base = root / split if split and (root / split).is_dir() else root
    return [FolderItem(p) for p in _images_below(base)]


def _cfp_items(root: Path, split: str | None) -> list[FolderItem]:
    data = root / "Data" if (root / "Data" / "Images").is_dir() else root / "cfp-dataset" / "Data"
    items = []
    for p in _images_below(data / "Images"):
        rel = p.relative_to(data / "Images")
        fid = (data / "Fiducials" / rel).with_suffix(".txt")
        view = rel.parts[1] if len(rel.parts) > 2 else ""
        items.append(FolderItem(p, None, fid if fid.is_file() else None, "points",
                                pan=0.0 if view == "frontal" else math.nan))
    return items


def _hpid_items(root: Path, split: str | None) -> list[FolderItem]:
    items = []
    for p in _images_below(root):
        m = _HPID_NAME.match(p.stem)
        if not m:
            continue
        box = p.with_suffix(".txt")
        items.append(FolderItem(p, None, box if box.is_file() else None, "box", tilt=float(m.group(4)),
                                pan=float(m.group(5))))
    return items


def _plain_items(root: Path, split: str | None) -> list[FolderItem]:
    base = root / split if split and (root / split).is_dir() else root
    return [FolderItem(p) for p in _images_below(base)]


_FINDERS = {"celeba": _celeba_items, "cfp": _cfp_items, "hpid": _hpid_items, "comsats": _plain_items,
            "folder": _plain_items}


def _crop_from_file(item: FolderItem) -> tuple[float, float, float] | None:
    """The square crop a side file describes (HPID face box / CFP fiducials); None if unreadable."""
    try:
        text = item.crop_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if item.crop_kind == "points":  # CFP fiducials: one "x,y" per line
        pts = []
        for line in text.splitlines():
            f = [v for v in re.split(r"[,\s]+", line.strip()) if v]
            if len(f) >= 2:
                try:
                    pts.append((float(f[0]), float(f[1])))
                except ValueError:
                    continue
        if len(pts) < 2:
            return None
        a = np.array(pts)
        lo, hi = a.min(0), a.max(0)
        return _square(*((lo + hi) / 2), 1.3 * float(max(hi - lo)))
    f = text.split()  # HPID: name, label, centre x, centre y, width, height
    try:
        cx, cy, w, h = map(float, f[2:6])
    except (ValueError, IndexError):
        return None
    return _square(cx, cy, 1.1 * max(w, h))


def _load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 through the project's defensive loader; InputImageError when unusable."""
    from facerecon.io.images import ImageLimits, load_image

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputImageError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    return load_image(data, str(path), ImageLimits(min_side=16)).rgb


def crop_resize(rgb: np.ndarray, crop: tuple[float, float, float] | None, size: int) -> np.ndarray:
    """Square crop (x0, y0, side) — centred square of the short side when None — resized to
    ``size``; regions outside the photo replicate its border (like Unsup3D's CelebA crop)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    if crop is None:
        side = float(min(h, w))
        crop = ((w - side) / 2.0, (h - side) / 2.0, side)
    x0, y0, side = crop
    side = max(side, 1.0)
    pad = int(math.ceil(max(0.0, -x0, -y0, x0 + side - w, y0 + side - h)))
    if pad:
        rgb = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        x0, y0 = x0 + pad, y0 + pad
    im = Image.fromarray(rgb)
    return np.asarray(im.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side), reducing_gap=2.0))


class FolderDataset(Dataset):
    """Face photos from a folder layout → ``{"image": (3, S, S) float in [0, 1], "tilt", "pan", "index"}``."""

    def __init__(self, root: str | Path, layout: str = "auto", image_size: int = 64, *, split: str | None = None,
                 max_items: int | None = None) -> None:
        self.root = Path(root)
        if layout not in LAYOUTS:
            raise DatasetError(f"unknown dataset layout {layout!r} (one of {', '.join(LAYOUTS)})")
        if split is not None and split not in SPLITS:
            raise DatasetError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder does not exist")
        self.layout = detect_layout(self.root) if layout == "auto" else layout
        self.image_size = int(image_size)
        self.items = _FINDERS[self.layout](self.root, split)[:max_items]
        if not self.items:
            raise DatasetError(f"{self.root}: no images found for layout {self.layout!r}"
                               + (f" and split {split!r}" if split else ""))
        self.skipped: dict[str, str] = {}  # path -> reason

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int) -> np.ndarray:
        """(S, S, 3) uint8 crop of item ``i``; raises InputImageError if the file is unusable."""
        item = self.items[i]
        crop = item.crop
        if crop is None and item.crop_file is not None:
            crop = _crop_from_file(item)
        return crop_resize(_load_rgb(item.path), crop, self.image_size)

    def _skip(self, i: int, exc: InputImageError) -> None:
        key = str(self.items[i].path)
        if key not in self.skipped:
            self.skipped[key] = str(exc)
            log.warning("skipping corrupt image %s (%d skipped so far)", exc, len(self.skipped))

    def __getitem__(self, i: int) -> dict[str, object]:
        n = len(self.items)
        for k in range(n):  # a corrupt file is replaced by the next usable one
            j = (i + k) % n
            if str(self.items[j].path) in self.skipped:
                continue
            try:
                rgb = self.load(j)
            except InputImageError as exc:
                self._skip(j, exc)
                continue
            item = self.items[j]
            return {"image": torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0,
                    "tilt": item.tilt, "pan": item.pan, "index": j}
        raise DatasetError(f"{self.root}: none of the {n} images could be read ({len(self.skipped)} corrupt)")

    def verify(self) -> int:
        """Decode every image now; corrupt ones are dropped and counted. Returns the number skipped."""
        good = []
        for j, item in enumerate(self.items):
            try:
                _load_rgb(item.path)
                good.append(item)
            except InputImageError as exc:
                self._skip(j, exc)
        if not good:
            raise DatasetError(f"{self.root}: none of the {len(self.items)} images could be read")
        self.items = good
        return len(self.skipped)
