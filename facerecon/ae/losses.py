"""Unsup3D's training losses: confidence-weighted L1 and perceptual reconstruction losses.

The perceptual loss compares ``relu3_3`` features of VGG16 (ImageNet weights) as Unsup3D does.
Those weights cannot be downloaded here, so the features come from one of:

* ``vgg16`` — the user's torchvision VGG16 file (``vgg16-397923af.pth`` or a safetensors copy;
  only ``features.0``–``features.14`` are read), resolved like every other weight file;
* ``random_conv`` — the same layer layout at a quarter of the channels (16/32/64), with fixed
  random He-initialised weights (seed 0). Random deep conv features are a known usable
  perceptual metric (they still compare local structure at several scales); a quarter width
  costs ~1/12 of VGG16's FLOPs, which is what makes it affordable on a CPU (full VGG16 at 64 px
  is ~9 s of a 10 s width-32 training step on 2 cores). The benchmark measures it against the
  L1-only loss (``none``);
* ``none`` — L1 only.

``auto`` (the default) is ``vgg16`` when the file is found, else ``random_conv`` with a logged
note. The choice is recorded with every checkpoint and result.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerecon.ae.model import Decomposition
from facerecon.errors import CheckpointError, MissingWeightsError

log = logging.getLogger(__name__)
EPS = 1e-7
# VGG16 `features` up to relu3_3: (index in torchvision's Sequential, in, out); pools at 4 and 9
_VGG_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256))
_POOL_AFTER = {2, 7}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def photometric_loss(a: Tensor, b: Tensor, mask: Tensor | None = None, sigma: Tensor | None = None) -> Tensor:
    """Unsup3D's L1 with a per-pixel Laplacian confidence: |a-b|·√2/σ + log σ, masked mean."""
    loss = (a - b).abs()
    if sigma is not None:
        loss = loss * 2 ** 0.5 / (sigma + EPS) + (sigma + EPS).log()
    if mask is None:
        return loss.mean()
    mask = mask.expand_as(loss)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


