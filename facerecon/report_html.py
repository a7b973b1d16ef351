"""``OUT/index.html``: the batch as a page people look at, one card per input.

Each card shows the photo's thumbnail, its status, the error line of a failed input and the
timings; each face an interactive 3D view of its ``face.glb`` (Google's ``<model-viewer>``,
vendored in ``facerecon/assets/model-viewer``) with the turntable GIF as poster and fallback.

The page must work when opened from disk (``file://``), where Chromium refuses ES modules and
``fetch``. So the viewer is its UMD build, loaded as a classic script, and each face's GLB is
handed to it through a classic script too (``_report/glb/<sha>.js`` holding the GLB as base64,
turned into a ``blob:`` URL in the page), loaded only when the card scrolls into view, so the
page itself stays small for a large batch. Over http (an S3 website) the same page works as is.

Everything the report adds lives in ``OUT/_report/`` next to ``OUT/index.html``; every file is
written through the storage (atomic rename locally, one PUT on S3). No Prefect here.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path
from urllib.parse import quote

from facerecon import registry

REPORT_DIR = "_report"
INDEX = "index.html"
BATCH_INFO = f"{REPORT_DIR}/batch.json"
VIEWER_VERSION = "4.4.0"
VIEWER_ASSET = Path(__file__).parent / "assets" / "model-viewer" / "model-viewer-umd.min.js"
VIEWER_KEY = f"{REPORT_DIR}/model-viewer-{VIEWER_VERSION}-umd.min.js"
STAGES = ["read", "load", *registry.STAGE_NAMES, "publish"]  # a manifest row's steps, in the order they run


def thumbnail_key(photo_sha256: str) -> str:
    return f"{REPORT_DIR}/thumbs/{photo_sha256[:16]}.jpg"


def glb_script_key(glb_sha256: str) -> str:
    return f"{REPORT_DIR}/glb/{glb_sha256[:16]}.js"


def thumbnail_jpeg(rgb, size: int = 200) -> bytes:
    from PIL import Image

    im = Image.fromarray(rgb)
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def glb_script(glb_sha256: str, glb: bytes) -> bytes:
    """A classic script registering the GLB (base64) under its id: loadable from file://, unlike fetch."""
    b64 = base64.b64encode(glb).decode("ascii")
    return (f'(window.__faceGLB=window.__faceGLB||{{}})["{glb_sha256[:16]}"]="{b64}";\n').encode("ascii")


def describe_skipped(skipped: dict[str, str], limit: int = 20) -> str:
    """``3 skipped: x.jpg (a folder), .DS_Store (hidden), ..hidden_dots.jpg (hidden)``."""
    items = [f"{k} ({v})" for k, v in skipped.items()]
    more = f", and {len(items) - limit} more" if len(items) > limit else ""
    return f"{len(items)} skipped: " + ", ".join(items[:limit]) + more if items else "0 skipped"


def _seconds(row: dict) -> dict:
    sbs = row.get("seconds_by_stage") or {}
    if isinstance(sbs, str):
        try:
            sbs = json.loads(sbs)
        except ValueError:
            sbs = {}
    return {k: float(v) for k, v in sbs.items()} if isinstance(sbs, dict) else {}


def relative_prefix(output: str | None, base: str) -> str | None:
    """The face's key under DST from its manifest ``output`` (absolute path or s3:// URL)."""
    if not output:
        return None
    base = base.rstrip("/") + "/"
    # an OUT moved or copied since: face folders are direct children of OUT (names have no '/')
    return output[len(base):] if output.startswith(base) else output.rstrip("/").rsplit("/", 1)[-1]


