"""The `product` variant: the default offline pipeline, as `facerecon run` runs it, scored on renders.

Each 64-pixel test render is upscaled to a photo (``photo_size``), then goes through the same
stage functions the CLI runs (align → invert → pose_sweep → dreambooth → profile → ae_optimize →
correct; ``combine`` and ``export`` only touch texture and files). The result is the corrected
**frontal** depth in the AE's crop of the aligned face. To score it like every other variant it is
put back into the test image's own view, undoing each step of the pipeline's geometry:

1. crop pixels → aligned pixels (the ``ae_optimize.crop`` centre crop), relief in the same pixels;
2. the frontal face turned back by the head rotation the pose sweep removed (about the landmark
   centroid, whose depth is the face's mean surface depth);
3. aligned pixels → photo pixels (the inverse of the FFHQ quad's affine) → test pixels;
4. the posed surface meshed and rasterized by the project camera → view depth per pixel.

A render the pipeline rejects (no face found) gets a flat map, as in the ``landmarks`` variant.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facerecon.config import Params
from facerecon.errors import NoFaceError
from facerecon.geometry.camera import focal_from_fov, intrinsics, unproject
from facerecon.geometry.mesh import grid_faces, mask_faces
from facerecon.render.rasterizer import rasterize

log = logging.getLogger(__name__)


def crop_to_aligned(size: int, aligned_size: int, crop: float) -> tuple[float, float]:
    """(scale, offset): aligned pixel = offset + scale · crop pixel, for the AE's centre crop."""
    from facerecon.stages.ae_optimize import center_crop

    side = center_crop(np.zeros((aligned_size, aligned_size)), crop).shape[0]
    return side / size, float((aligned_size - side) // 2) + 0.5 * (side / size) - 0.5


def posed_surface(depth: np.ndarray, rotation: np.ndarray, centre_xy: np.ndarray, face: np.ndarray, *,
                  aligned_size: int, crop: float, fov: float) -> np.ndarray:
    """(S·S, 3) points (x, y in aligned pixels, z in the same pixels) of the frontal crop depth, turned
    back into the photo's head pose. ``rotation`` is the pose sweep's ``head_rotation``
    (frontal = (posed − c) · R + c), ``face`` the crop's landmark hull (the centroid's depth)."""
    s = depth.shape[0]
    scale, offset = crop_to_aligned(s, aligned_size, crop)
    v, u = np.mgrid[0:s, 0:s].astype(np.float64)
    z = (depth.astype(np.float64) - 1.0) * focal_from_fov(fov, s) * scale
    pts = np.stack([offset + scale * u, offset + scale * v, z], -1).reshape(-1, 3)
    cz = float(z[face].mean()) if face.any() else float(z.mean())
    c = np.array([centre_xy[0], centre_xy[1], cz])
    return (pts - c) @ np.asarray(rotation, np.float64).T + c


def to_view_depth(points_aligned: np.ndarray, keep: np.ndarray, affine: np.ndarray, photo_to_test: float,
                  size: int, fov: float, far: float) -> Tensor:
    """View depth (size, size) of the posed surface (aligned-pixel points, a grid of ``keep``) in the
    test image: aligned → photo by the inverse of the 2×3 ``affine``, photo → test by a scale."""
    a, t = affine[:, :2], affine[:, 2]
    scale = float(np.sqrt(abs(np.linalg.det(a))))
    xy = (points_aligned[:, :2] - t) @ np.linalg.inv(a).T * photo_to_test
    z = points_aligned[:, 2] / scale * photo_to_test
    d = 1.0 + z / focal_from_fov(fov, size)
    K = intrinsics(fov, size, size, dtype=torch.float64)
    verts = unproject(torch.from_numpy(xy)[None], torch.from_numpy(d)[None], K)
    g = int(round(np.sqrt(len(points_aligned))))
    faces = mask_faces(grid_faces(g, g), torch.from_numpy(keep.reshape(-1)))
    frag = rasterize(verts.float(), faces, (size, size), K=K.float())
    return torch.where(frag.mask[0], frag.zbuf[0], torch.tensor(far)).clamp(max=far)


class ProductPredictor:
    """``facerecon run``'s per-face stages on each render, their depth back in the render's view."""

    def __init__(self, params: Params, far: float, photo_size: int = 256, work: str | Path | None = None) -> None:
        self.params, self.far, self.photo_size = params, far, photo_size
        self._tmp = None if work else tempfile.TemporaryDirectory(prefix="facerecon-product-")
        self.work = Path(work or self._tmp.name)
        self.reconstructed = self.faces = 0

    def depth(self, image: Tensor) -> Tensor:
        from facerecon.pipeline import face_stages, sha256_bytes
        from facerecon.registry import stage
        from facerecon.stages.align import face_dirs
        from facerecon.stages.workspace import StageJob, load_json, load_npy

        s, params = image.shape[-1], self.params
        self.faces += 1
        big = torch.nn.functional.interpolate(image[None], size=(self.photo_size,) * 2, mode="bicubic",
                                              align_corners=False)[0].clamp(0, 1)
        rgb = np.ascontiguousarray((big.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
        sha = sha256_bytes(rgb.tobytes())
        root = self.work / hashlib.sha1(sha.encode()).hexdigest()[:16]
        photo_job = StageJob(params, root, rgb=rgb, photo_sha=sha)
        try:
            aligned = stage("align").run(photo_job, {})
        except NoFaceError:
            return torch.ones(s, s)
        face_dir = face_dirs(aligned)[0]
        out = face_stages(aligned, photo_job.for_face(face_dir), until="correct")  # export: not scored
        inv, ae, cor = out["invert"], out["ae_optimize"], out["correct"]
        depth = load_npy(cor.path / "depth.npy")
        hull = load_npy(ae.path / "face_mask.npy") > 0.5
        head = load_npy(ae.path / "mask.npy") > 0.5
        info = load_json(inv.path / "inverted.json")["info"]
        rotation = np.asarray(info.get("head_rotation", np.eye(3)), np.float64)
        landmarks = load_npy(face_dir / "landmarks.npy").astype(np.float64)
        quad = np.asarray(load_json(face_dir / "face.json")["meta"]["quad"], np.float64)
        from facerecon.align import quad_affine

        pts = posed_surface(depth, rotation, landmarks[:, :2].mean(0), hull, aligned_size=params.align.output_size,
                            crop=params.ae_optimize.crop, fov=params.ae_model.fov)
        view = to_view_depth(pts, head, quad_affine(quad, params.align.output_size), s / self.photo_size, s,
                             params.ae_model.fov, self.far)
        self.reconstructed += 1
        return view.float()

    def __call__(self, images: Tensor) -> Tensor:
        return torch.stack([self.depth(images[i]) for i in range(images.shape[0])])


def _product_chunk(job: tuple[Params, float, Tensor]) -> Tensor:
    params, far, images = job
    torch.set_num_threads(1)
    return ProductPredictor(params, far)(images)


def product_depths(params: Params, images: Tensor, far: float, *, workers: int = 1, chunk: int = 4,
                   on_chunk=None) -> Tensor:
    """View depth (N, S, S) of every image under the product pipeline, faces spread over
    ``workers`` processes (the result does not depend on it)."""
    from facerecon.bench.variants import map_chunks

    jobs = [(params, far, images[i:i + chunk]) for i in range(0, images.shape[0], chunk)]
    return torch.cat(map_chunks(_product_chunk, jobs, workers=workers, on_chunk=on_chunk,
                                size=lambda job: job[2].shape[0]))
