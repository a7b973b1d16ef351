"""The face's deliverables: textured mesh (OBJ/MTL/PNG, GLB), depth/normal maps, renders, turntable.

Input everywhere is the canonical result of the pipeline: depth (H, W) in project depth units,
albedo (Ha, Wa, 3) float in [0, 1] covering the same field of view (any resolution), mask
(H, W) of the face, and the camera's fov. Pure functions return arrays; the ``write_*``
functions do the file I/O, each file through ``facerecon.io.atomic`` so a reader never sees half
a file.

Exported mesh frame: what standard viewers (Blender's glTF importer, three.js, MeshLab) expect —
y up, z toward the viewer, centred on the face (the centroid of its vertices), in the project's
depth units (the face is ≈ 0.17 units wide at fov 10°). That is the camera frame turned 180°
about x, a proper rotation, so the grid's triangle order (camera-facing, see
``facerecon.geometry.mesh``) is counter-clockwise seen from the front.

Texture coordinates: the depth grid's corners sit on the albedo's corner *pixel centres*, so a
vertex at albedo pixel x gets u = (x + 0.5) / Wa (likewise v); glTF keeps v downward (row 0 at
v = 0), OBJ stores 1 − v.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt, gaussian_filter

from facerecon.geometry.camera import intrinsics, view_from_yaw, view_transform
from facerecon.geometry.mesh import (
    depth_to_points,
    grid_faces,
    grid_uv,
    mask_faces,
    normals_from_depth,
    vertex_normals,
)
from facerecon.io.atomic import atomic_save, atomic_write_bytes, atomic_write_text
from facerecon.render.rasterizer import rasterize
from facerecon.render.shading import interpolate, sample_texture, shade

# renders: light from the upper left in front of the face (camera frame: x right, y down, z forward;
# the vector points from the surface toward the light)
DEFAULT_LIGHT = {"direction": (-0.35, -0.45, -1.0), "ambient": 0.45, "diffuse": 0.6}
VIEW_YAWS = {"front": 0.0, "45": 45.0, "left90": -90.0, "right90": 90.0}


@dataclass
class Mesh:
    """A triangle mesh in the export frame (module doc)."""

    vertices: np.ndarray  # (N, 3) float32
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    uv: np.ndarray  # (N, 2) float32 texture coordinates, v downward (glTF convention)
    normals: np.ndarray  # (N, 3) float32 unit vertex normals


# ----------------------------------------------------------------------------- pure helpers


def _fill_outside(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Depth with every pixel outside ``mask`` set to its nearest masked pixel's depth.

    Upsampling then blends only face depths at the outline instead of pulling the rim toward
    whatever the background holds (the AE's far plane, zeros).
    """
    if mask.all() or not mask.any():
        return depth
    idx = distance_transform_edt(~mask, return_distances=False, return_indices=True)
    return depth[idx[0], idx[1]]


def _as_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask; float masks (soft, confidence-like) are thresholded at 0.5."""
    if mask is None:
        return np.ones(shape, bool)
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"mask {m.shape} and depth {tuple(shape)} must have the same shape")
    return m > 0.5 if np.issubdtype(m.dtype, np.floating) else m.astype(bool)


def _resample(depth: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Depth and mask on a grid of ``size`` covering the same field (corners on corners)."""
    depth = np.asarray(depth, np.float64)
    mask = _as_mask(mask, depth.shape)
    if depth.shape == tuple(size):
        return depth, mask
    d = torch.from_numpy(_fill_outside(depth, mask))[None, None]
    # a slightly blurred mask thresholded after upsampling gives a smooth outline instead of the
    # source grid's staircase (which turns into a saw-tooth rim in side views)
    soft = gaussian_filter(mask.astype(np.float64), 1.0) if min(size) > min(depth.shape) else mask.astype(np.float64)
    m = torch.from_numpy(soft)[None, None]
    d = F.interpolate(d, size=size, mode="bilinear", align_corners=True)[0, 0].numpy()
    m = F.interpolate(m, size=size, mode="bilinear", align_corners=True)[0, 0].numpy() > 0.5
    return d, m


def _grid_size(shape: tuple[int, int], resolution: int) -> tuple[int, int]:
    h, w = shape
    if h >= w:
        return resolution, max(2, round(resolution * w / h))
    return max(2, round(resolution * h / w)), resolution


