"""Forehead depth correction (thesis §4.9, §5.4, figure 4.8).

The AE tends to slant the forehead backwards. The thesis slices the forehead into 17 horizontal
layers (0 = top, 16 = bottom at the brows), interpolates the depth between the bottom and the
middle of the forehead, and moves layer 6 towards layer 0 so the upper forehead stands more
vertical. Read literally that gives, per image column:

* layers ``source_layer..layers-1``: depth linearly interpolated between the bottom layer and
  the source (middle) layer, removing bumps between them;
* layers ``target_layer..source_layer``: pulled towards the source layer's depth (the point of
  layer 6 is carried up to layer 0), by ``strength`` — a vertical upper forehead.

The correction is feathered at the forehead's side edges so it leaves no step in the surface.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def forehead_rows(mask: np.ndarray, brow_row: int | None = None, fraction: float = 0.3
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column forehead top and bottom rows, and which columns have a forehead.

    The top is the first masked row in the column; the bottom is ``brow_row`` (from landmarks)
    or, without landmarks, ``fraction`` of the face's height below the top of the mask.
    """
    h, w = mask.shape
    has = mask.any(axis=0)
    top = np.where(has, mask.argmax(axis=0), 0)
    rows = np.where(mask.any(axis=1))[0]
    if rows.size == 0:
        return top, top, np.zeros(w, dtype=bool)
    face_top, face_bottom = rows[0], rows[-1]
    bottom_row = brow_row if brow_row is not None else int(round(face_top + fraction * (face_bottom - face_top)))
    bottom = np.full(w, bottom_row)
    valid = has & (bottom - top >= 4)
    return top, bottom, valid


def rows_below(bottom: np.ndarray, valid: np.ndarray, height: int) -> np.ndarray:
    """(H, W) bool: the rows below each valid column's forehead bottom (the correction never reaches)."""
    return (np.arange(height)[:, None] > bottom[None, :]) | ~valid[None, :]


def correct_forehead(depth: np.ndarray, mask: np.ndarray, *, layers: int = 17, source_layer: int = 6,
                     target_layer: int = 0, strength: float = 1.0, brow_row: int | None = None,
                     feather: float = 2.0, smooth: float = 2.0, top_ramp: float = 0.3) -> np.ndarray:
    """Corrected copy of ``depth`` (H, W). Pixels outside the forehead are untouched but for a ramp
    above it (``top_ramp`` of the forehead's height; 0 = none). ``smooth`` (pixels) averages the
    per-column change across neighbouring columns (0 = as computed)."""
    depth = np.asarray(depth, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    out = depth.copy()
    top, bottom, valid = forehead_rows(mask, brow_row)
    change = np.zeros_like(depth)
    for x in np.where(valid)[0]:
        t, b = int(top[x]), int(bottom[x])
        ys = np.arange(t, b + 1)
        col = depth[t:b + 1, x]
        # layer index of each row (0 top .. layers-1 bottom) and the depth at each layer boundary
        pos = (ys - t) / max(b - t, 1) * (layers - 1)
        layer_depth = np.interp(np.arange(layers), pos, col)
        d_src, d_bot = layer_depth[source_layer], layer_depth[layers - 1]
        new = col.copy()
        lower = pos >= source_layer
        if layers - 1 > source_layer:
            frac = (pos[lower] - source_layer) / (layers - 1 - source_layer)
            new[lower] = d_src + (d_bot - d_src) * frac
        upper = (pos < source_layer) & (pos >= target_layer)
        new[upper] = col[upper] + strength * (d_src - col[upper])
        # only where masked; above the mask's top the change ramps down to 0 over ``top_ramp`` of the
        # forehead's height, so the corrected forehead meets the hair with no step (a render shows a
        # step as a line across the forehead)
        inside = mask[t:b + 1, x]
        change[t:b + 1, x] = np.where(inside, new - col, 0.0)
        ramp = int(round(top_ramp * (b - t)))
        if ramp > 0 and t > 0:
            j = np.arange(1, min(ramp, t) + 1)
            change[t - j, x] = change[t, x] * (1.0 - j / (ramp + 1))
    if smooth > 0:  # columns are corrected one by one; neighbours differ where the mask's top is
        # ragged, which renders showed as vertical streaks: average the change across columns
        w_in = (change != 0) | (mask & valid[None, :])
        w_in[rows_below(bottom, valid, depth.shape[0])] = False
        num = gaussian_filter(np.where(w_in, change, 0.0), (0.5, smooth))
        den = gaussian_filter(w_in.astype(np.float64), (0.5, smooth))
        change = np.where(w_in, num / np.maximum(den, 1e-9), 0.0)
    if feather > 0:
        weight = gaussian_filter(valid[None, :].astype(np.float64).repeat(depth.shape[0], 0), (0, feather))
        change = change * np.clip(weight, 0, 1)
    out += change
    return out.astype(np.float32)
