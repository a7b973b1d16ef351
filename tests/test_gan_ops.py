"""StyleGAN2's FIR ops and modulated convolutions: the fast torch paths against plain references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d

from facerecon.gan.ops import fused_leaky_relu, make_kernel, upfirdn2d
from facerecon.gan.stylegan2 import Blur, Generator, GeneratorConfig, ModulatedConv2d, Upsample

CASES = [  # up, down, pad (x0, x1, y0, y1), 1D kernel
    (2, 1, (2, 1, 2, 1), [1, 3, 3, 1]),  # StyleGAN2 Upsample
    (1, 1, (1, 1, 1, 1), [1, 3, 3, 1]),  # Blur after the transposed conv
    (1, 2, (1, 1, 1, 1), [1, 3, 3, 1]),  # Downsample
    (2, 2, (0, -1, 3, 0), [1, 2, 1]),  # negative pad = crop
    (4, 1, (-3, 2, 5, -1), [1, 3, 3, 1]),
    (3, 2, (1, 2, 0, 1), [1, 2, 3, 2, 1]),
]


def scipy_upfirdn(x: np.ndarray, k: np.ndarray, up: int, down: int, pad) -> np.ndarray:
    """The definition with numpy/scipy: zero-stuff, pad/crop, true convolution, keep every down-th."""
    x0, x1, y0, y1 = pad
    out = []
    for img in x.reshape(-1, *x.shape[-2:]):
        z = np.zeros((img.shape[0] * up, img.shape[1] * up))
        z[::up, ::up] = img
        z = np.pad(z, ((max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
        z = z[max(-y0, 0): z.shape[0] - max(-y1, 0), max(-x0, 0): z.shape[1] - max(-x1, 0)]
        out.append(convolve2d(z, k, mode="valid")[::down, ::down])
    return np.stack(out).reshape(*x.shape[:2], *out[0].shape)


@pytest.mark.parametrize("up,down,pad,k1", CASES)
def test_upfirdn2d_fast_and_ref_match_scipy(up, down, pad, k1):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, generator=g)
    k = make_kernel(k1) * up ** 2
    want = scipy_upfirdn(x.double().numpy(), k.double().numpy(), up, down, pad)
    for impl in ("ref", "fast"):
        got = upfirdn2d(x, k, up=up, down=down, pad=pad, impl=impl).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_upsample_and_blur_equal_conv_transpose_plus_conv():
    """Upsample(×2, [1,3,3,1]) is a stride-2 transposed conv with the 4×4 kernel (cropped by one
    on each side); Blur is a padded depthwise conv with the (symmetric) kernel."""
    x = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    k = make_kernel([1, 3, 3, 1]) * 4
    wt = k[None, None].repeat(4, 1, 1, 1)
    up_ref = F.conv_transpose2d(x, wt, stride=2, groups=4)[..., 1:-1, 1:-1]
    for impl in ("ref", "fast"):
        up = Upsample([1, 3, 3, 1], impl=impl)(x)
        assert up.shape == (1, 4, 12, 12)
        torch.testing.assert_close(up, up_ref, atol=1e-5, rtol=0)
    blur_ref = F.conv2d(F.pad(x, (1, 1, 1, 1)), make_kernel([1, 3, 3, 1])[None, None].repeat(4, 1, 1, 1), groups=4)
    for impl in ("ref", "fast"):
        torch.testing.assert_close(Blur([1, 3, 3, 1], pad=(1, 1), impl=impl)(x)[..., :5, :5], blur_ref[..., :5, :5],
                                   atol=1e-5, rtol=0)


def test_upfirdn2d_gradients():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    k = make_kernel([1, 3, 3, 1]).double() * 4
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, k, up=2, pad=(2, 1), impl="fast"), (x,))


def test_fused_leaky_relu_formula():
    x, b = torch.randn(2, 3, 4, 4), torch.randn(3)
    y = x + b.view(1, 3, 1, 1)
    torch.testing.assert_close(fused_leaky_relu(x, b), torch.where(y >= 0, y, 0.2 * y) * 2 ** 0.5)


def test_modulated_upsampling_conv_matches_per_sample_reference():
    """The batched grouped transposed conv equals modulating/demodulating each sample's weight
    and running an ordinary transposed conv + blur on it alone."""
    torch.manual_seed(2)
    m = ModulatedConv2d(4, 5, 3, style_dim=6, upsample=True, impl="fast")
    x, s = torch.randn(3, 4, 5, 5), torch.randn(3, 6)
    delta = 0.1 * torch.randn(3, 5, 4, 3, 3)
    out = m(x, s, delta)
    for i in range(3):
        w = m.scale * m.weight[0] * (1 + delta[i]) * m.modulation(s[i: i + 1]).view(1, 4, 1, 1)
        w = w / torch.sqrt((w ** 2).sum((1, 2, 3), keepdim=True) + 1e-8)
        y = F.conv_transpose2d(x[i: i + 1], w.transpose(0, 1), stride=2)
        y = upfirdn2d(y, m.blur.kernel, pad=m.blur.pad, impl="ref")
        torch.testing.assert_close(out[i: i + 1], y, atol=1e-5, rtol=1e-5)


def test_generator_fast_and_ref_paths_agree():
    torch.manual_seed(3)
    g = Generator(GeneratorConfig(size=32, style_dim=16, n_mlp=2, channel_max=8)).eval()
    w = g.mapping(torch.randn(2, 16))[:, None].repeat(1, g.n_latent, 1)
    with torch.no_grad():
        fast = g.synthesis(w)
        g.set_impl("ref")
        ref = g.synthesis(w)
    assert fast.shape == (2, 3, 32, 32)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=0)


def test_generator_sizes_up_to_1024_render():
    """Any power-of-two size works with the same code (256 here, tiny channels to stay fast)."""
    torch.manual_seed(4)
    g = Generator(GeneratorConfig(size=256, style_dim=8, n_mlp=1, channel_max=4)).eval()
    assert g.n_latent == 14 and len(g.noise_list("const")) == 13
    with torch.no_grad():
        img = g.synthesis(g.mapping(torch.randn(1, 8)))
    assert img.shape == (1, 3, 256, 256) and torch.isfinite(img).all()
    with pytest.raises(ValueError, match="latent must be"):
        g.synthesis(torch.zeros(1, 18, 8))