def mesh_from_depth(depth: np.ndarray, mask: np.ndarray | None, fov: float, resolution: int | None = None) -> Mesh:
    """Triangle mesh of the masked depth grid, resampled so its longer side has ``resolution`` vertices.

    Vertices off every kept face are dropped. Raises ValueError if the mask leaves no face.
    """
    depth = np.asarray(depth, np.float64)
    size = _grid_size(depth.shape, resolution) if resolution else depth.shape
    d, m = _resample(depth, mask, size)
    H, W = size
    pts = depth_to_points(torch.from_numpy(d)[None], fov)[0]
    faces = mask_faces(grid_faces(H, W), torch.from_numpy(m))
    if len(faces) == 0:
        raise ValueError("mesh_from_depth: the mask leaves no triangle (empty or one-pixel-wide mask)")
    used = torch.unique(faces)
    remap = torch.full((H * W,), -1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    faces = remap[faces]
    pts = pts[used]
    normals = vertex_normals(pts[None], faces)[0]
    flip = pts.new_tensor([1.0, -1.0, -1.0])  # camera frame → y up, z toward the viewer
    verts = pts * flip
    verts = verts - verts.mean(0)
    uv = grid_uv(H, W, dtype=torch.float64)[used]
    return Mesh(vertices=verts.numpy().astype(np.float32), faces=faces.numpy().astype(np.int64),
                uv=uv.numpy().astype(np.float32), normals=(normals * flip).numpy().astype(np.float32))


def _texture_uv(uv: np.ndarray, tex_hw: tuple[int, int]) -> np.ndarray:
    """Grid uv (corner pixel centres = 0 / 1) → texture-space uv of a texture with that many texels."""
    h, w = tex_hw
    return np.stack([(uv[:, 0] * (w - 1) + 0.5) / w, (uv[:, 1] * (h - 1) + 0.5) / h], -1).astype(np.float32)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _albedo_image(albedo: np.ndarray, texture_size: int | None) -> np.ndarray:
    """uint8 (T, T, 3) texture image (resized with Lanczos when ``texture_size`` is given)."""
    from PIL import Image

    img = _to_uint8(albedo)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    img = img[..., :3]
    if texture_size and img.shape[:2] != (texture_size, texture_size):
        img = np.asarray(Image.fromarray(img).resize((texture_size, texture_size), Image.LANCZOS))
    return img


def png_bytes(img: np.ndarray) -> bytes:
    """PNG encoding of a uint8 (H, W[, 3|4]) or uint16 (H, W) array (floats are taken as [0, 1])."""
    from PIL import Image

    arr = np.asarray(img)
    if arr.dtype != np.uint16:
        arr = _to_uint8(arr)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def depth_to_png(depth: np.ndarray, mask: np.ndarray | None = None, mode: str = "gray16") -> np.ndarray:
    """Depth map as an image: near = bright, normalised over the masked range, background 0.

    ``mode="gray16"``: uint16 (H, W), 65535 = nearest, 1 = farthest face pixel, 0 = background
    (so the mask survives the round trip); ``mode="color"``: uint8 (H, W, 3) through
    matplotlib's viridis (yellow = near).
    """
    d = np.asarray(depth, np.float64)
    m = _as_mask(mask, d.shape)
    if not m.any():
        t = np.zeros(d.shape)
    else:
        lo, hi = float(d[m].min()), float(d[m].max())
        t = np.clip((hi - d) / max(hi - lo, 1e-12), 0.0, 1.0)
    if mode == "gray16":
        return np.where(m, 1 + np.round(t * 65534), 0).astype(np.uint16)
    if mode == "color":
        from matplotlib import colormaps

        rgb = colormaps["viridis"](t)[..., :3]
        return _to_uint8(np.where(m[..., None], rgb, 0.0))
    raise ValueError(f"depth_to_png: mode must be 'gray16' or 'color', got {mode!r}")


def normals_to_png(depth: np.ndarray, mask: np.ndarray | None, fov: float) -> np.ndarray:
    """uint8 (H, W, 3) normal map in the usual encoding: RGB = (n + 1) / 2 with x right, y up, z toward
    the viewer (a surface facing the camera is (128, 128, 255)); background black."""
    d = torch.as_tensor(np.asarray(depth, np.float64))[None]
    n = normals_from_depth(d, fov)[0].numpy() * np.array([1.0, -1.0, -1.0])
    m = _as_mask(mask, d.shape[1:])
    return _to_uint8(np.where(m[..., None], (n + 1.0) / 2.0, 0.0))


# ----------------------------------------------------------------------------- rendering


def _light(light: Mapping | None) -> dict:
    out = dict(DEFAULT_LIGHT)
    out.update(light or {})
    return out


def render_yaws(depth: np.ndarray, albedo: np.ndarray, mask: np.ndarray | None, fov: float, yaws: Sequence[float],
                size: int, light: Mapping | None = None, *, background: Sequence[float] = (1.0, 1.0, 1.0),
                mesh_resolution: int = 256, shading: bool = True) -> np.ndarray:
    """uint8 (N, size, size, 3) renders of the textured, shaded face turned by each yaw (degrees).

    The head turns about its own centre (the median masked depth), so it stays in place in a
    turntable; the light stays fixed to the camera. The depth grid is resampled to at most
    ``mesh_resolution`` vertices a side (smooth silhouettes); normals are interpolated vertex
    normals (smooth shading). ``light``: ``direction`` (camera frame, toward the light),
    ``ambient``, ``diffuse``.
    """
    depth = np.asarray(depth, np.float64)
    m0 = _as_mask(mask, depth.shape)
    if not m0.any():
        raise ValueError("render: the mask is empty, nothing to render")
    grid = _grid_size(depth.shape, min(mesh_resolution, max(size, max(depth.shape))))
    d, m = _resample(depth, m0, grid)
    H, W = grid
    centre = float(np.median(d[m]))
    faces = mask_faces(grid_faces(H, W), torch.from_numpy(m))
    pts = depth_to_points(torch.from_numpy(d).float()[None], fov)
    yaw_t = torch.as_tensor(list(yaws), dtype=torch.float32)
    n = len(yaw_t)
    verts = view_transform(pts.expand(n, -1, -1), view_from_yaw(yaw_t), rot_center_depth=centre)
    K = intrinsics(fov, size, size) if H == W else intrinsics(fov, size, round(size * W / H))
    out_hw = (size, size) if H == W else (size, round(size * W / H))
    frag = rasterize(verts, faces, out_hw, K=K)
    tex = torch.from_numpy(np.ascontiguousarray(np.asarray(albedo, np.float32)[..., :3])).permute(2, 0, 1)[None]
    if tex.max() > 1.5:  # uint8 albedo
        tex = tex / 255.0
    rgb, cover = sample_texture(frag, faces, grid_uv(H, W), tex.expand(n, -1, -1, -1))
    rgb = rgb.permute(0, 2, 3, 1)
    if shading:
        lt = _light(light)
        vn = vertex_normals(verts, faces)
        nrm = interpolate(frag, faces, vn)
        nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        rgb = rgb * shade(nrm, lt["direction"], lt["ambient"], lt["diffuse"])
    bg = torch.tensor(list(background), dtype=rgb.dtype)
    rgb = torch.where(cover.unsqueeze(-1), rgb, bg)
    return _to_uint8(rgb.numpy())


def render_view(depth: np.ndarray, albedo: np.ndarray, mask: np.ndarray | None, fov: float, yaw: float, size: int,
                light: Mapping | None = None, **kw) -> np.ndarray:
    """uint8 (size, size, 3) render of the face turned by ``yaw`` degrees (positive: nose to the left)."""
    return render_yaws(depth, albedo, mask, fov, [yaw], size, light, **kw)[0]


def render_views(depth: np.ndarray, albedo: np.ndarray, mask: np.ndarray | None, fov: float, size: int,
                 light: Mapping | None = None, yaws: Mapping[str, float] = VIEW_YAWS, **kw) -> dict[str, np.ndarray]:
    """Renders at the deliverable yaws (front, 45°, ±90°) → {name: uint8 image}."""
    imgs = render_yaws(depth, albedo, mask, fov, list(yaws.values()), size, light, **kw)
    return dict(zip(yaws.keys(), imgs, strict=True))


def turntable_yaws(frames: int, max_yaw: float = 90.0) -> list[float]:
    """A looping sweep 0 → +max → 0 → −max → 0 (a relief of a face has no back to turn around to)."""
    return [max_yaw * math.sin(2.0 * math.pi * k / frames) for k in range(frames)]


def render_turntable(depth: np.ndarray, albedo: np.ndarray, mask: np.ndarray | None, fov: float,
                     yaws: int | Sequence[float], size: int, light: Mapping | None = None,
                     **kw) -> list[np.ndarray]:
    """Turntable frames (uint8): ``yaws`` is a frame count (a smooth ±90° swing) or explicit degrees."""
    seq = turntable_yaws(yaws) if isinstance(yaws, int) else list(yaws)
    frames: list[np.ndarray] = []
    for s in range(0, len(seq), 8):  # bounded batches: memory stays flat for long turntables
        frames.extend(render_yaws(depth, albedo, mask, fov, seq[s:s + 8], size, light, **kw))
    return frames


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str] | None = None, cols: int | None = None,
                  pad: int = 4, background: int = 255) -> np.ndarray:
    """uint8 grid of images (resized to the first one's size), each with its label underneath."""
    from PIL import Image, ImageDraw, ImageFont

    if not images:
        raise ValueError("contact_sheet: no images")
    tiles = [Image.fromarray(_to_uint8(im)).convert("RGB") for im in images]
    w, h = tiles[0].size
    tiles = [t if t.size == (w, h) else t.resize((w, h), Image.BILINEAR) for t in tiles]
    n = len(tiles)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    font = ImageFont.load_default(size=max(10, min(24, h // 12)))
    label_h = 0
    if labels:
        label_h = max(font.getbbox(s)[3] for s in labels) + pad
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + label_h + pad) + pad), (background,) * 3)
    draw = ImageDraw.Draw(sheet)
    for i, t in enumerate(tiles):
        x = pad + (i % cols) * (w + pad)
        y = pad + (i // cols) * (h + label_h + pad)
        sheet.paste(t, (x, y))
        if labels and i < len(labels):
            tw = draw.textlength(labels[i], font=font)
            draw.text((x + (w - tw) / 2, y + h + pad // 2), labels[i], fill=(0, 0, 0), font=font)
    return np.asarray(sheet)


# ----------------------------------------------------------------------------- writers


def write_png(path: str | Path, img: np.ndarray) -> Path:
    return atomic_write_bytes(path, png_bytes(img))


def write_depth_png(path: str | Path, depth: np.ndarray, mask: np.ndarray | None = None,
                    mode: str = "gray16") -> Path:
    return write_png(path, depth_to_png(depth, mask, mode))


def write_normals_png(path: str | Path, depth: np.ndarray, mask: np.ndarray | None, fov: float) -> Path:
    return write_png(path, normals_to_png(depth, mask, fov))


def write_contact_sheet(path: str | Path, images: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                        cols: int | None = None) -> Path:
    return write_png(path, contact_sheet(images, labels, cols))


def write_gif(path: str | Path, frames: Sequence[np.ndarray], fps: float = 12.0, loop: int = 0) -> Path:
    """Animated GIF of uint8 frames (loops forever by default)."""
    from PIL import Image

    if not frames:
        raise ValueError("write_gif: no frames")
    ims = [Image.fromarray(_to_uint8(f)).convert("RGB") for f in frames]
    duration = max(20, int(round(1000.0 / fps)))
    return atomic_save(path, lambda p: ims[0].save(p, format="GIF", save_all=True, append_images=ims[1:],
                                                   duration=duration, loop=loop, disposal=2))


def obj_text(mesh: Mesh, tex_hw: tuple[int, int], mtl_name: str = "face.mtl", material: str = "face") -> str:
    """Wavefront OBJ text: v / vt (v flipped upward) / vn, 1-based ``f v/vt/vn`` triangles."""
    uv = _texture_uv(mesh.uv, tex_hw)
    buf = io.StringIO()
    buf.write(f"# facerecon textured face: {len(mesh.vertices)} vertices, {len(mesh.faces)} triangles\n")
    buf.write(f"mtllib {mtl_name}\no face\n")
    np.savetxt(buf, mesh.vertices, fmt="v %.7f %.7f %.7f")
    np.savetxt(buf, np.stack([uv[:, 0], 1.0 - uv[:, 1]], -1), fmt="vt %.7f %.7f")
    np.savetxt(buf, mesh.normals, fmt="vn %.6f %.6f %.6f")
    buf.write(f"usemtl {material}\ns 1\n")
    f = mesh.faces + 1
    np.savetxt(buf, np.repeat(f, 3, axis=1), fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")
    return buf.getvalue()


def write_obj(directory: str | Path, mesh: Mesh, albedo: np.ndarray, texture_size: int | None = None,
              name: str = "face") -> dict[str, Path]:
    """``face.obj`` + ``face.mtl`` + ``albedo.png`` in ``directory`` → their paths.

    ``albedo`` is the (H, W, 3) texture (float [0, 1] or uint8) in the depth map's frame.
    """
    d = Path(directory)
    tex = _albedo_image(albedo, texture_size)
    png = write_png(d / "albedo.png", tex)
    mtl = (f"# facerecon material\nnewmtl {name}\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\n"
           f"Ks 0.000 0.000 0.000\nd 1.0\nillum 1\nmap_Kd {png.name}\n")
    mtl_path = atomic_write_text(d / f"{name}.mtl", mtl)
    obj_path = atomic_write_text(d / f"{name}.obj", obj_text(mesh, tex.shape[:2], mtl_path.name, name))
    return {"obj": obj_path, "mtl": mtl_path, "albedo": png}


def _pad4(b: bytes, fill: bytes = b"\0") -> bytes:
    return b + fill * (-len(b) % 4)


def glb_bytes(mesh: Mesh, albedo: np.ndarray, texture_size: int | None = None) -> bytes:
    """A glTF 2.0 binary: one textured triangle mesh (positions, normals, uv, uint32 indices, PNG)."""
    tex = _albedo_image(albedo, texture_size)
    png = png_bytes(tex)
    pos = np.ascontiguousarray(mesh.vertices, dtype="<f4")
    nrm = np.ascontiguousarray(mesh.normals, dtype="<f4")
    uv = np.ascontiguousarray(_texture_uv(mesh.uv, tex.shape[:2]), dtype="<f4")
    idx = np.ascontiguousarray(mesh.faces.reshape(-1), dtype="<u4")
    blobs = [(pos.tobytes(), 34962), (nrm.tobytes(), 34962), (uv.tobytes(), 34962), (idx.tobytes(), 34963),
             (png, None)]
    bin_chunk = b""
    views = []
    for data, target in blobs:
        view = {"buffer": 0, "byteOffset": len(bin_chunk), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        bin_chunk += _pad4(data)
    n = len(pos)
    doc = {
        "asset": {"version": "2.0", "generator": "facerecon"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "face"}],
        "meshes": [{"name": "face", "primitives": [{
            "attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2}, "indices": 3, "material": 0, "mode": 4}]}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": n, "type": "VEC3",
             "min": pos.min(0).tolist(), "max": pos.max(0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": n, "type": "VEC3"},
            {"bufferView": 2, "componentType": 5126, "count": n, "type": "VEC2"},
            {"bufferView": 3, "componentType": 5125, "count": int(idx.size), "type": "SCALAR"},
        ],
        "bufferViews": views,
        "buffers": [{"byteLength": len(bin_chunk)}],
        "materials": [{"name": "face", "doubleSided": True, "pbrMetallicRoughness": {
            "baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 1.0}}],
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "images": [{"bufferView": 4, "mimeType": "image/png"}],
    }
    json_chunk = _pad4(json.dumps(doc, separators=(",", ":")).encode("utf-8"), b" ")
    total = 12 + 8 + len(json_chunk) + 8 + len(bin_chunk)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total),
                     struct.pack("<I4s", len(json_chunk), b"JSON"), json_chunk,
                     struct.pack("<I4s", len(bin_chunk), b"BIN\0"), bin_chunk])


def write_glb(path: str | Path, mesh: Mesh, albedo: np.ndarray, texture_size: int | None = None) -> Path:
    """Write :func:`glb_bytes` to ``path``."""
    return atomic_write_bytes(path, glb_bytes(mesh, albedo, texture_size))