def render_index(cards: list[dict], skipped: dict[str, str], *, title: str, generated: str) -> str:
    """The page (pure: cards are plain dicts, see ``write_report``)."""
    e = html.escape
    n_ok = sum(f["status"] == "ok" for c in cards for f in c["faces"])
    n_bad = sum(f["status"] != "ok" for c in cards for f in c["faces"])
    parts = [_HEAD.replace("{title}", e(title)).replace("{viewer}", quote(VIEWER_KEY)),
             f'<header><h1>{e(title)}</h1><p class="counts" id="counts">{len(cards)} inputs: '
             f'<b class="ok">{n_ok} face{"" if n_ok == 1 else "s"} ok</b>, <b class="bad">{n_bad} failed</b>, '
             f'{len(skipped)} skipped'
             f' &middot; {e(generated)} &middot; <a href="manifest.parquet">manifest.parquet</a></p>']
    if skipped:
        parts.append(f'<p class="skipped" id="skipped">{e(describe_skipped(skipped, limit=10**9))}</p>')
    parts.append("</header><main>")
    for c in cards:
        bad = any(f["status"] != "ok" for f in c["faces"])
        thumb = (f'<img class="thumb" alt="photo" src="{quote(c["thumb"])}">' if c.get("thumb")
                 else '<div class="thumb none">no preview</div>')
        parts.append(f'<section class="card {"failed" if bad else "ok"}" data-photo="{e(c["photo"])}">'
                     f'<div class="top">{thumb}<div><h2>{e(c["photo"])}</h2>')
        for f in c["faces"]:
            label = f" &middot; {e(f['face'])}" if f.get("face") and len(c["faces"]) > 1 else ""
            parts.append(f'<p class="status {e(f["status"])}">{e(f["status"])}{label}'
                         f'{" (cached)" if f.get("cached") else ""} &middot; stage {e(f["stage"])} &middot; '
                         f'{f["seconds_total"]:.1f} s</p>')
            if f.get("error"):
                parts.append(f'<p class="error">{e(f["error"])}</p>')
            if f.get("likeness"):
                parts.append(f'<p class="likeness">{e(f["likeness"])}</p>')
            if f.get("timings"):
                cells = "".join(f"<span>{e(k)} {v:.1f}s</span>" for k, v in f["timings"])
                parts.append(f'<p class="timings">{cells}</p>')
        parts.append("</div></div>")
        for f in c["faces"]:
            if f["status"] != "ok" or not f.get("prefix"):
                continue
            pre = quote(f["prefix"])
            gif = f'<img slot="poster" class="poster" alt="turntable" src="{pre}/turntable.gif">'
            if f.get("glb_js"):
                parts.append(f'<model-viewer class="face3d" camera-controls interaction-prompt="none" '
                             f'shadow-intensity="0" exposure="1.0" data-glb="{e(f["glb_id"])}" '
                             f'data-glb-js="{quote(f["glb_js"])}" alt="3D face of {e(c["photo"])}">'
                             f'{gif}</model-viewer>')
            else:
                plain = gif.replace(' slot="poster"', "")
                parts.append(f'<div class="face3d">{plain}</div>')
            parts.append(f'<p class="links"><a href="{pre}/face.glb">face.glb</a> <a href="{pre}/face.obj">face.obj'
                         f'</a> <a href="{pre}/render_front.png">front</a> <a href="{pre}/views.png">views</a> '
                         f'<a href="{pre}/result.json">result.json</a></p>')
        parts.append("</section>")
    parts.append("</main>" + _SCRIPT + "</body></html>\n")
    return "\n".join(parts)


def _cards(rows: list[dict], storage, base: str) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """Cards grouped by photo, and the GLB scripts that still need writing (key, glb key, sha)."""
    cards: dict[str, dict] = {}
    todo = []
    for r in rows:
        card = cards.setdefault(r["photo"], {"photo": r["photo"], "faces": [], "thumb": None})
        sha = r.get("photo_sha256")
        if sha and card["thumb"] is None and storage.exists(thumbnail_key(sha)):
            card["thumb"] = thumbnail_key(sha)
        secs = _seconds(r)
        face = {"status": r.get("status") or "failed", "stage": r.get("stage") or "", "face": r.get("face"),
                "error": r.get("error"), "cached": bool(r.get("cached")),
                "seconds_total": float(r.get("seconds_total") or 0.0),
                "timings": [(s, secs[s]) for s in STAGES if s in secs] +
                           [(s, v) for s, v in secs.items() if s not in STAGES]}
        prefix = relative_prefix(r.get("output"), base) if face["status"] == "ok" else None
        face["prefix"] = prefix
        if prefix:
            face["likeness"] = _likeness_line(storage, prefix)
            marker = storage.complete_marker(prefix) or {}
            glb = (marker.get("files") or {}).get("face.glb") or {}
            if glb.get("sha256"):
                face["glb_id"] = glb["sha256"][:16]
                face["glb_js"] = glb_script_key(glb["sha256"])
                todo.append((face["glb_js"], f"{prefix}/face.glb", glb["sha256"]))
        card["faces"].append(face)
    return list(cards.values()), todo


def _likeness_line(storage, prefix: str) -> str | None:
    """'identity distance to the photo (dlib, < 0.6 = same person): 0° 0.29 · …' from result.json."""
    import json

    try:
        lk = json.loads(storage.read_optional(f"{prefix}/result.json") or b"{}").get("likeness") or {}
    except ValueError:
        return None
    views = lk.get("views") or {}
    if not views:
        return None
    cells = " · ".join(f"{name.lstrip('+')}° {v['distance']:.2f}" for name, v in views.items())
    line = f"identity distance to the photo (dlib, < {lk.get('same_person_below', 0.6)} = same person): {cells}"
    if lk.get("landmark_error_front") is not None:
        line += f"; front landmark error {lk['landmark_error_front']:.3f}"
    return line


