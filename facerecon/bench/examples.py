"""reports/eval/examples.png: a few test faces with the ground truth and every variant's depth, shaded.

Written by the ``evaluate`` stage (it has the predictors); ``reports/benchmark.md`` shows it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facerecon.bench.metrics import exact_normals
from facerecon.io.atomic import atomic_write_bytes


def shaded(depth: Tensor, mask: Tensor, fov: float) -> np.ndarray:
    """Depth maps (B, H, W) shown as grey Lambertian renders (light from the upper left) on the
    ground-truth face mask: shape and normal noise are visible, which a grey depth image hides."""
    n = exact_normals(depth.double(), fov)
    light = torch.tensor([-0.4, -0.4, 1.0], dtype=n.dtype)
    light = light / light.norm()
    grey = (0.15 + 0.85 * (n * light).sum(-1).clamp(min=0)).float()
    return (torch.where(mask, grey, torch.zeros_like(grey)).numpy() * 255).astype(np.uint8)


def plot_examples(images: Tensor, gt_depth: Tensor, gt_mask: Tensor, predictions: dict[str, Tensor], path: Path, *,
                  fov: float, scale: int = 3) -> Path:
    """One row per face: the image, the ground truth, then every variant, each shaded."""
    from PIL import Image, ImageDraw

    cols = [(images.permute(0, 2, 3, 1).clamp(0, 1).numpy() * 255).astype(np.uint8)]
    names = ["image", "ground truth", *predictions]
    for depth in (gt_depth, *predictions.values()):
        cols.append(np.repeat(shaded(depth, gt_mask, fov)[..., None], 3, -1))
    b, h, w, _ = cols[0].shape
    grid = np.concatenate([np.concatenate([c[i] for c in cols], 1) for i in range(b)], 0)
    img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    head = Image.new("RGB", (img.width, 16), "white")
    draw = ImageDraw.Draw(head)
    for j, name in enumerate(names):
        draw.text((j * w * scale + 3, 2), name, fill="black")
    out = Image.new("RGB", (img.width, img.height + 16), "white")
    out.paste(head, (0, 0))
    out.paste(img, (0, 16))
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
