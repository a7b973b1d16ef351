"""Dataset loaders: the synthetic split and tiny fake CelebA / CFP / HPID / COMSATS / plain folders."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facerecon.bench import synth
from facerecon.config import SynthParams
from facerecon.errors import DatasetError
from facerecon.io.datasets import FolderDataset, SynthDataset, crop_resize, detect_layout


def _img(path: Path, w: int, h: int, colour=(0, 0, 255), box=None, box_colour=(255, 0, 0)) -> Path:
    """A solid image, optionally with a coloured rectangle ``box`` = (x0, y0, x1, y1)."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:] = colour
    if box is not None:
        x0, y0, x1, y1 = box
        a[y0:y1, x0:x1] = box_colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def _redness(item) -> float:
    im = item["image"]
    return float((im[0] > 0.5).float().mean())


@pytest.fixture(scope="module")
def synth_split(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    return synth.make_synth_dataset(SynthParams(image_size=32, n_train=5, n_val=2, n_test=4, out_dir=str(out)),
                                    progress=False)["train"]


def test_synth_dataset_items(synth_split):
    ds = SynthDataset(synth_split, canonical=True)
    assert len(ds) == 5 and ds.image_size == 32
    assert ds.camera == {"fov": 10.0, "min_depth": 0.9, "max_depth": 1.1}
    item = ds[2]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["depth"].shape == item["mask"].shape == item["canon_depth"].shape == (32, 32)
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(item["mask"].bool(), item["depth"] < 1.1)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 32, 32)
    b = ds.batch(slice(0, 3))
    assert b["image"].shape == (3, 3, 32, 32) and b["mask"].dtype == torch.bool
    assert torch.equal(b["image"][2], item["image"])


def test_synth_dataset_errors(tmp_path, synth_split):
    with pytest.raises(DatasetError, match="does not exist"):
        SynthDataset(tmp_path / "nothing")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("images.npy", "meta.json"):
        (broken / f).write_bytes((synth_split / f).read_bytes())
    with pytest.raises(DatasetError, match="missing depth.npy, mask.npy"):
        SynthDataset(broken)
    np.save(broken / "depth.npy", np.zeros((5, 16, 16), np.float32))
    np.save(broken / "mask.npy", np.zeros((5, 32, 32), bool))
    with pytest.raises(DatasetError, match="depth.npy: shape"):
        SynthDataset(broken)


def test_celeba_aligned_layout_with_partition(tmp_path):
    root = tmp_path / "celeba"
    for i in range(1, 6):  # aligned CelebA is 178×218; the face region is red
        _img(root / "img_align_celeba" / f"{i:06d}.jpg", 178, 218, box=(30, 60, 148, 178))
    (root / "list_eval_partition.txt").write_text("".join(f"{i:06d}.jpg {0 if i < 4 else 1}\n" for i in range(1, 6)))
    assert detect_layout(root) == "celeba"
    train = FolderDataset(root, image_size=32, split="train")
    val = FolderDataset(root, "celeba", 32, split="val")
    assert len(train) == 3 and len(val) == 2 and len(FolderDataset(root, image_size=32)) == 5
    item = train[0]
    assert item["image"].shape == (3, 32, 32)
    assert _redness(item) > 0.85  # the crop sits on the face region, not the whole photo


def test_celeba_in_the_wild_uses_the_bbox_file(tmp_path):
    root = tmp_path / "celeba"
    _img(root / "img_celeba" / "000001.jpg", 300, 200, box=(200, 20, 280, 120))
    (root / "list_bbox_celeba.txt").write_text("1\nimage_id x_1 y_1 width height\n000001.jpg 200 20 80 100\n")
    item = FolderDataset(root, image_size=16)[0]
    assert _redness(item) > 0.7
    # Unsup3D's already-cropped layout: split subfolders of square images
    crop = tmp_path / "celeba_cropped"
    _img(crop / "train" / "a.jpg", 64, 64)
    _img(crop / "test" / "b.jpg", 64, 64)
    assert len(FolderDataset(crop, "celeba", 32, split="test")) == 1


