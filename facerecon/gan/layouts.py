"""The published checkpoint layouts, written down as data: key name → tensor shape.

These tables are written from the published formats, not generated from our modules, so a
test can hold the modules (and the tiny checkpoints the tests save) against them:

* rosinality ``stylegan2-pytorch`` generator (``g_ema`` of ``stylegan2-ffhq-config-f.pt``,
  ``decoder.*`` inside pSp/e4e/HyperStyle checkpoints);
* the IR-SE backbone encoders of pSp/e4e (``encoder.*`` of ``e4e_ffhq_encode.pt``) and
  HyperStyle's W encoder (``encoder.*`` of ``faces_w_encoder.pt``);
* HyperStyle's hypernetwork (``hypernet.*`` of ``hyperstyle_ffhq.pt``).

Every table is a function of the sizes (resolution, channel multiplier/cap, widths, unit
counts…), with the published values as defaults; :func:`check_layout` compares a state dict
with a table and lists every difference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

Shape = tuple[int, ...]
Layout = dict[str, Shape]

# top-level entries of the published checkpoint files
GENERATOR_FILE_KEYS = ("g_ema",)  # + optional "latent_avg", "g", "d", "args", optimiser states
HYPERSTYLE_FILE_KEYS = ("state_dict", "opts", "latent_avg")
E4E_FILE_KEYS = ("state_dict", "opts")  # + "latent_avg" when trained from the average latent
W_ENCODER_FILE_KEYS = ("state_dict", "opts")

# HyperStyle's per-layer parameter table at 1024 (layer index: kernel, in, out); the generic rule is
# generator_conv_layers(); this literal copy of the published table pins the rule down in tests.
HYPERSTYLE_PARAMETERS_1024: dict[int, Shape] = {
    0: (3, 512, 512), 1: (1, 512, 3), 2: (3, 512, 512), 3: (3, 512, 512), 4: (1, 512, 3),
    5: (3, 512, 512), 6: (3, 512, 512), 7: (1, 512, 3), 8: (3, 512, 512), 9: (3, 512, 512),
    10: (1, 512, 3), 11: (3, 512, 512), 12: (3, 512, 512), 13: (1, 512, 3), 14: (3, 512, 256),
    15: (3, 256, 256), 16: (1, 256, 3), 17: (3, 256, 128), 18: (3, 128, 128), 19: (1, 128, 3),
    20: (3, 128, 64), 21: (3, 64, 64), 22: (1, 64, 3), 23: (3, 64, 32), 24: (3, 32, 32), 25: (1, 32, 3),
}
HYPERSTYLE_TO_RGB_1024 = (1, 4, 7, 10, 13, 16, 19, 22, 25)


def _bn(prefix: str, c: int) -> Layout:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def generator_channels(size: int, channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32, 2048: 16}
    # the 64..2048 entries above are for channel_multiplier 2; they scale linearly with it
    out = {}
    for i in range(2, int(math.log2(size)) + 1):
        r = 2 ** i
        c = table[r] if r <= 32 else table[r] * channel_multiplier // 2
        out[r] = min(c, channel_max)
    return out


def generator_conv_layers(size: int, channel_multiplier: int = 2, channel_max: int = 512) -> list[Shape]:
    """(kernel, in, out) per modulated conv: conv1, to_rgb1, then (up-conv, conv, to_rgb) per level."""
    ch = generator_channels(size, channel_multiplier, channel_max)
    out: list[Shape] = [(3, ch[4], ch[4]), (1, ch[4], 3)]
    for i in range(3, int(math.log2(size)) + 1):
        cin, cout = ch[2 ** (i - 1)], ch[2 ** i]
        out += [(3, cin, cout), (3, cout, cout), (1, cout, 3)]
    return out


def generator_layout(size: int = 1024, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                     channel_max: int = 512) -> Layout:
    """``g_ema`` of the rosinality port."""
    d = style_dim
    ch = generator_channels(size, channel_multiplier, channel_max)
    lay: Layout = {}
    for i in range(1, n_mlp + 1):  # style.0 is PixelNorm (no parameters)
        lay[f"style.{i}.weight"] = (d, d)
        lay[f"style.{i}.bias"] = (d,)
    c4 = ch[4]
    lay["input.input"] = (1, c4, 4, 4)

    def styled(p: str, cin: int, cout: int, up: bool) -> None:
        lay[f"{p}.conv.weight"] = (1, cout, cin, 3, 3)
        if up:
            lay[f"{p}.conv.blur.kernel"] = (4, 4)
        lay[f"{p}.conv.modulation.weight"] = (cin, d)
        lay[f"{p}.conv.modulation.bias"] = (cin,)
        lay[f"{p}.noise.weight"] = (1,)
        lay[f"{p}.activate.bias"] = (cout,)

    def rgb(p: str, cin: int, up: bool) -> None:
        if up:
            lay[f"{p}.upsample.kernel"] = (4, 4)
        lay[f"{p}.conv.weight"] = (1, 3, cin, 1, 1)
        lay[f"{p}.conv.modulation.weight"] = (cin, d)
        lay[f"{p}.conv.modulation.bias"] = (cin,)
        lay[f"{p}.bias"] = (1, 3, 1, 1)

    styled("conv1", c4, c4, False)
    rgb("to_rgb1", c4, False)
    log = int(math.log2(size))
    for j, i in enumerate(range(3, log + 1)):
        cin, cout = ch[2 ** (i - 1)], ch[2 ** i]
        styled(f"convs.{2 * j}", cin, cout, True)
        styled(f"convs.{2 * j + 1}", cout, cout, False)
        rgb(f"to_rgbs.{j}", cout, True)
    for n in range(2 * (log - 2) + 1):
        r = 2 ** ((n + 5) // 2)
        lay[f"noises.noise_{n}"] = (1, 1, r, r)
    return lay


def ir_backbone_layout(widths: Iterable[int] = (64, 128, 256, 512), units: Iterable[int] = (3, 4, 14, 3),
                       mode: str = "ir_se") -> Layout:
    """``input_layer`` + ``body.N`` of the IR / IR-SE ResNet (IR-SE-50 by default)."""
    widths, units = list(widths), list(units)
    lay: Layout = {"input_layer.0.weight": (widths[0], 3, 3, 3), **_bn("input_layer.1", widths[0]),
                   "input_layer.2.weight": (widths[0],)}
    n = 0
    cin = widths[0]
    for depth, count in zip(widths, units, strict=True):
        for u in range(count):
            c = cin if u == 0 else depth
            p = f"body.{n}"
            if c != depth:
                lay[f"{p}.shortcut_layer.0.weight"] = (depth, c, 1, 1)
                lay.update(_bn(f"{p}.shortcut_layer.1", depth))
            lay.update(_bn(f"{p}.res_layer.0", c))
            lay[f"{p}.res_layer.1.weight"] = (depth, c, 3, 3)
            lay[f"{p}.res_layer.2.weight"] = (depth,)
            lay[f"{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
            lay.update(_bn(f"{p}.res_layer.4", depth))
            if mode == "ir_se":
                r = max(depth // 16, 1)
                lay[f"{p}.res_layer.5.fc1.weight"] = (r, depth, 1, 1)
                lay[f"{p}.res_layer.5.fc2.weight"] = (depth, r, 1, 1)
            n += 1
        cin = depth
    return lay


def e4e_encoder_layout(n_styles: int = 18, style_dim: int = 512, input_size: int = 256,
                       widths: Iterable[int] = (64, 128, 256, 512), units: Iterable[int] = (3, 4, 14, 3),
                       mode: str = "ir_se") -> Layout:
    """``encoder.*`` of e4e (``Encoder4Editing``) and pSp (``GradualStyleEncoder``): same keys."""
    widths = list(widths)
    lay = ir_backbone_layout(widths, units, mode)
    coarse = input_size // 16
    for i in range(n_styles):
        spatial = coarse if i < 3 else coarse * 2 if i < 7 else coarse * 4
        n_convs = max(int(math.log2(spatial)), 1)
        for m in range(n_convs):
            cin = widths[3] if m == 0 else style_dim
            lay[f"styles.{i}.convs.{2 * m}.weight"] = (style_dim, cin, 3, 3)
            lay[f"styles.{i}.convs.{2 * m}.bias"] = (style_dim,)
        lay[f"styles.{i}.linear.weight"] = (style_dim, style_dim)
        lay[f"styles.{i}.linear.bias"] = (style_dim,)
    lay["latlayer1.weight"] = (widths[3], widths[2], 1, 1)
    lay["latlayer1.bias"] = (widths[3],)
    lay["latlayer2.weight"] = (widths[3], widths[1], 1, 1)
    lay["latlayer2.bias"] = (widths[3],)
    return lay


def w_encoder_layout(style_dim: int = 512, widths: Iterable[int] = (64, 128, 256, 512),
                     units: Iterable[int] = (3, 4, 14, 3), mode: str = "ir_se") -> Layout:
    """``encoder.*`` of HyperStyle's W encoder (``faces_w_encoder.pt``)."""
    widths = list(widths)
    lay = ir_backbone_layout(widths, units, mode)
    lay["linear.weight"] = (style_dim, widths[3])
    lay["linear.bias"] = (style_dim,)
    return lay


