"""params.yaml → frozen dataclasses, one per stage.

Every key is checked: an unknown key, a wrong type or a value outside its range is a
:class:`ConfigError` that names the dotted key, so a typo never silently becomes a default
(the trap of ``cfg.get(key, default)``).

Field constraints live in ``field(metadata=...)`` through :func:`opt`:
``choices`` (allowed values), ``min``/``max`` (inclusive bounds). Nested sections are
dataclasses themselves. A stage's ``backend`` takes the names its record in
``facerecon.registry`` lists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facerecon import registry
from facerecon.errors import ConfigError


def opt(default: Any, *, choices: tuple | None = None, min: float | None = None,
        max: float | None = None, help: str = "") -> Any:
    """A dataclass field with a default and validation metadata."""
    meta = {"choices": choices, "min": min, "max": max, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class AlignParams:
    backend: str = opt("auto", help="auto: dlib's FFHQ alignment for the GAN invert backends (when dlib is "
                       "installed), mediapipe's otherwise")
    output_size: int = opt(256, min=32, max=1024, help="side of the aligned face crop (FFHQ-style)")
    transform_size: int = opt(1024, min=64, max=4096, help="FFHQ quad is first resampled to this size")
    min_detection_confidence: float = opt(0.5, min=0.05, max=1.0)
    all_faces: bool = opt(False, help="reconstruct every face in a photo, not only the largest")
    max_faces: int = opt(8, min=1, max=64)
    min_face_size: int = opt(24, min=8, max=4096, help="smallest face (pixels, box side) worth reconstructing")


@dataclass(frozen=True)
class InvertParams:
    backend: str = opt("landmarks")
    # thesis backends (facerecon/gan): checkpoints resolved through facerecon.weights
    generator: str = opt("stylegan2-ffhq-config-f.pt", help="StyleGAN2 (rosinality layout) checkpoint")
    hyperstyle_checkpoint: str = opt("hyperstyle_ffhq.pt")
    e4e_checkpoint: str = opt("e4e_ffhq_encode.pt")
    w_encoder_checkpoint: str = opt("faces_w_encoder.pt", help="HyperStyle's W encoder (its initial latent)")
    iterations: int = opt(0, min=0, max=50, help="HyperStyle refinement steps; 0 = from checkpoint opts")
    optimize_steps: int = opt(300, min=1, max=100000)
    optimize_lr: float = opt(0.05, min=1e-6, max=10.0)
    optimize_loss_size: int = opt(256, min=16, max=1024, help="optimize: image side the pixel loss is taken at")
    optimize_latent_reg: float = opt(0.0, min=0.0, max=100.0,
                                     help="optimize: weight of the pull towards the starting (average) latent")
    allow_download: bool = opt(False)


@dataclass(frozen=True)
class PoseSweepParams:
    backend: str = opt("reproject")
    alpha_min: int = opt(-7, min=-100, max=100, help="first α of the sweep (thesis: -7)")
    alpha_max: int = opt(6, min=-100, max=100, help="last α of the sweep (thesis: 6)")
    alpha_span_min: int = opt(-10, min=-100, max=100, help="α that means -90° yaw")
    alpha_span_max: int = opt(9, min=-100, max=100, help="α that means +90° yaw")
    image_size: int = opt(256, min=32, max=1024)
    direction: str = opt("pose.pt", help="InterfaceGAN pose boundary (interfacegan backend)")
    flip_direction: bool = opt(False, help="interfacegan: negate the direction (if it turns heads against "
                               "facerecon's yaw sign; the sweep log says so)")
    estimate_yaw: bool = opt(True, help="interfacegan: measure each view's yaw with the landmark estimator")
    batch_size: int = opt(2, min=1, max=64, help="interfacegan: views generated per generator pass")


@dataclass(frozen=True)
class DreamboothParams:
    backend: str = opt("skip")
    base_model: str = opt("realisticVisionV20.safetensors")
    mode: str = opt("lora", choices=("lora", "full"))
    prompt: str = opt("a photo of sks person")
    class_prompt: str = opt("a photo of a person")
    prior_preservation: bool = opt(False)
    num_class_images: int = opt(50, min=0, max=10000)
    steps: int = opt(400, min=1, max=100000)
    learning_rate: float = opt(1e-4, min=1e-8, max=1.0)
    lora_rank: int = opt(8, min=1, max=512)
    resolution: int = opt(512, min=32, max=2048)
    batch_size: int = opt(1, min=1, max=64)
    mixed_precision: str = opt("fp16", choices=("fp32", "fp16", "bf16"), help="CUDA only; CPU trains in fp32")
    gradient_checkpointing: bool = opt(True)
    allow_download: bool = opt(False)
    prior_loss_weight: float = opt(1.0, min=0.0, max=100.0, help="weight of the class-image loss")
    class_data_dir: str = opt("", help="class images for prior preservation (made there by the base model "
                              "when too few); empty = a cache folder per base model and class prompt")
    class_image_steps: int = opt(25, min=1, max=1000, help="sampling steps when making class images")
    single_file_config: str = opt("", help="folder of diffusers component configs for a single-file "
                                  "base_model/controlnet; empty = the shipped SD-1.5 configs")
    log_every: int = opt(25, min=1, max=100000, help="log the mean loss every this many steps")


@dataclass(frozen=True)
class ProfileParams:
    backend: str = opt("reproject")
    yaw_degrees: float = opt(90.0, min=10.0, max=90.0)
    image_size: int = opt(256, min=32, max=1024)
    controlnet: str = opt("control_v11p_sd15_openpose")
    num_samples: int = opt(4, min=1, max=64)
    steps: int = opt(30, min=1, max=1000)
    guidance_scale: float = opt(7.5, min=0.0, max=50.0)
    resolution: int = opt(512, min=32, max=2048)
    allow_download: bool = opt(False)
    scheduler: str = opt("unipc", choices=("unipc", "ddim", "pndm", "euler_a", "dpmpp"))
    controlnet_scale: float = opt(1.0, min=0.0, max=5.0, help="ControlNet conditioning scale")
    prompt_suffix: str = opt(", side profile view, head and shoulders portrait, plain background, "
                             "photorealistic, sharp focus", help="appended to the DreamBooth prompt")
    negative_prompt: str = opt("frontal view, looking at the camera, blurry, lowres, deformed, cartoon, drawing")
    draw_face: bool = opt(True, help="draw OpenPose's 70 face keypoints, not only the head/shoulder skeleton")
    scorer: str = opt("auto", choices=("auto", "heuristic"),
                      help="best-of-N check: auto = landmarks+yaw when a face is detected, else heuristic")


@dataclass(frozen=True)
class AeOptimizeParams:
    backend: str = opt("unsup3d")
    checkpoint: str = opt("ae_synth.pt", help="pretrained AE checkpoint (models/ or a path)")
    crop: float = opt(0.7, min=0.2, max=1.0, help="central fraction of the aligned 256 crop fed to the AE")
    steps: int = opt(60, min=0, max=100000, help="fine-tuning steps on this face's views")
    lr: float = opt(1e-4, min=1e-8, max=1.0)
    batch_size: int = opt(8, min=1, max=256, help="views per fine-tuning step (8 keeps a cold face under 30 s on 2 cores)")
    use_sweep: bool = opt(True, help="fine-tune on the 14 pose-sweep views")
    use_profiles: bool = opt(True, help="fine-tune on the ±90° profile views")
    perceptual: str = opt("auto", choices=("auto", "vgg16", "random_conv", "none"),
                          help="perceptual loss features: vgg16 needs weights; auto falls back")
    vgg16_weights: str = opt("vgg16.pth")
    lam_perc: float = opt(1.0, min=0.0, max=100.0)
    lam_flip: float = opt(0.5, min=0.0, max=100.0)
    depth_prior: float = opt(1.0, min=0.0, max=100.0,
                             help="weight of the invert stage's frontal depth as a shape prior while fine-tuning "
                                  "(0 = the thesis's loss alone)")
    anchor: str = opt("landmarks", choices=("landmarks", "ae"),
                      help="with a depth prior, which depth gives the face's broad shape: landmarks = the prior, "
                           "the AE adding its low-passed disagreement; ae = the AE, the prior adding its detail "
                           "finer than residual_sigma inside the landmark hull")
    output_size: int = opt(128, min=0, max=2048,
                           help="side of the face's depth map when a depth prior exists: the AE's part is upsampled, "
                                "the prior's detail kept (0 = the AE's size)")
    residual_sigma: float = opt(3.0, min=0.0, max=64.0,
                                help="with a depth prior, the face depth is the prior plus the AE's disagreement "
                                     "low-passed by this Gaussian (AE pixels); 0 = the AE's depth as it is")


@dataclass(frozen=True)
class CombineParams:
    enabled: bool = opt(True)
    strip_fraction: float = opt(0.25, min=0.0, max=0.5, help="outer strip width taken from each profile")
    blur_sigma: float = opt(2.0, min=0.0, max=50.0, help="Gaussian seam blur, in albedo pixels")


@dataclass(frozen=True)
class CorrectParams:
    enabled: bool = opt(True)
    layers: int = opt(17, min=3, max=1000, help="forehead depth slices, 0 = top")
    source_layer: int = opt(6, min=0, max=999, help="layer moved (thesis: 6)")
    target_layer: int = opt(0, min=0, max=999, help="towards this layer (thesis: 0)")
    strength: float = opt(1.0, min=0.0, max=1.0)


@dataclass(frozen=True)
class ExportParams:
    texture_size: int = opt(256, min=32, max=4096)
    mesh_resolution: int = opt(128, min=16, max=1024, help="depth grid side of the exported mesh")
    render_size: int = opt(384, min=32, max=4096)
    turntable_frames: int = opt(24, min=2, max=360)
    glb: bool = opt(True)
    photo_detail: float = opt(1.0, min=0.0, max=2.0,
                              help="add the photo's fine detail to the AE albedo texture (0 = AE albedo only)")
    likeness: str = opt("auto", choices=("auto", "on", "off"),
                        help="identity distance photo ↔ renders at 0°, ±30°, ±45° and the front render's landmark "
                             "error in result.json (dlib's ResNet); auto = when dlib and its models are installed")


# ----------------------------------------------------------------------- benchmark


@dataclass(frozen=True)
class AeModelParams:
    """Shape of the Unsup3D networks; shared by `pretrain` and `ae_optimize` (saved with checkpoints)."""

    image_size: int = opt(64, min=16, max=256)
    width: int = opt(16, min=4, max=256, help="base channel width (Unsup3D: 64; 16 = 4.3M parameters, "
                     "~1.3 s per batch-64 step on 2 CPU cores)")
    zdim: int = opt(256, min=8, max=1024)
    min_depth: float = opt(0.9, min=0.01, max=100.0)
    max_depth: float = opt(1.1, min=0.01, max=100.0)
    fov: float = opt(10.0, min=1.0, max=120.0)
    xyz_rotation_range: float = opt(60.0, min=0.0, max=180.0)
    xy_translation_range: float = opt(0.1, min=0.0, max=1.0)
    z_translation_range: float = opt(0.0, min=0.0, max=1.0)
    border_depth: float = opt(1.07, min=0.01, max=100.0, help="depth pushed to image borders (Unsup3D)")
    upsample: str = opt("resize", choices=("deconv", "resize"),
                        help="depth/albedo decoder upsampling: 'deconv' is Unsup3D's 4×4 stride-2 transposed "
                             "convolution, whose checkerboard pattern short CPU training does not train away "
                             "(normals amplify it); 'resize' (nearest ×2, then 3×3 conv) has none")
    norm_group_size: int = opt(4, min=0, max=64, help="channels per GroupNorm group (Unsup3D: 64 channels in "
                               "16 groups = 4); 0 = the old rule, min(16·mult, C) groups, which is one channel "
                               "per group (an InstanceNorm) at width ≤ 16")
    encoder_width: int = opt(32, min=0, max=256, help="base width of the light and viewpoint encoders (Unsup3D: "
                             "32); 0 = the old rule, width // 2")
    skips: str = opt("albedo", choices=("none", "albedo", "depth_albedo"),
                     help="additive encoder→decoder skip connections (U-Net style, no extra weights) in the "
                          "albedo (and depth) network; Unsup3D has none: its 256-number bottleneck learns "
                          "detail only after millions of images, which a CPU run never sees")


@dataclass(frozen=True)
class SynthParams:
    source: str = opt("synthetic", choices=("synthetic", "bfm2009", "bfm2017"))
    bfm_path: str = opt("", help="path to a Basel Face Model file for the bfm sources")
    n_train: int = opt(10000, min=1, max=10_000_000, help="10k: synth ≈ 2–4 min and ≥ 20 AE epochs in the "
                       "60-min pretraining budget on 2 CPU cores")
    n_val: int = opt(500, min=1, max=1_000_000)
    n_test: int = opt(1000, min=1, max=1_000_000)
    image_size: int = opt(64, min=16, max=512)
    max_yaw: float = opt(60.0, min=0.0, max=90.0)
    max_pitch: float = opt(15.0, min=0.0, max=90.0)
    max_roll: float = opt(5.0, min=0.0, max=90.0, help="in-plane head tilt range, degrees")
    max_translation: float = opt(0.008, min=0.0, max=0.05, help="x/y shift range (depth units; image "
                                 "half-width at depth 1 is tan(fov/2) ≈ 0.087)")
    fov: float = opt(10.0, min=1.0, max=120.0, help="camera field of view, degrees (Unsup3D: 10)")
    min_depth: float = opt(0.9, min=0.01, max=100.0, help="face depth range; background depth = max_depth")
    max_depth: float = opt(1.1, min=0.01, max=100.0)
    min_ambient: float = opt(0.25, min=0.0, max=1.0, help="Lambertian light ranges, inside Unsup3D's "
                             "model ranges (ambient, diffuse in [0, 1], direction (dx, dy, 1))")
    max_ambient: float = opt(0.65, min=0.0, max=1.0)
    min_diffuse: float = opt(0.35, min=0.0, max=1.0)
    max_diffuse: float = opt(0.75, min=0.0, max=1.0)
    max_light_xy: float = opt(0.8, min=0.0, max=1.0, help="|dx|, |dy| of the light direction")
    supersample: int = opt(2, min=1, max=4, help="images rendered at this multiple and box-filtered")
    workers: int = opt(1, min=1, max=64, help="render processes (the data do not depend on it)")
    seed: int = opt(0, min=0)
    out_dir: str = opt("data/synth")
    views_per_face: int = opt(4, min=1, max=64, help="train split only: each identity rendered at this many "
                              "random poses/lights, consecutive in the split (images k·V … k·V+V-1 are one "
                              "face), for multi-view pretraining; a divisor of 64; val/test (and the BFM sources) have one view each")


@dataclass(frozen=True)
class PretrainParams:
    dataset: str = opt("synth", choices=("synth", "celeba", "cfp", "hpid", "comsats", "folder"))
    dataset_path: str = opt("data/synth")
    epochs: int = opt(10, min=1, max=10000, help="the training length (resumable at each epoch end); 10 × 625 "
                      "batch-16 steps ≈ 85 min on one CPU thread (benchmarks/ae_convergence.py: still improving "
                      "at 40 min)")
    batch_size: int = opt(16, min=1, max=4096, help="Unsup3D: 64; 16 gives 4× the updates per CPU-minute")
    lr: float = opt(1e-3, min=1e-8, max=1.0, help="Adam; Unsup3D: 1e-4 (measured: 1e-3 learns fastest at "
                    "batch 16, 2e-3 collapses)")
    supervised: bool = opt(False, help="train depth with ground truth (the upper-bound variant): canonical "
                           "depth, viewpoint, view depth and its normals against the synthetic set's truth")
    multi_view: bool = opt(True, help="with a multi-view set (synth.views_per_face > 1) every image is "
                           "reconstructed from the canonical depth and albedo of another view of the same "
                           "face, so depth and viewpoint must agree across views; off: Unsup3D's single view")
    flip_augment: float = opt(0.5, min=0.0, max=1.0, help="probability of mirroring a training face (Unsup3D: "
                              "0.5); all views of one face together")
    zero_init_heads: bool = opt(True, help="start the depth, light and viewpoint outputs at zero: a flat face "
                                "seen frontally under a neutral light, instead of PyTorch's random init (a random "
                                "viewpoint per image that the warp must first unlearn)")
    face_mask: bool = opt(True, help="photometric losses only on the face's own pixels (the set's silhouette "
                          "masks). The background of a photo stays put when the head turns, but in the AE's "
                          "single depth surface it turns with the face; off: Unsup3D's whole-image loss")
    prior_shape: str = opt("ellipsoid", choices=("none", "ellipsoid"),
                           help="before training, fit the depth network to a generic convex face: a half "
                           "ellipsoid over the face oval of an aligned crop (GAN2Shape's initial shape), so the "
                           "warp sees relief from the first step; none: start flat")
    prior_steps: int = opt(300, min=0, help="steps of that fit (depth network only, a few seconds)")
    lam_depth_smooth: float = opt(0.0, min=0.0, help="weight of a second-difference smoothness term on the "
                                  "canonical depth (in depth-range units; removes the checkerboard that "
                                  "central-difference normals cannot see)")
    lam_pseudo_view: float = opt(1.0, min=0.0, help="weight of the pseudo-sample loss (GAN2Shape's idea, from the "
                                 "model's own canonical face): the current depth and albedo rendered at a random "
                                 "known viewpoint, which the viewpoint and light networks must recover; 0 = off")
    lam_pseudo_depth: float = opt(0.0, min=0.0, help="with the pseudo samples, weight of the depth network "
                                  "returning the canonical depth from the turned image (pose-invariant depth)")
    max_minutes: float = opt(120.0, min=0.0, help="a guard: stop (resumably) once the run's training time (summed over resumes) passes this; 0 = no limit")
    perceptual: str = opt("auto", choices=("auto", "vgg16", "random_conv", "none"),
                          help="perceptual loss features, as ae_optimize.perceptual")
    out: str = opt("models/ae_synth.pt")
    seed: int = opt(0, min=0)
    supervised_out: str = opt("models/ae_synth_supervised.pt",
                              help="the benchmark's upper bound: the same networks trained with ground-truth depth")
    supervised_minutes: float = opt(8.0, min=0.0, help="wall-time budget of the supervised run; 0 = do not train it")


@dataclass(frozen=True)
class LikenessParams:
    """The likeness benchmark (dvc stage `likeness`): real photos → 3D faces → dlib identity distance."""

    photos: str = opt("data/photos", help="folder of real photos; each is scored in 6 versions (as it is, "
                      "mirrored, 160 px, turned 12°, grey, JPEG q20)")
    configs: list = opt(["default:", "dlib align: align.backend=dlib", "ae anchor: ae_optimize.anchor=ae"],
                        help="one row per entry, 'label: key=value ...' (the overrides of that row)")
    overrides: list = opt([], help="applied to every row after its own (e.g. smaller per-face settings)")
    out_dir: str = opt("reports", help="<out_dir>/likeness/ gets likeness.md, per_photo.parquet, likeness.png")


@dataclass(frozen=True)
class EvaluateParams:
    n_faces: int = opt(1000, min=1)
    n_subgroups: int = opt(10, min=1)
    subgroup_size: int = opt(100, min=1)
    repeats: int = opt(10, min=1)
    variants: list = opt(list(registry.VARIANT_NAMES), help="rows of the benchmark table "
                         "(facerecon/registry.py), in this order")
    product_faces: int = opt(50, min=10, help="the `product` variant (the whole offline pipeline, about 10 s a face with 2 processes) "
                             "runs on the first this many test faces; its table compares every variant on them")
    finetune_steps: int = opt(2, min=0, help="per-face fine-tuning steps of the pipeline variants")
    finetune_batch_size: int = opt(4, min=1, max=64, help="views per fine-tuning step of the pipeline variants")
    workers: int = opt(2, min=1, max=256, help="processes for the per-face pipeline variants (results do not "
                       "depend on it)")
    seed: int = opt(0, min=0)
    out_dir: str = opt("reports")
    dataset_path: str = opt("data/synth", help="synthetic set root; faces 0..n_faces-1 of its test split are scored")
    batch_size: int = opt(100, min=1, max=4096, help="images per predict_depth call")


IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "MPO")


@dataclass(frozen=True)
class InputParams:
    """Limits every input photo is checked against before it is decoded (facerecon.io.images)."""

    max_bytes: int = opt(50_000_000, min=1, help="larger files are rejected unread")
    max_pixels: int = opt(64_000_000, min=1, max=1_000_000_000, help="width x height; guards against decompression bombs")
    min_side: int = opt(32, min=1, max=4096, help="images with a shorter side are rejected")
    formats: list = opt(IMAGE_FORMATS, help=f"accepted decoders, a subset of {', '.join(IMAGE_FORMATS)}")


@dataclass(frozen=True)
class CacheParams:
    dir: str = opt(".facerecon/cache", help="Prefect result store (local path or s3://)")
    enabled: bool = opt(True)


@dataclass(frozen=True)
class Params:
    seed: int = opt(0, min=0)
    device: str = opt("auto", choices=("auto", "cpu", "cuda"))
    align: AlignParams = field(default_factory=AlignParams)
    invert: InvertParams = field(default_factory=InvertParams)
    pose_sweep: PoseSweepParams = field(default_factory=PoseSweepParams)
    dreambooth: DreamboothParams = field(default_factory=DreamboothParams)
    profile: ProfileParams = field(default_factory=ProfileParams)
    ae_optimize: AeOptimizeParams = field(default_factory=AeOptimizeParams)
    combine: CombineParams = field(default_factory=CombineParams)
    correct: CorrectParams = field(default_factory=CorrectParams)
    export: ExportParams = field(default_factory=ExportParams)
    ae_model: AeModelParams = field(default_factory=AeModelParams)
    synth: SynthParams = field(default_factory=SynthParams)
    pretrain: PretrainParams = field(default_factory=PretrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    likeness: LikenessParams = field(default_factory=LikenessParams)
    input: InputParams = field(default_factory=InputParams)
    cache: CacheParams = field(default_factory=CacheParams)


# --------------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads "5e-4" (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool):  # YAML 1.1 reads a bare on/off/yes/no as a bool
            value = "on" if value else "off"
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(value)
    return value


def _check_range(value: Any, meta: typing.Mapping, key: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise ConfigError(f"{key}: {value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: {value!r} is above the maximum {hi}")


def build(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key, type and range."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'params'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(f"{key}: unknown key (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, value, prefix=f"{key}.")
            continue
        if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        value = _coerce(value, tp, key)
        if tp is not list:
            _check_range(value, fields[name].metadata, key)
        if name == "backend" and (known := registry.backend_names(prefix.rstrip("."))):
            _check_range(value, {"choices": known}, key)  # the stage registry names the backends
        kwargs[name] = value
    for name in fields:  # absent sections are built too, so their lists become tuples as well
        if name not in kwargs and dataclasses.is_dataclass(hints[name]):
            kwargs[name] = build(hints[name], {}, prefix=f"{prefix}{name}.")
    obj = cls(**kwargs)
    # lists: frozen dataclasses must stay hashable -> store tuples
    for name in fields:
        if hints[name] is list and isinstance(getattr(obj, name), list):
            object.__setattr__(obj, name, tuple(getattr(obj, name)))
    _cross_checks(obj, prefix)
    return obj


def _cross_checks(obj: Any, prefix: str) -> None:
    if isinstance(obj, InputParams):
        bad = [f for f in obj.formats if f not in IMAGE_FORMATS]
        if bad or not obj.formats:
            raise ConfigError(f"{prefix}formats: {bad[0] if bad else '[]'!r} is not accepted; "
                              f"choose from {', '.join(IMAGE_FORMATS)}")
    if isinstance(obj, PoseSweepParams):
        if not obj.alpha_span_min <= obj.alpha_min < obj.alpha_max <= obj.alpha_span_max:
            raise ConfigError(
                f"{prefix}alpha_min/alpha_max: need alpha_span_min <= alpha_min < alpha_max <= alpha_span_max, "
                f"got {obj.alpha_span_min} <= {obj.alpha_min} < {obj.alpha_max} <= {obj.alpha_span_max}")
    if isinstance(obj, CorrectParams):
        if obj.source_layer >= obj.layers or obj.target_layer >= obj.layers:
            raise ConfigError(f"{prefix}source_layer/target_layer: must be below layers={obj.layers}")
    if isinstance(obj, AeModelParams) and obj.min_depth >= obj.max_depth:
        raise ConfigError(f"{prefix}min_depth: must be below max_depth ({obj.min_depth} >= {obj.max_depth})")
    if isinstance(obj, EvaluateParams):
        need = obj.n_subgroups * obj.subgroup_size
        if need > obj.n_faces:
            raise ConfigError(
                f"{prefix}n_subgroups: {obj.n_subgroups} subgroups × {obj.subgroup_size} faces need "
                f"{need} faces, but n_faces is {obj.n_faces}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``stage.key=value`` (value parsed as YAML) → (path, value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected stage.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r} ({exc.__class__.__name__})") from None
    return path, value


def apply_overrides(data: dict, overrides: typing.Iterable[str]) -> dict:
    data = json.loads(json.dumps(data or {}))  # deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path)}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def labelled_overrides(text: str, key: str = "--config") -> tuple[str, list[str]]:
    """'label: a.b=1 c.d=x' → ('label', ['a.b=1', 'c.d=x']); the label may not contain ':'."""
    label, _, rest = text.partition(":")
    if not label.strip():
        raise ConfigError(f"{key}: {text!r} needs a label, as 'label: key=value ...'")
    return label.strip(), rest.split()


def with_overrides(params: Params, overrides: typing.Iterable[str]) -> Params:
    """``params`` with ``--set``-style overrides applied (checked like params.yaml)."""
    return build(Params, apply_overrides(to_dict(params), overrides))


def load_params(path: str | Path | None = None, overrides: typing.Iterable[str] = ()) -> Params:
    """Load params.yaml (or defaults when ``path`` is None) and apply ``--set`` overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"params file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"params file {path} is not valid YAML: {exc}") from None
    data = apply_overrides(data, overrides)
    return build(Params, data)


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj


def section_hash(section: Any) -> str:
    """Stable sha256 of one params section (used in cache keys and result.json)."""
    blob = json.dumps(to_dict(section), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
