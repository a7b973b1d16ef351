"""Defensive image loading: every rejection is one InputImageError naming the file and the reason."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np

from facerecon.errors import InputImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageLimits:
    min_side: int = 32
    max_pixels: int = 64_000_000
    formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "MPO")


@dataclass
class LoadedImage:
    rgb: np.ndarray
    name: str
    orig_mode: str
    orig_size: tuple[int, int]
    exif_rotated: bool = False
    notes: list[str] = field(default_factory=list)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def load_image(data: bytes, name: str, limits: ImageLimits = ImageLimits()) -> LoadedImage:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise InputImageError(f"{name}: empty file (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InputImageError(f"{name}: not an image (unrecognised format)") from None
    except Exception as exc:  # noqa: BLE001
        raise InputImageError(f"{name}: cannot read image header ({exc.__class__.__name__})") from None
    fmt = im.format or "?"
    if fmt not in limits.formats:
        raise InputImageError(f"{name}: format {fmt} is not accepted (accepted: {', '.join(limits.formats)})")
    w, h = im.size
    if w * h > limits.max_pixels:
        raise InputImageError(f"{name}: {w}x{h} is too large ({w * h} pixels > {limits.max_pixels})")
    if min(w, h) < limits.min_side:
        raise InputImageError(f"{name}: {w}x{h} is too small (sides under {limits.min_side} pixels)")
    notes = []
    if getattr(im, "n_frames", 1) > 1:
        notes.append("animated: first frame used")
    suffix = name.lower().rsplit(".", 1)[-1] if "." in name else ""
    if suffix and {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}.get(suffix, fmt) != fmt:
        notes.append(f"extension .{suffix} but {fmt} content")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
        orig_mode = im.mode
        rotated = ImageOps.exif_transpose(im)
        exif_rotated = rotated.size != im.size or rotated is not im and bool(im.getexif().get(0x0112, 1) != 1)
        im = rotated
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float64)
            top = 65535.0 if arr.max() > 255 else 255.0
            im = Image.fromarray((arr / top * 255.0 + 0.5).clip(0, 255).astype(np.uint8))
        if im.mode == "P":
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "PA"):
            bg = Image.new("RGBA", im.size, (128, 128, 128, 255))
            im = Image.alpha_composite(bg, im.convert("RGBA"))
            notes.append("transparency composited on grey")
        rgb = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InputImageError(f"{name}: corrupt or truncated image ({' '.join(str(exc).split())[:120]})") from None
    return LoadedImage(rgb=np.ascontiguousarray(rgb), name=name, orig_mode=orig_mode, orig_size=(w, h),
                       exif_rotated=exif_rotated, notes=notes)
