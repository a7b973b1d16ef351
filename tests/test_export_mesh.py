"""Exported meshes as a viewer would read them: OBJ/MTL/PNG text, and GLB parsed back by hand."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerecon.render.outputs import mesh_from_depth, write_glb, write_obj

FOV = 10.0


def face(S: int = 32):
    y, x = (np.mgrid[0:S, 0:S] / (S - 1)) * 2 - 1
    r2 = (x / 0.8) ** 2 + (y / 0.9) ** 2
    depth = 1.05 - 0.06 * np.sqrt(np.clip(1 - r2, 0, None)) - 0.02 * np.exp(-(x ** 2 + y ** 2) / 0.02)
    return depth.astype(np.float32), r2 < 0.8


def quadrant_albedo(T: int = 64) -> np.ndarray:
    """Red top-left, green top-right, blue bottom-left, white bottom-right (image rows go down)."""
    a = np.zeros((T, T, 3), np.float32)
    h = T // 2
    a[:h, :h] = [1, 0, 0]
    a[:h, h:] = [0, 1, 0]
    a[h:, :h] = [0, 0, 1]
    a[h:, h:] = [1, 1, 1]
    return a


def expected_colour(v: np.ndarray) -> np.ndarray:
    """The quadrant colour a vertex should get from its exported position (y up, x right)."""
    top = v[:, 1] > 0
    left = v[:, 0] < 0
    out = np.zeros((len(v), 3))
    out[top & left] = [255, 0, 0]
    out[top & ~left] = [0, 255, 0]
    out[~top & left] = [0, 0, 255]
    out[~top & ~left] = [255, 255, 255]
    return out


def sample_texture(img: np.ndarray, uv_img: np.ndarray) -> np.ndarray:
    """Nearest texel at texture coordinates with v measured downward from the image's top row."""
    h, w = img.shape[:2]
    cols = np.clip((uv_img[:, 0] * w).astype(int), 0, w - 1)
    rows = np.clip((uv_img[:, 1] * h).astype(int), 0, h - 1)
    return img[rows, cols, :3].astype(float)


def away_from_seams(v: np.ndarray) -> np.ndarray:
    span = np.ptp(v[:, :2], axis=0)
    return (np.abs(v[:, 0]) > 0.08 * span[0]) & (np.abs(v[:, 1]) > 0.08 * span[1])


def test_mesh_frame_winding_and_resolution():
    depth, mask = face(32)
    mesh = mesh_from_depth(depth, mask, FOV, 64)
    v, f = mesh.vertices, mesh.faces
    assert np.abs(v.mean(0)).max() < 1e-6  # centred
    assert v[:, 1].max() > 0.04 and v[:, 0].max() > 0.03  # face-sized, not collapsed
    assert len(v) > 4 * mask.sum() * 0.8  # upsampled to the requested grid
    # the nose (closest to the camera) is the most +z point: z toward the viewer
    top = v[np.argmax(v[:, 2])]
    assert np.hypot(top[0], top[1]) < 0.01
    # counter-clockwise from the front: face normals point +z, like the vertex normals
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert (n[:, 2] > 0).mean() > 0.99
    assert (mesh.normals[:, 2] > 0).all() and np.allclose(np.linalg.norm(mesh.normals, axis=1), 1, atol=1e-5)
    assert f.min() == 0 and f.max() == len(v) - 1  # no unused vertices
    with pytest.raises(ValueError, match="no triangle"):
        mesh_from_depth(depth, np.zeros_like(mask), FOV, 16)


