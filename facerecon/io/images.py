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
    max_bytes: int = 50_000_000

    @classmethod
    def from_params(cls, p) -> ImageLimits:
        """From the ``input`` section of params.yaml (facerecon.config.InputParams)."""
        return cls(min_side=p.min_side, max_pixels=p.max_pixels, formats=tuple(p.formats), max_bytes=p.max_bytes)


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
    """Decode ``data`` into an upright RGB uint8 array, or raise one InputImageError saying why not.

    Size, pixel count and format are checked from the header before any pixel is decoded, so a
    small file that claims 20000x20000 pixels (a decompression bomb) costs nothing.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputImageError(f"{name}: empty file (0 bytes)")
    if len(data) > limits.max_bytes:
        raise InputImageError(f"{name}: {len(data)} bytes is larger than the limit (input.max_bytes={limits.max_bytes})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit follows
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InputImageError(f"{name}: not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise InputImageError(f"{name}: too large to decode safely ({' '.join(str(exc).split())[:120]})") from None
    except Exception as exc:  # noqa: BLE001
        raise InputImageError(f"{name}: cannot read image header ({exc.__class__.__name__})") from None
    fmt = im.format or "?"
    if fmt not in limits.formats:
        hint = "; add GIF to input.formats to use its first frame" if fmt == "GIF" else ""
        raise InputImageError(f"{name}: format {fmt} is not accepted (unsupported format; accepted: "
                              f"{', '.join(limits.formats)}{hint})")
    w, h = im.size
    if w * h > limits.max_pixels:
        raise InputImageError(f"{name}: {w}x{h} is too large ({w * h} pixels > input.max_pixels={limits.max_pixels})")
    if min(w, h) < limits.min_side:
        raise InputImageError(f"{name}: {w}x{h} is too small (sides under input.min_side={limits.min_side} pixels)")
    notes = []
    if getattr(im, "n_frames", 1) > 1:
        notes.append("animated: first frame used")
    suffix = name.lower().rsplit(".", 1)[-1] if "." in name else ""
    if suffix and {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}.get(suffix, fmt) != fmt:
        notes.append(f"extension .{suffix} but {fmt} content")
    orig_mode = im.mode
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise InputImageError(f"{name}: corrupt or truncated image ({' '.join(str(exc).split())[:120]})") from None
    im, exif_rotated = _upright(im, notes)
    try:
        rgb = _to_rgb(im, notes)
    except (OSError, ValueError) as exc:
        raise InputImageError(f"{name}: cannot convert {orig_mode} pixels to RGB ({' '.join(str(exc).split())[:120]})") \
            from None
    return LoadedImage(rgb=np.ascontiguousarray(rgb), name=name, orig_mode=orig_mode, orig_size=(w, h),
                       exif_rotated=exif_rotated, notes=notes)


def _upright(im, notes: list[str]):
    """Apply the EXIF orientation tag; a broken EXIF block is a note, not a rejection."""
    from PIL import ImageOps

    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
        if orientation not in range(2, 9):
            return im, False
        return ImageOps.exif_transpose(im), True
    except Exception as exc:  # noqa: BLE001 - malformed EXIF: use the pixels as stored
        notes.append(f"EXIF unreadable, orientation ignored ({exc.__class__.__name__})")
        return im, False


def _to_rgb(im, notes: list[str]) -> np.ndarray:
    """16-bit, float, palette, alpha, grayscale, CMYK... -> RGB uint8."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if im.mode == "F" or lo < 0:
            top, arr = max(hi - lo, 1e-12), arr - lo
        else:
            top = 65535.0 if hi > 255 else 255.0
        im = Image.fromarray((np.nan_to_num(arr) / top * 255.0 + 0.5).clip(0, 255).astype(np.uint8))
        notes.append("high bit depth scaled to 8 bits")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        bg = Image.new("RGBA", im.size, (128, 128, 128, 255))
        im = Image.alpha_composite(bg, im.convert("RGBA"))
        notes.append("transparency composited on grey")
    if im.mode in ("LAB", "HSV"):
        raise ValueError(f"{im.mode} colour space")
    return np.asarray(im.convert("RGB"))
