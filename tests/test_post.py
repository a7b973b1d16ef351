"""Albedo combination and forehead correction, on maps whose right answer is known."""

import numpy as np

from facerecon.post.combine import combine_albedo, strip_weights
from facerecon.post.correct import correct_forehead


def test_combine_takes_outer_quarters_from_profiles():
    h, w = 8, 64
    front = np.full((h, w, 3), 0.5, np.float32)
    left = np.zeros((h, w, 3), np.float32)
    right = np.ones((h, w, 3), np.float32)
    out = combine_albedo(front, left, right, strip_fraction=0.25, blur_sigma=0.0)
    assert np.allclose(out[:, :16], 0.0) and np.allclose(out[:, 48:], 1.0)
    assert np.allclose(out[:, 16:48], 0.5)


def test_combine_seams_are_blurred_and_missing_profile_keeps_front():
    front = np.full((4, 64, 3), 0.5, np.float32)
    left = np.zeros((4, 64, 3), np.float32)
    out = combine_albedo(front, left, None, strip_fraction=0.25, blur_sigma=3.0)
    row = out[0, :, 0]
    assert np.all(np.diff(row[8:24]) >= -1e-6)  # a ramp, not a step
    assert np.max(np.abs(np.diff(row))) < 0.2
    assert np.allclose(out[:, 40:], 0.5)  # no right profile: the front stays
    wl, wr = strip_weights(64, 0.25, 3.0)
    assert np.all(wl + wr <= 1 + 1e-9)


def test_forehead_correction_makes_slanted_forehead_vertical():
    h = w = 64
    mask = np.zeros((h, w), bool)
    mask[10:60, 16:48] = True
    depth = np.ones((h, w), np.float32)
    rows = np.arange(h)[:, None].repeat(w, 1)
    # forehead rows 10..25 recede linearly towards the top (depth grows upwards)
    depth = np.where((rows >= 10) & (rows < 26), 1.0 + (26 - rows) * 0.004, depth).astype(np.float32)
    out = correct_forehead(depth, mask, brow_row=26, feather=0.0)
    col = 32
    top_slope_before = depth[10, col] - depth[16, col]
    top_slope_after = out[10, col] - out[16, col]
    assert top_slope_after < 0.25 * top_slope_before  # upper forehead much more vertical
    assert np.allclose(out[~mask], depth[~mask])  # nothing outside the face moves
    assert np.allclose(out[30:], depth[30:])  # below the brows untouched
    same = correct_forehead(depth, mask, brow_row=26, strength=0.0, feather=0.0)
    assert np.abs(same - depth)[10:16].max() < np.abs(out - depth)[10:16].max()