def _conv_seq(prefix: str, shapes: list[tuple[int, int]]) -> Layout:
    """Conv2d(3×3)+LeakyReLU pairs: parameters at even indices."""
    lay: Layout = {}
    for m, (cout, cin) in enumerate(shapes):
        lay[f"{prefix}.convs.{2 * m}.weight"] = (cout, cin, 3, 3)
        lay[f"{prefix}.convs.{2 * m}.bias"] = (cout,)
    return lay


def hypernet_layout(size: int = 1024, channel_multiplier: int = 2, channel_max: int = 512, input_nc: int = 6,
                    input_size: int = 256, widths: Iterable[int] = (64, 128, 256, 512),
                    units: Iterable[int] = (3, 4, 6, 3),
                    layers_to_tune: Iterable[int] = (0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24),
                    shared_layers: Iterable[int] = (0, 2, 3, 5, 6, 8, 9, 11, 12), hyper_dim: int = 512,
                    inner_c: int = 256, hyper_inner_c: int = 128, separable: bool = False) -> Layout:
    """``hypernet.*`` of HyperStyle (``SharedWeightsHyperNetResNet[Separable]``)."""
    widths, tune, shared = list(widths), set(layers_to_tune), set(shared_layers)
    lay: Layout = {"conv1.weight": (widths[0], input_nc, 7, 7), **_bn("bn1", widths[0]), "relu.weight": (widths[0],)}
    n, cin = 0, widths[0]
    for s, (w, count) in enumerate(zip(widths, units, strict=True)):
        for u in range(count):
            stride = 2 if (u == 0 and s > 0) else 1
            p = f"body.{n}"
            lay[f"{p}.conv1.weight"] = (w, cin, 3, 3)
            lay.update(_bn(f"{p}.bn1", w))
            lay[f"{p}.conv2.weight"] = (w, w, 3, 3)
            lay.update(_bn(f"{p}.bn2", w))
            if stride != 1 or cin != w:
                lay[f"{p}.downsample.0.weight"] = (w, cin, 1, 1)
                lay.update(_bn(f"{p}.downsample.1", w))
            cin = w
            n += 1
    layers = generator_conv_layers(size, channel_multiplier, channel_max)
    shared_io = sorted({(ci, co) for i, (k, ci, co) in enumerate(layers) if i in tune and i in shared})
    s_in, s_out = shared_io[0] if shared_io else (channel_max, channel_max)
    z = hyper_dim

    def hyper(p: str) -> Layout:
        return {f"{p}.w1": (z, s_out * 9), f"{p}.b1": (s_out * 9,), f"{p}.w2": (z, s_in * z), f"{p}.b2": (s_in * z,)}

    lay.update(hyper("shared_weight_hypernet"))
    spatial_log = int(math.log2(input_size // 16))
    top = widths[3]
    for i, (k, ci, co) in enumerate(layers):
        if i not in tune:
            continue
        p = f"refinement_blocks.{i}"
        if i in shared:
            n_inner = max(spatial_log - 1, 0)
            lay.update(_conv_seq(p, [(hyper_inner_c, top)] + [(hyper_inner_c, hyper_inner_c)] * n_inner
                                 + [(z, hyper_inner_c)]))
            lay[f"{p}.linear.weight"] = (z, z)
            lay[f"{p}.linear.bias"] = (z,)
            lay.update(hyper(f"{p}.hypernet"))
            continue
        pools = spatial_log - 1 - (1 if (k == 3 and not separable) else 0)
        n_inner = max(pools - 1, 0)
        lay.update(_conv_seq(p, [(inner_c, top)] + [(inner_c, inner_c)] * n_inner + [(z, inner_c)]))
        if k == 1:
            lay[f"{p}.output.0.weight"] = (ci * co, z, 1, 1)
            lay[f"{p}.output.0.bias"] = (ci * co,)
        elif separable:
            q = f"{p}.output.0"
            lay.update({f"{q}.make_kernel_in.weight": (k * k * ci, z), f"{q}.make_kernel_in.bias": (k * k * ci,),
                        f"{q}.make_kernel_out.weight": (k * k * co, z), f"{q}.make_kernel_out.bias": (k * k * co,),
                        f"{q}.kernel_linear_in.weight": (ci, ci), f"{q}.kernel_linear_in.bias": (ci,),
                        f"{q}.kernel_linear_out.weight": (co, co), f"{q}.kernel_linear_out.bias": (co,)})
        else:
            lay[f"{p}.output.1.weight"] = (ci * co, z, 1, 1)
            lay[f"{p}.output.1.bias"] = (ci * co,)
    return lay


def prefixed(prefix: str, layout: Mapping[str, Shape]) -> Layout:
    return {f"{prefix}.{k}": v for k, v in layout.items()}


def check_layout(state: Mapping[str, object], layout: Mapping[str, Shape]) -> list[str]:
    """Differences between a state dict and a layout: missing keys, unexpected keys, wrong shapes."""
    problems = []
    for k in sorted(set(layout) - set(state)):
        problems.append(f"missing {k}")
    for k in sorted(set(state) - set(layout)):
        problems.append(f"unexpected {k}")
    for k in sorted(set(state) & set(layout)):
        shape = tuple(getattr(state[k], "shape", ()))
        if shape != tuple(layout[k]):
            problems.append(f"{k}: shape {shape}, expected {tuple(layout[k])}")
    return problems
