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
    out = correct_forehead(depth, mask, brow_row=26, feather=0.0, top_ramp=0.0)
    col = 32
    top_slope_before = depth[10, col] - depth[16, col]
    top_slope_after = out[10, col] - out[16, col]
    assert top_slope_after < 0.25 * top_slope_before  # upper forehead much more vertical
    assert np.allclose(out[~mask], depth[~mask])  # nothing outside the face moves
    assert np.allclose(out[30:], depth[30:])  # below the brows untouched
    # where the surface goes on above the mask (hair), the default ramps the change out above the
    # mask's top instead of leaving a step there, which a render shades as a line
    slope = (1.0 + np.clip(26 - rows, 0, None) * 0.004).astype(np.float32)
    hard = correct_forehead(slope, mask, brow_row=26, feather=0.0, top_ramp=0.0)
    ramped = correct_forehead(slope, mask, brow_row=26, feather=0.0)
    step = lambda d: abs(float(d[10, col] - d[9, col]) - 0.004)  # noqa: E731  (beyond the slope's own)
    assert step(ramped) < 0.5 * step(hard)
    assert np.allclose(ramped[:5], slope[:5]) and np.allclose(ramped[:, :16], slope[:, :16])
    same = correct_forehead(depth, mask, brow_row=26, strength=0.0, feather=0.0)
    assert np.abs(same - depth)[10:16].max() < np.abs(out - depth)[10:16].max()


def test_forehead_correction_leaves_no_vertical_streaks_under_a_ragged_hairline():
    """Issue 14: each column is corrected on its own; where the mask's top row jumps from column to
    column (a landmark hull, a hairline) the change did too, and renders showed vertical streaks."""
    h = w = 64
    rng = np.random.default_rng(0)
    rows = np.arange(h)[:, None].repeat(w, 1)
    top = 10 + rng.integers(0, 5, w)  # ragged top, 10..14
    mask = (rows >= top[None, :]) & (rows < 60)
    mask[:, :12] = mask[:, 52:] = False
    depth = (1.0 + np.clip(26 - rows, 0, None) * 0.004).astype(np.float32)  # a smooth slanted forehead
    band = (rows >= 15) & (rows < 26) & mask

    def streaks(d):  # energy of column-to-column second differences in the forehead band
        dd = np.abs(d[:, 2:] - 2 * d[:, 1:-1] + d[:, :-2])
        return float(dd[band[:, 1:-1] & band[:, 2:] & band[:, :-2]].mean())

    out = correct_forehead(depth, mask, brow_row=26)
    raw = correct_forehead(depth, mask, brow_row=26, smooth=0.0)
    assert streaks(raw) > 1e-4  # the streaks the per-column correction makes
    assert streaks(out) < 0.2 * streaks(raw)
    upper = mask & (rows < 18)  # still corrected as much: the upper forehead comes forward
    assert (depth - raw)[upper].mean() > 0.005
    assert abs((depth - out)[upper].mean() - (depth - raw)[upper].mean()) < 0.2 * (depth - raw)[upper].mean()
    outside = ~mask & (rows >= 15)  # below the ramp above the ragged top
    assert np.allclose(out[outside], depth[outside])
