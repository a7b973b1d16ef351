"""OUT/index.html, as a user gets it: one real batch (a real face, a broken JPEG, an animated GIF,
hidden files and a folder named like a photo) through the CLI, then the page opened from disk
in headless Chromium: no console errors, the 3D view draws and turns, the failed input shows its
error. The screenshot goes to docs/report_batch.png. ``facerecon report OUT`` rebuilds the page.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from browser_support import Browser, pixel_std, require_chromium
from PIL import Image

from flows.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TINY = ["align.output_size=128", "pose_sweep.image_size=64", "profile.image_size=64", "ae_optimize.steps=2",
        "ae_optimize.batch_size=4", "export.mesh_resolution=32", "export.render_size=64",
        "export.texture_size=64", "export.turntable_frames=3"]
SKIPS = {"x.jpg": "a folder", ".DS_Store": "hidden", "..hidden_dots.jpg": "hidden"}


def make_inputs(src: Path) -> None:
    face = ROOT / "data" / "photos" / "astronaut.jpg"
    shutil.copy(face, src / "astronaut.jpg")
    shutil.copy(face, src / "..hidden_dots.jpg")  # a valid JPEG, but a hidden name
    (src / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (src / "x.jpg").mkdir()  # a folder named like a photo
    (src / "broken.jpg").write_bytes(face.read_bytes()[:3000])
    im = Image.open(face).convert("RGB")
    im.thumbnail((160, 160))
    im.save(src / "anim.gif", save_all=True, append_images=[im.rotate(15)], duration=100)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    src, dst = base / "photos", base / "out"
    src.mkdir()
    make_inputs(src)
    args = [a for s in TINY + [f"cache.dir={base / 'cache'}"] for a in ("--set", s)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", str(src), str(dst), "--no-progress", *args])
    return src, dst, code, out.getvalue()


def test_every_input_is_a_card_or_a_named_skip(batch):
    src, dst, code, stdout = batch
    assert code == EXIT_SOME_FAILED
    line = next(ln for ln in stdout.splitlines() if "skipped:" in ln)
    assert line.startswith("3 skipped: ")
    for name, why in SKIPS.items():
        assert f"{name} ({why})" in line, line
    assert f"report:   {dst / 'index.html'}" in stdout
    page = (dst / "index.html").read_text()
    for name in ("astronaut.jpg", "broken.jpg", "anim.gif"):
        assert f'data-photo="{name}"' in page
    assert "corrupt or truncated" in page and "format GIF is not accepted (unsupported format" in page
    assert "x.jpg (a folder)" in page and "..hidden_dots.jpg (hidden)" in page
    assert json.loads((dst / "_report" / "batch.json").read_text())["skipped"] == {
        "x.jpg": "a folder", "..hidden_dots.jpg": "hidden", ".DS_Store": "hidden"}
    # the page needs nothing outside OUT: every local src/href resolves under it
    assert (dst / "_report" / "model-viewer-4.4.0-umd.min.js").is_file()
    assert len(list((dst / "_report" / "glb").glob("*.js"))) == 1
    assert len(list((dst / "_report" / "thumbs").glob("*.jpg"))) == 1


def test_report_command_rebuilds_the_page(batch, tmp_path, capsys):
    src, dst, _, _ = batch
    copy = tmp_path / "out"
    shutil.copytree(dst, copy)
    (copy / "index.html").unlink()
    shutil.rmtree(copy / "_report" / "glb")
    assert main(["report", str(copy)]) == EXIT_OK
    assert capsys.readouterr().out.strip() == str(copy / "index.html")
    rebuilt = (copy / "index.html").read_text()
    assert 'data-photo="broken.jpg"' in rebuilt and "x.jpg (a folder)" in rebuilt
    assert len(list((copy / "_report" / "glb").glob("*.js"))) == 1
    # a folder that is no batch output: one line, no traceback
    assert main(["report", str(tmp_path / "nothing")]) == EXIT_USAGE
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no manifest" in err and "Traceback" not in err


def test_include_hidden_processes_hidden_files(tmp_path):
    from flows.reconstruct import scan_inputs

    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("x")
    (tmp_path / "..hidden_dots.jpg").write_bytes(b"x")
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    keys, skipped = scan_inputs(str(tmp_path), None)
    assert keys == ["a.jpg"]
    assert skipped == {".git": "hidden folder", "..hidden_dots.jpg": "hidden", "notes.txt": "not a photo: .txt"}
    keys, skipped = scan_inputs(str(tmp_path), None, include_hidden=True)
    assert keys == ["..hidden_dots.jpg", "a.jpg"] and ".git" in skipped


def test_report_page_in_chromium(batch):
    binary = require_chromium()
    src, dst, _, _ = batch
    with Browser(binary, width=1280, height=900) as b:
        b.open((dst / "index.html").as_uri())
        b.wait_for("document.body.dataset.faces3d === '1/1'", timeout=120)
        assert b.eval("customElements.get('model-viewer') !== undefined")
        mv = "model-viewer.face3d"
        b.wait_for(f"document.querySelector('{mv}').loaded", timeout=60)
        # the 3D canvas itself (not the GIF poster) has drawn a face: its pixels vary
        canvas_png = b.eval(f"document.querySelector('{mv}').toDataURL('image/png')")
        import base64

        canvas = base64.b64decode(canvas_png.split(",", 1)[1])
        assert pixel_std(canvas) > 8, "the 3D view is blank"
        # turn it with the mouse: a drag changes the camera's orbit and the picture
        clip = b.element_clip(mv)
        theta0 = b.eval(f"document.querySelector('{mv}').getCameraOrbit().theta")
        x, y = clip["x"] + clip["width"] / 2, clip["y"] - b.eval("window.scrollY") + clip["height"] / 2
        b.send("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
        for i in range(1, 11):
            b.send("Input.dispatchMouseEvent", type="mouseMoved", x=x + 12 * i, y=y, button="left", buttons=1)
        b.send("Input.dispatchMouseEvent", type="mouseReleased", x=x + 120, y=y, button="left", clickCount=1)
        b.wait_for(f"Math.abs(document.querySelector('{mv}').getCameraOrbit().theta - {theta0}) > 0.2", 30)
        # the failed input shows its error on its card, visibly
        err = b.eval("(() => { const c = document.querySelector('section[data-photo=\"broken.jpg\"] .error');"
                     " const r = c.getBoundingClientRect(); return [c.innerText, r.width * r.height]; })()")
        assert "broken.jpg: corrupt or truncated" in err[0] and err[1] > 0
        b.send("Input.dispatchMouseEvent", type="mouseMoved", x=1, y=1)
        b.eval("window.scrollTo(0, 0)")
        DOCS.mkdir(exist_ok=True)
        shot = b.screenshot(full_page=True)
        (DOCS / "report_batch.png").write_bytes(shot)
        assert pixel_std(b.screenshot(clip=b.element_clip(mv))) > 8
        assert b.errors == [], b.errors


def test_serve_takes_include_hidden_to_each_scheduled_run(monkeypatch):
    """`serve --include-hidden` reaches the served flow's parameters (what each scheduled run gets)."""
    import flows.serve as served
    from flows.cli import build_parser

    args = build_parser().parse_args(["serve", "--include-hidden", "src", "dst"])
    assert args.include_hidden
    seen = {}

    def fake_run_batch(src, dst, params_file, overrides, **kw):
        seen.update(kw)
        return {"faces_ok": 0, "failed": 0, "incremental": {}}

    monkeypatch.setattr("flows.reconstruct.run_batch", fake_run_batch)
    monkeypatch.setattr(served, "get_run_logger", lambda: __import__("logging").getLogger("test"))  # no run context
    served.scheduled_batch.fn("src", "dst", include_hidden=True)
    assert seen["include_hidden"] is True and seen["incremental"] is True