def test_obj_mtl_png_round_trip(tmp_path: Path):
    depth, mask = face(24)
    mesh = mesh_from_depth(depth, mask, FOV, 40)
    paths = write_obj(tmp_path, mesh, quadrant_albedo(), texture_size=32)
    assert {p.name for p in tmp_path.iterdir()} == {"face.obj", "face.mtl", "albedo.png"}
    assert paths["obj"] == tmp_path / "face.obj"
    mtl = (tmp_path / "face.mtl").read_text()
    assert "map_Kd albedo.png" in mtl and "newmtl face" in mtl
    text = (tmp_path / "face.obj").read_text().splitlines()
    assert "mtllib face.mtl" in text and "usemtl face" in text
    v = np.array([[float(t) for t in ln.split()[1:]] for ln in text if ln.startswith("v ")])
    vt = np.array([[float(t) for t in ln.split()[1:]] for ln in text if ln.startswith("vt ")])
    vn = np.array([[float(t) for t in ln.split()[1:]] for ln in text if ln.startswith("vn ")])
    faces = [ln.split()[1:] for ln in text if ln.startswith("f ")]
    assert len(v) == len(vt) == len(vn) == len(mesh.vertices) and len(faces) == len(mesh.faces)
    idx = np.array([[int(c.split("/")[0]) for c in fc] for fc in faces])
    assert idx.min() == 1 and idx.max() == len(v)
    np.testing.assert_allclose(v, mesh.vertices, atol=1e-6)
    tex = np.asarray(Image.open(tmp_path / "albedo.png"))
    assert tex.shape == (32, 32, 3)
    # OBJ's v goes up from the bottom: 1 - v is the image row coordinate
    keep = away_from_seams(v)
    got = sample_texture(tex, np.stack([vt[:, 0], 1 - vt[:, 1]], -1))[keep]
    assert (np.abs(got - expected_colour(v)[keep]).max(1) < 24).mean() > 0.99


def parse_glb(data: bytes):
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and length == len(data)
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    assert jtype == b"JSON" and jlen % 4 == 0
    doc = json.loads(data[20:20 + jlen].decode("utf-8"))
    blen, btype = struct.unpack_from("<I4s", data, 20 + jlen)
    assert btype == b"BIN\0" and blen % 4 == 0
    assert 20 + jlen + 8 + blen == length
    return doc, data[28 + jlen:28 + jlen + blen]


def read_accessor(doc, binary, i):
    acc = doc["accessors"][i]
    view = doc["bufferViews"][acc["bufferView"]]
    assert view["byteOffset"] % 4 == 0
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[acc["type"]]
    dtype = {5126: "<f4", 5125: "<u4"}[acc["componentType"]]
    arr = np.frombuffer(binary, dtype=dtype, count=acc["count"] * width, offset=view["byteOffset"])
    assert view["byteLength"] == arr.nbytes
    return arr.reshape(-1, width) if width > 1 else arr


def test_glb_parses_back_by_hand(tmp_path: Path):
    depth, mask = face(24)
    mesh = mesh_from_depth(depth, mask, FOV, 40)
    path = write_glb(tmp_path / "face.glb", mesh, quadrant_albedo(), texture_size=32)
    doc, binary = parse_glb(path.read_bytes())
    assert doc["asset"]["version"] == "2.0"
    assert doc["buffers"][0]["byteLength"] == len(binary)
    prim = doc["meshes"][0]["primitives"][0]
    assert prim["mode"] == 4
    pos = read_accessor(doc, binary, prim["attributes"]["POSITION"])
    nrm = read_accessor(doc, binary, prim["attributes"]["NORMAL"])
    uv = read_accessor(doc, binary, prim["attributes"]["TEXCOORD_0"])
    idx = read_accessor(doc, binary, prim["indices"])
    pacc = doc["accessors"][prim["attributes"]["POSITION"]]
    np.testing.assert_allclose(pacc["min"], pos.min(0), rtol=0, atol=0)
    np.testing.assert_allclose(pacc["max"], pos.max(0), rtol=0, atol=0)
    assert len(pos) == len(nrm) == len(uv) == len(mesh.vertices)
    assert len(idx) == 3 * len(mesh.faces) and idx.max() < len(pos)
    assert ((0 <= uv) & (uv <= 1)).all()
    # embedded PNG texture reached through material → texture → image → bufferView
    mat = doc["materials"][prim["material"]]
    tex_i = mat["pbrMetallicRoughness"]["baseColorTexture"]["index"]
    img = doc["images"][doc["textures"][tex_i]["source"]]
    assert img["mimeType"] == "image/png"
    view = doc["bufferViews"][img["bufferView"]]
    png = binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from io import BytesIO

    tex = np.asarray(Image.open(BytesIO(png)).convert("RGB"))
    # glTF uv: v downward from the image's top row — no flip
    keep = away_from_seams(pos)
    got = sample_texture(tex, uv)[keep]
    assert (np.abs(got - expected_colour(pos)[keep]).max(1) < 24).mean() > 0.99
