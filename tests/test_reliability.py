"""Reliability: hostile and broken inputs, hostile names, malformed checkpoints, unwritable or full DST.

One batch of generated bad files goes through the real CLI; everything else is checked on the
library functions the CLI uses. The kill-and-resume test lives in test_reliability_resume.py.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from tiny import TINY

from facerecon.errors import CheckpointError, DestinationError, InputImageError, StorageError
from facerecon.io.atomic import atomic_write_bytes
from facerecon.io.images import ImageLimits, load_image
from facerecon.io.storage import LocalStorage, display_key, safe_relative_key
from flows.cli import EXIT_DESTINATION, EXIT_SOME_FAILED, main
from flows.reconstruct import list_photos, output_prefix, output_stems

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "data" / "photos"
WEIRD_NAME = b"new\nline \xff\xfe caf\xc3\xa9.jpg"  # newline, bytes that are not UTF-8, and some UTF-8


def tiny_args(cache: Path) -> list[str]:
    return [a for s in TINY + [f"cache.dir={cache}"] for a in ("--set", s)]


def photo(name: str, size: int = 320) -> Image.Image:
    im = Image.open(PHOTOS / name).convert("RGB")
    im.thumbnail((size, size))
    return im


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(w: int, h: int) -> bytes:
    """A valid PNG signature + IHDR claiming w x h, one tiny IDAT, IEND: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def exif_rotated(im: Image.Image) -> bytes:
    """Stored turned 90° clockwise with orientation 8 ("turn 90° counter-clockwise to view"), so
    only a reader honouring EXIF sees an upright face."""
    exif = Image.Exif()
    exif[0x0112] = 8
    return encode(im.transpose(Image.Transpose.ROTATE_270), "JPEG", exif=exif, quality=92)


# photo -> (status, text the error must contain); "ok" rows must produce a face
EXPECTED = {
    "zero.jpg": ("failed", "empty file"),
    "truncated.jpg": ("failed", "corrupt or truncated"),
    "truncated.png": ("failed", "corrupt or truncated"),
    "notes.jpg": ("failed", "not an image"),
    "pixel.png": ("failed", "too small"),
    "bomb.png": ("failed", "too large"),
    "big_header.png": ("failed", "input.max_pixels"),
    "icon.jpg": ("failed", "format ico is not accepted"),
    "anim.gif": ("failed", "format gif is not accepted (unsupported format"),  # animated GIF: a clear row
    "noface.png": ("no_face", "no face"),
    "sixteen.png": ("ok", ""),  # 16-bit grayscale
    "palette_alpha.png": ("ok", ""),  # palette with a transparent colour
    "rotated.jpg": ("ok", ""),  # EXIF orientation 8
    "two_faces_cmyk.jpg": ("ok", ""),  # CMYK JPEG with two faces: the larger one is reconstructed
}  # + WEIRD_NAME: PNG bytes behind a .jpg name with a newline and non-UTF-8 bytes in it -> ok
# entries that are no photo: no row, but each named in the summary with the reason
SKIPPED = {"x.jpg": "a folder", ".DS_Store": "hidden", "..hidden_dots.jpg": "hidden"}