class VggFeatures(nn.Module):
    """VGG16 ``features`` layers 0–15 (through relu3_3), frozen."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        def ch(c: int) -> int:
            return c if c == 3 else max(int(c * scale), 4)

        self.convs = nn.ModuleDict({str(i): nn.Conv2d(ch(cin), ch(cout), 3, 1, 1) for i, cin, cout in _VGG_CONVS})
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, x11: Tensor) -> Tensor:
        h = ((x11 + 1) / 2 - self.mean) / self.std
        for i, _, _ in _VGG_CONVS:
            h = F.relu(self.convs[str(i)](h))
            if i in _POOL_AFTER:
                h = F.max_pool2d(h, 2)
        return h

    @classmethod
    def random(cls, seed: int = 0, scale: float = 0.25) -> VggFeatures:
        net = cls(scale)
        g = torch.Generator().manual_seed(seed)
        for conv in net.convs.values():
            fan_in = conv.in_channels * 9
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                conv.bias.zero_()
        return net

    @classmethod
    def from_file(cls, path: str | Path) -> VggFeatures:
        """Load torchvision-layout VGG16 weights (``features.N.weight``/``bias``); extra keys ignored."""
        path = Path(path)
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise CheckpointError(f"{path}: not a readable VGG16 weight file ({exc.__class__.__name__}: {exc})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        net = cls()
        for i, cin, cout in _VGG_CONVS:
            for part, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
                key = f"features.{i}.{part}"
                t = state.get(key) if isinstance(state, dict) else None
                if not isinstance(t, Tensor) or tuple(t.shape) != shape:
                    got = "missing" if not isinstance(t, Tensor) else f"shape {tuple(t.shape)}"
                    raise CheckpointError(f"{path}: {key} is {got}, a torchvision VGG16 has {shape}")
                with torch.no_grad():
                    getattr(net.convs[str(i)], part).copy_(t.float())
        return net


def perceptual_features(kind: str, weights_name: str) -> tuple[VggFeatures | None, str]:
    """(feature net or None, the kind actually used) for ``ae_optimize.perceptual``-style choices."""
    if kind == "none":
        return None, "none"
    if kind in ("auto", "vgg16"):
        from facerecon import weights

        try:
            found = weights.resolve(weights_name, key="ae_optimize.vgg16_weights",
                                    how_to_get="Place torchvision's ImageNet VGG16 file (vgg16-397923af.pth) there.")
            return VggFeatures.from_file(found.path), "vgg16"
        except MissingWeightsError:
            if kind == "vgg16":
                raise
            log.info("VGG16 weights not found: the perceptual loss uses fixed random conv features")
    return VggFeatures.random(0), "random_conv"


def perceptual_loss(feat_a: Tensor, feat_b: Tensor, mask: Tensor | None = None, sigma: Tensor | None = None) -> Tensor:
    """Unsup3D's relu3_3 feature loss with a Gaussian confidence σ: (fa-fb)²/(2σ²) + log σ."""
    loss = (feat_a - feat_b) ** 2
    if sigma is not None:
        loss = loss / (2 * sigma ** 2 + EPS) + (sigma + EPS).log()
    if mask is None:
        return loss.mean()
    h, w = loss.shape[-2:]
    m = F.avg_pool2d(mask, kernel_size=(mask.shape[-2] // h, mask.shape[-1] // w)).expand_as(loss)
    return (loss * m).sum() / m.sum().clamp_min(1e-6)


def reconstruction_loss(dec: Decomposition, images01: Tensor, features: VggFeatures | None, *,
                        lam_perc: float, lam_flip: float,
                        face_mask: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """Unsup3D's total: L1 + λ_flip·L1_flip + λ_perc·(perc + λ_flip·perc_flip).

    ``face_mask`` (B, H, W), 1 on the input's face: the losses count only those pixels.
    """
    b = dec.batch
    x = images01 * 2 - 1
    m = dec.recon_mask[:b]
    if face_mask is not None:
        m = m * face_mask.to(m.dtype).unsqueeze(1)
    l1 = photometric_loss(dec.recon_image[:b], x, m, dec.conf_l1[:, :1])
    l1_flip = photometric_loss(dec.recon_image[b:], x, m, dec.conf_l1[:, 1:])
    total = l1 + lam_flip * l1_flip
    parts = {"l1": float(l1.detach()), "l1_flip": float(l1_flip.detach())}
    if features is not None and lam_perc > 0:
        with torch.no_grad():  # the target's features need no gradient: one pass, no backward
            f_target = features(x)
        f_recon, f_flip = features(dec.recon_image).chunk(2, 0)
        perc = perceptual_loss(f_recon, f_target, m, dec.conf_perc[:, :1])
        perc_flip = perceptual_loss(f_flip, f_target, m, dec.conf_perc[:, 1:])
        total = total + lam_perc * (perc + lam_flip * perc_flip)
        parts.update(perc=float(perc.detach()), perc_flip=float(perc_flip.detach()))
    parts["total"] = float(total.detach())
    return total, parts


def depth_smoothness_loss(canon_depth: Tensor, depth_span: float) -> Tensor:
    """Mean |second difference| of the canonical depth along rows and columns, in depth-range units.

    A second difference is zero on planes and small on a face's curvature but large on a period-2
    checkerboard, which central-difference normals (and so the photometric loss) do not see.
    """
    d = canon_depth[..., 2:-2]  # the fixed border columns are not the network's
    dxx = d[..., 2:] - 2 * d[..., 1:-1] + d[..., :-2]
    dyy = d[..., 2:, :] - 2 * d[..., 1:-1, :] + d[..., :-2, :]
    return (dxx.abs().mean() + dyy.abs().mean()) / max(depth_span, 1e-6)


def _masked_mean(x: Tensor, m: Tensor) -> Tensor:
    return (x * m).sum() / m.sum().clamp_min(1.0)


def depth_supervision_loss(dec: Decomposition, truth: dict[str, Tensor], model_params) -> tuple[Tensor, dict[str, float]]:
    """The `supervised` upper bound's loss: every quantity the scored depth is made of, against truth.

    ``truth`` holds ``depth``/``mask`` (view depth and face mask), ``canon_depth`` (frontal depth,
    ``max_depth`` off the face) and ``view`` (B, 6). Terms, each O(1) at the start: canonical depth
    L1 on the true face, viewpoint L1 (radians / depth units), view depth L1 and the mean angle
    error of view normals on the visible face, depth terms in units of the depth range.
    """
    from facerecon.geometry.mesh import normals_from_depth

    b, mp = dec.batch, model_params
    span = max(mp.max_depth - mp.min_depth, 1e-6)
    canon_mask = (truth["canon_depth"] < mp.max_depth - 1e-3).float()
    canon = _masked_mean((dec.canon_depth[:b] - truth["canon_depth"]).abs(), canon_mask) / span
    view = (dec.view[:b, :5] - truth["view"][:, :5]).abs().mean() * 10
    m = truth["mask"] * dec.recon_mask[:b, 0]
    depth = _masked_mean((dec.recon_depth[:b] - truth["depth"]).abs(), m) / span
    n_pred = normals_from_depth(dec.recon_depth[:b], mp.fov)
    n_true = normals_from_depth(truth["depth"], mp.fov)
    normal = _masked_mean(1 - (n_pred * n_true).sum(-1), m)
    total = canon + view + depth + normal
    return total, {"sup_canon": float(canon.detach()), "sup_view": float(view.detach()),
                   "sup_depth": float(depth.detach()), "sup_normal": float(normal.detach())}


# pseudo samples' viewpoints, as fractions of the model's ranges (raw view units): yaw over most of the
# rotation range, pitch a quarter of it and roll a twelfth (a turned head, as photos and the synthetic set
# have them), and small shifts
PSEUDO_VIEW_SPREAD = (0.25, 0.9, 1 / 12, 0.1, 0.1, 0.0)


def pseudo_sample_loss(nets, model_params, dec: Decomposition, rng, *,
                       lam_depth: float = 0.0) -> tuple[Tensor, dict[str, float]]:
    """GAN2Shape's pseudo samples, built from the model itself: each face's current canonical depth and
    albedo are rendered (no gradient) under a random known viewpoint and another face's light, and the
    viewpoint and light networks must recover them (``lam_depth`` > 0: the depth network must also
    return the canonical depth from the turned image).

    The photometric loss alone gives the viewpoint network a weak and easily collapsed signal (a face
    explained frontally with a symmetric generic depth); here every step tells it what a known turn
    looks like. The targets are exact only as far as the canonical face is frontal, but a viewpoint
    network that is off by a constant or a scale sees the pseudo samples off by the same, so the only
    fixed point is the true viewpoint. Returns (loss, parts)."""
    from facerecon.ae.model import depth_from_raw, render

    b, mp = dec.batch, model_params
    with torch.no_grad():
        spread = torch.tensor(PSEUDO_VIEW_SPREAD, dtype=dec.view.dtype, device=dec.view.device)
        raw_view = torch.from_numpy(rng.uniform(-1.0, 1.0, (b, 6))).to(spread) * spread
        view = torch.cat([raw_view[:, :3] * math.radians(mp.xyz_rotation_range),
                          raw_view[:, 3:5] * mp.xy_translation_range, raw_view[:, 5:] * mp.z_translation_range], 1)
        light = dec.light[:b][torch.from_numpy(rng.permutation(b)).to(dec.view.device)]
        raw_light = torch.cat([(light[:, :2] - 0.5) * 2, light[:, 2:]], 1)
        depth = dec.canon_depth[:b]
        image = render(mp, depth, dec.canon_albedo[:b], light, view)["recon_image"].clamp(-1, 1)
    view_err = F.smooth_l1_loss(nets.view(image), raw_view, beta=0.05)
    light_err = F.smooth_l1_loss(nets.light(image), raw_light, beta=0.05)
    total = view_err + light_err
    parts = {"pseudo_view": float(view_err.detach()), "pseudo_light": float(light_err.detach())}
    if lam_depth > 0:
        span = max(mp.max_depth - mp.min_depth, 1e-6)
        d = depth_from_raw(nets.depth(image), mp)[..., 2:-2]
        depth_err = (d - depth[..., 2:-2]).abs().mean() / span
        total = total + lam_depth * depth_err
        parts["pseudo_depth"] = float(depth_err.detach())
    return total, parts