def test_cfp_layout_crops_around_the_fiducials(tmp_path):
    root = tmp_path / "cfp-dataset"
    for sid in ("001", "002"):
        for view, n in (("frontal", 2), ("profile", 1)):
            for k in range(1, n + 1):
                rel = Path(sid) / view / f"{k:02d}.jpg"
                _img(root / "Data" / "Images" / rel, 120, 100, box=(10, 10, 50, 50))
                fid = root / "Data" / "Fiducials" / rel.with_suffix(".txt")
                fid.parent.mkdir(parents=True, exist_ok=True)
                fid.write_text("15.0,15.0\n45.0,15.0\n30.0,45.0\n")
    assert detect_layout(tmp_path) == "cfp" and detect_layout(root) == "cfp"
    ds = FolderDataset(root, image_size=24)
    assert len(ds) == 6
    frontal = [i for i, it in enumerate(ds.items) if "frontal" in it.path.parts]
    assert ds[frontal[0]]["pan"] == 0.0 and math.isnan(ds[ds.items.index(next(
        it for it in ds.items if "profile" in it.path.parts))]["pan"])
    assert _redness(ds[0]) > 0.8


def test_hpid_layout_reads_pose_and_face_box(tmp_path):
    root = tmp_path / "HeadPoseImageDatabase"
    poses_by_name = {"person01100-90+0": (-90.0, 0.0), "person01146-15+30": (-15.0, 30.0),
                     "person02200+0-45": (0.0, -45.0)}
    for name in poses_by_name:
        person = root / f"Person{name[6:8]}"
        _img(person / f"{name}.jpg", 384, 288, box=(232, 92, 348, 208))  # red just past the 1.1× square
        (person / f"{name}.txt").write_text(f"{name}.jpg\nFace\n290\n150\n80\n100\n")
    (root / "Person01" / "notes.jpg").write_bytes(b"")  # not an HPID name: ignored
    assert detect_layout(root) == "hpid"
    ds = FolderDataset(root, image_size=16)
    assert len(ds) == 3
    poses = sorted((ds[i]["tilt"], ds[i]["pan"]) for i in range(3))
    assert poses == sorted(poses_by_name.values())
    assert all(_redness(ds[i]) > 0.8 for i in range(3))


def test_comsats_and_plain_folders(tmp_path):
    root = tmp_path / "comsats"
    for s in range(3):
        for p in ("0", "-35", "+55"):
            _img(root / f"S{s:02d}" / f"{p}.png", 90, 120)
    assert detect_layout(root) == "folder"  # COMSATS has no signature file: it is named explicitly
    ds = FolderDataset(root, "comsats", 20)
    assert len(ds) == 9 and ds[4]["image"].shape == (3, 20, 20)
    assert ds[4]["image"][2].mean() > 0.95  # blue: the centred square of a blue photo
    plain = FolderDataset(root, "folder", 8, max_items=4)
    assert len(plain) == 4


def test_corrupt_images_are_skipped_counted_and_logged(tmp_path, caplog):
    root = tmp_path / "faces"
    _img(root / "a.jpg", 40, 40)
    (root / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    _img(root / "c.jpg", 40, 40, colour=(0, 255, 0))
    (root / "d.png").write_bytes(b"")
    ds = FolderDataset(root, image_size=8)
    assert len(ds) == 4
    with caplog.at_level(logging.WARNING, logger="facerecon.io.datasets"):
        items = [ds[i] for i in range(4)]
    assert [it["index"] for it in items] == [0, 2, 2, 0]  # corrupt ones replaced by the next good image
    assert sorted(Path(p).name for p in ds.skipped) == ["b.jpg", "d.png"]
    assert sum("skipping corrupt image" in r.message for r in caplog.records) == 2  # once per file
    fresh = FolderDataset(root, image_size=8)
    assert fresh.verify() == 2 and len(fresh) == 2


def test_missing_or_unusable_folders_are_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        FolderDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        FolderDataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        FolderDataset(tmp_path / "empty", layout="ffhq")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"nope")
    with pytest.raises(DatasetError, match="could be read"):
        FolderDataset(bad)[0]
    with pytest.raises(DatasetError, match="could be read"):
        FolderDataset(bad).verify()


def test_crop_outside_the_photo_replicates_the_border():
    a = np.zeros((10, 10, 3), np.uint8)
    a[:, :5] = 255
    out = crop_resize(a, (-10.0, 0.0, 20.0), 4)  # half the box lies left of the photo
    assert out.shape == (4, 4, 3)
    assert (out[:, 0] == 255).all() and (out[:, -1] < 64).all()  # left: replicated white edge; right: black


def test_pretrain_loader_over_a_synth_split(synth_split):
    loader = torch.utils.data.DataLoader(SynthDataset(synth_split), batch_size=4, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["depth"].shape == (4, 32, 32)
    assert replace(SynthParams(), n_train=3).n_train == 3