def write_corpus(src: Path) -> None:
    face = photo("grace_hopper.jpg", 256)
    good_jpeg = encode(face, "JPEG", quality=92)
    good_png = encode(face, "PNG")
    files = {
        "zero.jpg": b"",
        "truncated.jpg": good_jpeg[: len(good_jpeg) // 2],
        "truncated.png": good_png[: len(good_png) // 2],
        "notes.jpg": b"this is a text file, not a photo\n",
        "pixel.png": encode(Image.new("RGB", (1, 1)), "PNG"),
        "bomb.png": png_header_only(20000, 20000),
        "big_header.png": png_header_only(9000, 9000),
        "icon.jpg": encode(face, "ICO"),
        "noface.png": encode(Image.fromarray(np.random.default_rng(0).integers(90, 110, (240, 240, 3), np.uint8)), "PNG"),
        "sixteen.png": encode(Image.fromarray(np.asarray(face.convert("L")).astype(np.uint16) * 257), "PNG"),
        "palette_alpha.png": encode(face.convert("P", palette=Image.Palette.ADAPTIVE, colors=255), "PNG",
                                    transparency=0),
        "rotated.jpg": exif_rotated(face),
    }
    a, b = photo("astronaut.jpg", 240), photo("grace_hopper.jpg", 200)
    both = Image.new("RGB", (a.width + b.width, max(a.height, b.height)), (255, 255, 255))
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    files["two_faces_cmyk.jpg"] = encode(both.convert("CMYK"), "JPEG", quality=92)
    gif = io.BytesIO()
    face.save(gif, format="GIF", save_all=True, append_images=[face.rotate(15)], duration=100)
    files["anim.gif"] = gif.getvalue()
    files["..hidden_dots.jpg"] = good_jpeg  # a valid JPEG behind a hidden name
    files[".DS_Store"] = b"\0\0\0\1Bud1"
    (src / "x.jpg").mkdir()  # a folder named like a photo
    for name, data in files.items():
        (src / name).write_bytes(data)
    with open(os.path.join(os.fsencode(src), WEIRD_NAME), "wb") as fh:  # a real file with a hostile name
        fh.write(encode(photo("astronaut.jpg", 240), "PNG"))


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("reliability")
    src, dst, cache = base / "photos", base / "out", base / "cache"
    src.mkdir()
    write_corpus(src)
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", str(src), str(dst), "--no-progress", *tiny_args(cache)])
    (base / "stdout.txt").write_text(out.getvalue())  # the CLI's summary, as the user saw it
    return src, dst, cache, code


def test_every_bad_input_is_a_row_and_the_batch_goes_on(corpus_run):
    src, dst, cache, code = corpus_run
    assert code == EXIT_SOME_FAILED
    m = pd.read_parquet(dst / "manifest.parquet").set_index("photo")
    weird = display_key(os.fsdecode(WEIRD_NAME))
    assert sorted(m.index) == sorted([*EXPECTED, weird])  # every file exactly one row
    for name, (status, needle) in EXPECTED.items():
        row = m.loc[name]
        assert row["status"] == status, (name, row["status"], row["error"])
        if status != "ok":
            assert name in row["error"] and needle in row["error"].lower(), (name, row["error"])
            assert "Traceback" not in row["error"] and "internal error" not in row["error"]
        else:
            out = Path(row["output"])
            assert out.parent == dst and (out / "face.obj").is_file() and (out / "result.json").is_file(), name


def test_every_entry_that_is_no_row_is_a_named_skip(corpus_run):
    """Hidden files and a folder named like a photo get no row, and the summary names each."""
    stdout = (corpus_run[1].parent / "stdout.txt").read_text()
    line = next(ln for ln in stdout.splitlines() if "skipped:" in ln)
    assert line.startswith(f"{len(SKIPPED)} skipped: "), line
    for name, why in SKIPPED.items():
        assert f"{name} ({why})" in line, line
    m = pd.read_parquet(corpus_run[1] / "manifest.parquet")
    assert not set(SKIPPED) & set(m["photo"])


def test_exif_orientation_is_honoured(corpus_run):
    """The sideways-stored photo is aligned upright: it matches the upright photo aligned directly."""
    from facerecon.align import align_photo

    src, dst, cache, _ = corpus_run
    res = json.loads((dst / "rotated" / "result.json").read_text())
    assert abs(res["stages"]["align"]["summary"]["faces"][0]["roll"]) < 15
    sha = hashlib.sha256((src / "rotated.jpg").read_bytes()).hexdigest()
    [p] = list((cache / "work" / sha[:24]).glob("align-*/face0/aligned.png"))
    rotated = np.asarray(Image.open(p).convert("L"), dtype=np.float64)
    face = np.asarray(photo("grace_hopper.jpg", 256))
    [ref] = align_photo(face, output_size=rotated.shape[0], transform_size=1024)
    upright = np.asarray(Image.fromarray(ref.image).convert("L"), dtype=np.float64)
    corr = [np.corrcoef(upright.ravel(), np.rot90(rotated, k).ravel())[0, 1] for k in range(4)]
    assert corr[0] > 0.9 and corr[0] > max(corr[1:]) + 0.2, corr  # upright, not sideways or upside down


def test_hostile_file_name_stays_inside_dst(corpus_run):
    src, dst, cache, _ = corpus_run
    m = pd.read_parquet(dst / "manifest.parquet")
    row = m[m["photo"].str.startswith("new\\nline")].iloc[0]
    assert row["status"] == "ok", row["error"]
    assert "\\xff\\xfe" in row["photo"] and "\n" not in row["photo"]  # shown escaped, valid UTF-8
    out = Path(row["output"])
    assert out.parent == dst and out.is_dir()
    assert out.name.isprintable() and "\n" not in out.name
    out.name.encode("utf-8")  # the folder name is clean UTF-8
    for p in dst.rglob("*"):  # nothing outside DST, nothing half-written inside it
        assert p.resolve().is_relative_to(dst.resolve())
        assert ".tmp" not in p.name and ".old-" not in p.name, p


def test_load_image_conversions_and_limits():
    face = photo("grace_hopper.jpg", 128)
    im = load_image(exif_rotated(face), "r.jpg")
    assert im.exif_rotated and im.rgb.shape[:2] == (face.height, face.width)
    upright = np.asarray(face.convert("L"), dtype=float)
    assert np.abs(np.asarray(Image.fromarray(im.rgb).convert("L"), dtype=float) - upright).mean() < 6
    assert "extension .jpg but PNG content" in load_image(encode(face, "PNG"), "x.jpg").notes
    sixteen = load_image(encode(Image.fromarray(np.full((64, 64), 40000, np.uint16)), "PNG"), "s.png")
    assert sixteen.rgb.dtype == np.uint8 and abs(int(sixteen.rgb[0, 0, 0]) - 156) <= 1
    assert load_image(encode(face.convert("CMYK"), "JPEG"), "c.jpg").rgb.shape[2] == 3
    gray = load_image(encode(face.convert("L"), "JPEG"), "g.jpg").rgb
    assert gray.shape[2] == 3 and np.array_equal(gray[..., 0], gray[..., 2])
    rgba = face.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: composited on grey
    assert np.all(np.abs(load_image(encode(rgba, "PNG"), "a.png").rgb.astype(int) - 128) <= 1)
    pal = load_image(encode(face.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), "p.png")
    assert pal.orig_mode == "P" and pal.rgb.shape == (face.height, face.width, 3)
    limits = ImageLimits(max_pixels=1000, min_side=8, formats=("PNG",), max_bytes=10**6)
    with pytest.raises(InputImageError, match=r"j\.jpg: format JPEG is not accepted"):
        load_image(encode(face, "JPEG"), "j.jpg", limits)
    with pytest.raises(InputImageError, match="input.max_pixels=1000"):
        load_image(encode(face, "PNG"), "p.png", limits)
    with pytest.raises(InputImageError, match="input.max_bytes=10"):
        load_image(encode(face, "PNG"), "p.png", ImageLimits(max_bytes=10))


def test_params_and_cli_arguments_are_checked_up_front(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    assert main(["run", str(src), str(tmp_path / "o"), "--set", "input.formats=[JPEG, GIF]"]) == 2
    assert "input.formats: 'GIF' is not accepted; choose from JPEG, PNG" in capsys.readouterr().err
    assert main(["run", str(src), str(tmp_path / "o"), "--set", "input.min_side=0"]) == 2
    assert "input.min_side: 0 is below the minimum 1" in capsys.readouterr().err
    assert main(["run", str(src), str(tmp_path / "o"), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# ------------------------------------------------------------------------------- hostile names


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../b.jpg", "..", "...", "a\nb.jpg",
                                  "bad\udcffname.jpg", "x\ud800y.jpg", "名" * 200 + ".jpg", "C:\\win\\x.jpg", ""])
def test_safe_names_never_leave_dst(tmp_path, name):
    key = safe_relative_key(name)
    assert key and "/" not in key and "\\" not in key and not key.startswith(".") and key.isprintable()
    assert len(key.encode("utf-8")) < 120
    for prefix in (output_prefix(name, 0, False), output_prefix(name, 3, True)):
        storage = LocalStorage(tmp_path)
        assert storage._path(prefix).parent == tmp_path.resolve()
    assert display_key(name).isprintable()


def test_distinct_hostile_names_get_distinct_outputs():
    names = ["a/b.jpg", "a_b.jpg", "a\nb.jpg", "a\udcffb.jpg", "a b.jpg"]
    assert len({safe_relative_key(n) for n in names}) == len(names)
    stems = output_stems(["x.jpg", "x.png", "y.jpg", "manifest.parquet.jpg"])
    assert stems["x.jpg"] != stems["x.png"] and stems["y.jpg"] == "y"
    assert output_prefix("manifest.parquet.jpg", 0, False, stems["manifest.parquet.jpg"]) != "manifest.parquet"


def test_storage_rejects_paths_outside_its_root(tmp_path):
    root = tmp_path / "dst"
    root.mkdir()
    (tmp_path / "secret").write_text("x")
    (root / "link").symlink_to(tmp_path)
    storage = LocalStorage(root)
    for key in ("../secret", "/etc/passwd", "a/../../secret", "link/secret", "x\x00y"):
        with pytest.raises(StorageError):
            storage._path(key)
    with pytest.raises(StorageError):
        storage.write_bytes("../escaped.txt", b"no")
    face = tmp_path / "face"
    face.mkdir()
    (face / "a.txt").write_text("a")
    with pytest.raises(StorageError):
        storage.put_tree(face, "../escaped")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "escaped").exists()


# ------------------------------------------------------------------------------- checkpoints


class _Payload:
    """Unpickling this calls open(marker, "w"): the file appears only if the pickle is executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _loaders():
    from facerecon.ae.train import load_checkpoint
    from facerecon.gan.checkpoints import load_generator

    return {"ae": load_checkpoint, "gan": load_generator}


@pytest.mark.parametrize("which", ["ae", "gan"])
def test_malicious_pickle_is_refused_and_never_executed(tmp_path, which):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "facerecon-ae-v1", "g_ema": {}, "state_dict": _Payload(marker)}, path)
    torch.load(path, weights_only=False)  # the payload is live: unrestricted unpickling runs it...
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError) as err:  # ...our loaders refuse it
        _loaders()[which](path)
    assert not marker.exists()
    assert str(path) in str(err.value)


@pytest.mark.parametrize("which", ["ae", "gan"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong_type"])
def test_malformed_checkpoint_is_a_clear_error(tmp_path, which, damage):
    path = tmp_path / "bad.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(4, 4)}, "format": "x"}, path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(2048))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError) as err:
        _loaders()[which](path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------- unwritable / full DST


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_disk_full_mid_batch_is_one_error_and_keeps_earlier_results(corpus_run, tmp_path, monkeypatch, capsys):
    """A re-run that must publish one face again hits ENOSPC halfway through a file: exit 4, one
    error line, no retries, the other faces and the old manifest untouched, no partial folder."""
    src0, dst0, cache, _ = corpus_run
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(src0 / "two_faces_cmyk.jpg", src / "two_faces_cmyk.jpg")  # its stages are all in the cache already
    shutil.copytree(dst0, dst, symlinks=True)
    shutil.rmtree(dst / "two_faces_cmyk")  # the one face this run has to write again
    before = _snapshot(dst)
    real_copyfile = shutil.copyfile
    calls = []

    def full_disk(a, b, *args, **kwargs):
        calls.append(b)
        if len(calls) > 3:  # a few files fit, then the disk is full in the middle of one
            Path(b).write_bytes(Path(a).read_bytes()[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(b))
        return real_copyfile(a, b, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    code = main(["run", str(src), str(dst), "--no-progress", *tiny_args(cache)])
    err = capsys.readouterr().err
    assert code == EXIT_DESTINATION
    lines = [ln for ln in err.splitlines() if ln.startswith("facerecon: error:")]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "two_faces_cmyk" in lines[0], err
    assert "Traceback" not in err
    assert len(calls) == 4  # stopped at the first failure: no retries, no further photos
    assert _snapshot(dst) == before  # earlier faces and manifest untouched, no temp files left
    assert sorted(p.name for p in dst.iterdir()) == sorted(before_names(before))


def before_names(snapshot: dict[str, str]) -> set[str]:
    return {k.split("/", 1)[0] for k in snapshot}


def test_atomic_writer_leaves_old_file_on_enospc(tmp_path, monkeypatch):
    target = tmp_path / "manifest.parquet"
    target.write_bytes(b"old")
    real = Path.write_bytes

    def half_then_full(self, data):
        real(self, data[:2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new content")
    with pytest.raises(DestinationError, match="No space left"):
        LocalStorage(tmp_path).write_bytes("manifest.parquet", b"new content")
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["manifest.parquet"]


def test_unwritable_dst_is_one_error_before_any_work(tmp_path, monkeypatch, capsys):
    """Permission denied at DST (simulated, so it also holds when the tests run as root)."""
    import facerecon.io.atomic as atomic

    src = tmp_path / "in"
    src.mkdir()
    photo("astronaut.jpg", 200).save(src / "a.jpg")

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), k.get("dir"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    code = main(["run", str(src), str(tmp_path / "out"), "--no-progress", *tiny_args(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == EXIT_DESTINATION and "Permission denied" in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists()  # nothing was computed


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_dst_keeps_earlier_results(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photo("astronaut.jpg", 200).save(src / "a.jpg")
    dst.mkdir()
    (dst / "earlier").mkdir()
    (dst / "earlier" / "face.obj").write_text("v 0 0 0\n")
    before = _snapshot(dst)
    dst.chmod(0o555)
    try:
        code = main(["run", str(src), str(dst), "--no-progress", *tiny_args(tmp_path / "cache")])
    finally:
        dst.chmod(0o755)
    err = capsys.readouterr().err
    assert code == EXIT_DESTINATION and "Permission denied" in err and "Traceback" not in err
    assert _snapshot(dst) == before


# ------------------------------------------------------------------------------- streaming


def test_listing_streams_and_keeps_only_keys(tmp_path):
    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
        for i in range(3):
            (tmp_path / d / f"{i}.jpg").write_bytes(b"x")
    (tmp_path / ".tmp-hidden").mkdir()
    (tmp_path / ".tmp-hidden" / "half.jpg").write_bytes(b"x")
    entries = LocalStorage(tmp_path).list()
    first = next(entries)  # the walk is lazy: later folders are not read yet...
    shutil.rmtree(tmp_path / "c")
    rest = list(entries)  # ...so removing one now simply leaves it out
    assert first.key == "a/0.jpg" and [e.key for e in rest][-1] == "b/2.jpg"
    keys = list_photos(str(tmp_path), None)
    assert keys == [f"{d}/{i}.jpg" for d in "ab" for i in range(3)] and all(isinstance(k, str) for k in keys)


def test_oversized_file_is_rejected_unread(tmp_path, monkeypatch):
    (tmp_path / "huge.jpg").write_bytes(b"\0" * 5000)
    storage = LocalStorage(tmp_path)
    with pytest.raises(InputImageError, match="huge.jpg: 5000 bytes is larger than the limit"):
        storage.read_bytes("huge.jpg", max_bytes=4096)
    assert storage.read_bytes("huge.jpg") == b"\0" * 5000