def read_manifest_rows(storage) -> list[dict]:
    import pyarrow.parquet as pq

    from facerecon.errors import StorageError

    raw = storage.read_optional("manifest.parquet")
    if raw is None:
        raise StorageError(f"{storage.url_for('manifest.parquet')}: no manifest (is this the DST of a "
                           "`facerecon run`?)")
    try:
        return pq.read_table(io.BytesIO(raw)).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a broken file
        raise StorageError(f"{storage.url_for('manifest.parquet')}: unreadable manifest ({exc})") from None


def write_report(dst: str, rows: list[dict] | None = None, skipped: dict[str, str] | None = None, *,
                 endpoint_url: str | None = None) -> str:
    """Write DST/index.html (and what it needs under DST/_report/); returns its location.

    With ``rows``/``skipped`` None they are read back from DST (manifest.parquet and
    _report/batch.json): that is ``facerecon report OUT``.
    """
    from facerecon.io.storage import open_storage

    storage = open_storage(dst, endpoint_url=endpoint_url, create=rows is not None)
    if rows is None:
        rows = read_manifest_rows(storage)
    if skipped is None:
        raw = storage.read_optional(BATCH_INFO)
        try:
            skipped = dict(json.loads(raw).get("skipped") or {}) if raw else {}
        except (ValueError, AttributeError):
            skipped = {}
    else:
        storage.write_bytes(BATCH_INFO, json.dumps({"skipped": skipped}, indent=1).encode())
    if not storage.exists(VIEWER_KEY):
        storage.write_bytes(VIEWER_KEY, VIEWER_ASSET.read_bytes())
    base = storage.url_for(INDEX)[: -len(INDEX)]
    cards, todo = _cards(rows, storage, base)
    for key, glb_key, sha in todo:
        if not storage.exists(key):
            glb = storage.read_optional(glb_key)
            if glb is not None:
                storage.write_bytes(key, glb_script(sha, glb))
    page = render_index(cards, skipped, title="facerecon batch",
                        generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    storage.write_bytes(INDEX, page.encode("utf-8"))
    return storage.url_for(INDEX)


_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f6;color:#222}
header{padding:12px 20px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:20px;margin:0 0 4px} h2{font-size:15px;margin:0 0 4px;word-break:break-all}
.ok{color:#11803a}.bad{color:#b3261e}.skipped{color:#555;margin:4px 0 0}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:14px;padding:14px 20px}
.card{background:#fff;border-radius:8px;padding:12px;border-left:5px solid #11803a;box-shadow:0 1px 3px #0002}
.card.failed{border-left-color:#b3261e}
.top{display:flex;gap:10px}.top>div{min-width:0}.thumb{width:96px;height:96px;object-fit:cover;border-radius:4px;flex:none}
.thumb.none{background:#eee;color:#999;display:flex;align-items:center;justify-content:center;font-size:12px}
.status{margin:2px 0;font-weight:600}.status.ok{color:#11803a}.status.failed,.status.no_face{color:#b3261e}
.error{margin:2px 0;color:#b3261e;font-family:ui-monospace,monospace;font-size:12px;word-break:break-word}
.timings{margin:2px 0;color:#666;font-size:11px;display:flex;flex-wrap:wrap;gap:0 6px}
.timings span{white-space:nowrap}
.face3d{display:block;width:100%;height:300px;margin-top:8px;background:#e9e9ee;border-radius:6px}
.poster{width:100%;height:100%;object-fit:contain}.links a{margin-right:8px;font-size:12px}
</style>
<script src="{viewer}"></script>
</head><body>"""

_SCRIPT = """<script>
(function () {
  // Each face's GLB arrives as a classic script (base64): file:// pages may not fetch().
  var seen = 0, loaded = 0, failed = 0;
  function status() { document.body.dataset.faces3d = loaded + "/" + seen + (failed ? " failed " + failed : ""); }
  function load(mv) {
    if (mv.dataset.requested) return;
    mv.dataset.requested = "1";
    var id = mv.dataset.glb, s = document.createElement("script");
    s.src = mv.dataset.glbJs;
    s.onload = function () {
      var b64 = (window.__faceGLB || {})[id];
      if (!b64) { failed++; status(); return; }
      delete window.__faceGLB[id];
      var bin = Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });
      mv.src = URL.createObjectURL(new Blob([bin], {type: "model/gltf-binary"}));
    };
    s.onerror = function () { failed++; status(); };
    document.head.appendChild(s);
  }
  var views = document.querySelectorAll("model-viewer[data-glb]");
  views.forEach(function (mv) {
    seen++;
    mv.addEventListener("load", function () { loaded++; mv.dataset.loaded = "1"; status(); });
    mv.addEventListener("error", function () { failed++; status(); });
  });
  status();
  if (!window.customElements || !customElements.get("model-viewer")) return;  // the GIF stays
  if ("IntersectionObserver" in window) {
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (en) { if (en.isIntersecting) { load(en.target); io.unobserve(en.target); } });
    }, {rootMargin: "400px"});
    views.forEach(function (mv) { io.observe(mv); });
  } else { views.forEach(load); }
})();
</script>"""
