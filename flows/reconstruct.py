"""Prefect flows: a folder (local or s3://) of photos → one textured 3D face per photo (or per face).

``reconstruct_batch`` lists SRC, runs ``process_photo`` for each photo (the per-face stage tasks
nested inside it, see ``facerecon.pipeline``), publishes each finished face to DST in one step,
records every input in ``manifest.parquet`` and publishes a summary artifact. A face that fails
is a manifest row with its stage and error; the batch goes on.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from facerecon.config import Params, load_params
from facerecon.errors import FaceReconError
from facerecon.io.storage import display_key
from facerecon.pipeline import face_stages, sha256_bytes, work_root
from facerecon.stages.align import face_dirs
from facerecon.stages.runtime import check_backends_ready
from facerecon.stages.workspace import StageJob
from flows import progress as prog
from flows.manifest import ManifestRow, write_manifest
from tasks.stages import prefect_runner

log = logging.getLogger("facerecon")


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O hiccups, not answers that a retry cannot change (disk full, bad file, too large)."""
    from facerecon.errors import DestinationError, InputImageError

    try:
        state.result()
    except (DestinationError, InputImageError):
        return False
    except Exception:  # noqa: BLE001
        return True
    return True


@task(name="read_photo", retries=3, retry_delay_seconds=[1, 4, 10], cache_policy=NONE,
      retry_condition_fn=_worth_retrying)
def read_photo(src: str, key: str, endpoint_url: str | None, max_bytes: int | None = None) -> bytes:
    from facerecon.io.storage import open_storage

    # both storages check the size (file size / S3 Content-Length) before reading a byte of the body
    return open_storage(src, endpoint_url=endpoint_url).read_bytes(key, max_bytes=max_bytes)


@task(name="publish", retries=3, retry_delay_seconds=[1, 4, 10], cache_policy=NONE,
      retry_condition_fn=_worth_retrying)
def publish(local_dir: str, dst: str, prefix: str, endpoint_url: str | None, meta: dict | None = None) -> str:
    """The face folder → DST/prefix, complete or not at all; skipped when DST already holds this
    very result (same export key in its _complete.json), so a re-run uploads only what is missing."""
    from facerecon.io.storage import open_storage

    storage = open_storage(dst, endpoint_url=endpoint_url, create=True)
    marker = storage.complete_marker(prefix)
    if not (meta and marker and marker.get("meta", {}).get("export_key") == meta.get("export_key")):
        storage.put_tree(Path(local_dir), prefix, meta)
    return storage.url_for(prefix)


RESERVED_OUTPUTS = frozenset({"manifest.parquet", "_staging", "_report", "index.html"})


def output_prefix(photo_key: str, face_index: int, all_faces: bool, stem: str | None = None) -> str:
    from facerecon.io.storage import safe_relative_key

    stem = stem or safe_relative_key(photo_key.rsplit(".", 1)[0] if "." in photo_key else photo_key)
    if stem.lower() in RESERVED_OUTPUTS:  # a photo called manifest.parquet.jpg must not replace the manifest
        stem = f"{stem}-photo"
    return f"{stem}_face{face_index}" if all_faces else stem


def output_stems(keys: list[str]) -> dict[str, str]:
    """Output folder stem per photo key; photos that would share one (a.jpg, a.png) keep their suffix."""
    from facerecon.io.storage import safe_relative_key

    plain = {k: safe_relative_key(k.rsplit(".", 1)[0] if "." in k else k) for k in keys}
    seen: dict[str, int] = {}
    for stem in plain.values():
        seen[stem.lower()] = seen.get(stem.lower(), 0) + 1
    return {k: (safe_relative_key(k) if seen[stem.lower()] > 1 else stem) for k, stem in plain.items()}


@task(name="process_photo", cache_policy=NONE)
def process_photo(src: str, dst: str, key: str, params: Params, endpoint_url: str | None = None,
                  stem: str | None = None) -> list[dict]:
    """Everything for one photo; returns manifest rows (one per face, or one for a failed photo).

    A DestinationError (DST or the cache cannot take writes) is raised, not recorded: it would
    fail every remaining photo the same way, so it ends the batch with one message.
    """
    from facerecon.io.images import ImageLimits, load_image

    t0 = time.perf_counter()
    row = ManifestRow(photo=key)
    prog.start_photo(key)
    try:
        row.stage = "read"
        limits = ImageLimits.from_params(params.input)
        data = read_photo(src, key, endpoint_url, limits.max_bytes)
        row.photo_sha256 = sha256_bytes(data)
        row.stage = "load"
        img = load_image(data, display_key(key), limits)
        del data  # only the decoded pixels go on; a batch never holds more than one photo's bytes
        _write_thumbnail(dst, endpoint_url, row.photo_sha256, img.rgb)
        root = work_root(params.cache.dir, row.photo_sha256)
        row.stage = "align"
        prog.stage("align")
        photo_job = StageJob(params, root, rgb=img.rgb, photo_sha=row.photo_sha256)
        aligned = prefect_runner("align", photo_job, {})
    except Exception as exc:  # noqa: BLE001 - every failure becomes a manifest row
        _raise_if_out_of_space(exc)
        row.fail(exc)
        row.seconds_total = time.perf_counter() - t0
        prog.end_photo(ok=False)
        _log_failure(row, exc)
        return [row.as_dict()]
    rows = []
    photo_info = {"key": key, "sha256": row.photo_sha256, "source": src, "notes": list(img.notes)}
    for i, fdir in enumerate(face_dirs(aligned)):
        frow = ManifestRow(photo=key, photo_sha256=row.photo_sha256, face=fdir.name,
                           faces_in_photo=int(aligned.summary.get("faces_in_photo", 1)))
        frow.add_stage(aligned)
        try:
            stages = face_stages(aligned, photo_job.for_face(fdir, {**photo_info, "face": fdir.name}),
                                 run=_recording_runner(frow), progress=prog.stage)
            frow.stage = "publish"
            prefix = output_prefix(key, i, params.align.all_faces, stem)
            frow.output = publish(stages["export"].dir, dst, prefix, endpoint_url,
                                  {"export_key": stages["export"].key, "photo_sha256": row.photo_sha256})
            frow.status = "ok"
            frow.stage = "done"
            frow.cached = all(o.cached for o in stages.values())
        except Exception as exc:  # noqa: BLE001
            _raise_if_out_of_space(exc)
            frow.fail(exc)
            _log_failure(frow, exc)
        frow.seconds_total = time.perf_counter() - t0
        rows.append(frow.as_dict())
    prog.end_photo(ok=all(r["status"] == "ok" for r in rows))
    return rows


def _write_thumbnail(dst: str, endpoint_url: str | None, sha: str, rgb: Any) -> None:
    """The photo's thumbnail for DST/index.html; a failure here only costs the report its picture."""
    from facerecon.io.storage import open_storage
    from facerecon.report_html import thumbnail_jpeg, thumbnail_key

    try:
        storage = open_storage(dst, endpoint_url=endpoint_url, create=True)
        key = thumbnail_key(sha)
        if not storage.exists(key):
            storage.write_bytes(key, thumbnail_jpeg(rgb))
    except Exception as exc:  # noqa: BLE001
        log.debug("thumbnail not written: %s", exc)


def _raise_if_out_of_space(exc: Exception) -> None:
    """Disk full / read-only / permission denied where we write: stop the batch, one clear error."""
    import errno

    from facerecon.errors import DestinationError

    if isinstance(exc, DestinationError):
        raise exc
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        where = f"{exc.filename}: " if exc.filename else ""
        raise DestinationError(f"{where}cannot write ({exc.strerror or exc})") from None


def _recording_runner(row: ManifestRow):
    def run(stage: str, job: StageJob, up: dict):
        row.stage = stage
        out = prefect_runner(stage, job, up)
        row.add_stage(out)
        return out

    return run


def _log_failure(row: ManifestRow, exc: Exception) -> None:
    try:
        logger = get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run context
        logger = log
    if isinstance(exc, FaceReconError):
        logger.warning("%s: %s failed: %s", row.photo, row.stage, exc)
    else:
        logger.error("%s: %s failed with %s\n%s", row.photo, row.stage, exc.__class__.__name__,
                     "".join(traceback.format_exception(exc)))


def scan_inputs(src: str, endpoint_url: str | None, include_hidden: bool = False) -> tuple[list[str], dict[str, str]]:
    """Every entry of SRC is either a photo key (a manifest row follows) or a named skip (key -> reason).

    Hidden names (``.DS_Store``, ``..x.jpg``) are skipped unless ``include_hidden``; hidden folders
    always are (.git, temp folders). A folder named like a photo (``x.jpg/``) is named as a skip,
    and what is inside it is still listed.
    """
    from facerecon.io.images import is_image_name
    from facerecon.io.storage import open_storage

    storage = open_storage(src, endpoint_url=endpoint_url)
    skipped: dict[str, str] = {}
    keys = []
    for entry in storage.list(skipped=skipped):
        parts = entry.key.split("/")
        for i in range(1, len(parts)):  # S3 has no folders, only keys: x.jpg/a.png implies one
            folder = "/".join(parts[:i])
            if is_image_name(parts[i - 1]) and folder not in skipped:
                skipped[folder] = "a folder"
        name = parts[-1]
        if name.startswith(".") and not include_hidden:
            skipped[entry.key] = "hidden"
        elif name.startswith("_"):
            skipped[entry.key] = "name starts with _"
        elif not is_image_name(name) and any(name.lower().endswith(s) for s in _NON_IMAGES):
            skipped[entry.key] = f"not a photo: .{name.rsplit('.', 1)[-1]}"
        else:
            keys.append(entry.key)
    return keys, {display_key(k): v for k, v in skipped.items()}


def list_photos(src: str, endpoint_url: str | None, include_hidden: bool = False) -> list[str]:
    return scan_inputs(src, endpoint_url, include_hidden)[0]


_NON_IMAGES = (".json", ".parquet", ".md", ".txt", ".yaml", ".yml", ".csv", ".obj", ".mtl", ".glb",
               ".npy", ".pt", ".dvc")


@flow(name="reconstruct-batch", log_prints=False, validate_parameters=False)
def reconstruct_batch(src: str, dst: str, params: Params, endpoint_url: str | None = None,
                      incremental: bool = False, include_hidden: bool = False) -> dict:
    """All photos in SRC → faces in DST, manifest.parquet and a summary artifact.

    ``incremental``: only photos new or changed since the last successful run (flows/incremental.py);
    the manifest still lists every photo, the skipped ones with their previous rows.
    """
    from flows import incremental as inc

    check_backends_ready(params)  # missing weights: fail before any face is processed
    keys, skipped = scan_inputs(src, endpoint_url, include_hidden)
    plan = inc.plan(src, dst, keys, endpoint_url) if incremental else None
    todo = plan.todo if plan else keys
    prog.start_batch(len(todo))
    stems = output_stems(keys)  # over all keys: a face keeps its folder name whatever else changed
    futures = [process_photo.submit(src, dst, k, params, endpoint_url, stems[k]) for k in todo]
    rows: list[dict] = []
    rows_by_key: dict[str, list[dict]] = {}
    for key, fut in zip(todo, futures, strict=True):
        rows_by_key[key] = fut.result()
        rows.extend(rows_by_key[key])
    manifest_url = write_manifest(rows + (plan.carried if plan else []), dst, endpoint_url)
    summary = summarize(rows, skipped)
    summary["manifest"] = manifest_url
    if plan:
        summary["incremental"] = inc.commit(plan, rows_by_key, dst, endpoint_url)
    summary["report"] = write_batch_report(rows + (plan.carried if plan else []), skipped, dst, endpoint_url)
    _publish_artifacts(rows, summary)
    return summary


def write_batch_report(rows: list[dict], skipped: dict[str, str], dst: str, endpoint_url: str | None) -> str | None:
    """DST/index.html; a report that cannot be written is logged, never a failed batch (the faces are
    published) -- except when DST itself takes no more writes."""
    from facerecon.errors import DestinationError
    from facerecon.report_html import write_report

    try:
        return write_report(dst, rows, skipped, endpoint_url=endpoint_url)
    except DestinationError:
        raise
    except Exception as exc:  # noqa: BLE001
        log.warning("index.html not written: %s", exc)
        return None


def summarize(rows: list[dict], skipped: dict[str, str] | None = None) -> dict:
    ok = sum(r["status"] == "ok" for r in rows)
    return {"photos": len({r["photo"] for r in rows}), "faces_ok": ok, "failed": len(rows) - ok,
            "rows": rows, "skipped": dict(skipped or {})}


def _publish_artifacts(rows: list[dict], summary: dict) -> None:
    try:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact

        from flows.incremental import describe

        table = [{"photo": r["photo"], "face": r.get("face") or "", "status": r["status"], "stage": r["stage"],
                  "seconds": round(r.get("seconds_total") or 0.0, 2), "error": r.get("error") or "",
                  "output": r.get("output") or ""} for r in rows]
        create_table_artifact(key="faces", table=table, description="facerecon batch: one row per face")
        from facerecon.report_html import describe_skipped

        md = [f"# facerecon batch\n\n{summary['faces_ok']} faces reconstructed, {summary['failed']} failed, "
              f"from {summary['photos']} photos.\n"]
        if summary.get("skipped"):
            md.append(describe_skipped(summary["skipped"]) + ".\n")
        if summary.get("report"):
            md.append(f"Report: {summary['report']}\n")
        if "incremental" in summary:
            md.append(describe(summary["incremental"]) + ".\n")
        md += ["| photo | face | status | stage | s | output | front render |", "|---|---|---|---|---|---|---|"]
        for r in table:
            render = f"[render_front.png]({r['output']}/render_front.png)" if r["status"] == "ok" else ""
            md.append(f"| {r['photo']} | {r['face']} | {r['status']} | {r['stage']} | {r['seconds']} | {r['output']} "
                      f"| {render} |")
        create_markdown_artifact(key="batch-summary", markdown="\n".join(md))
    except Exception as exc:  # noqa: BLE001 - artifacts are a nicety; never fail a batch for them
        log.debug("artifact publication failed: %s", exc)


def check_destination(dst: str, endpoint_url: str | None) -> None:
    """DST must take a file before any photo is processed (read-only, permission, full disk)."""
    from facerecon.io.storage import LocalStorage, open_storage

    storage = open_storage(dst, endpoint_url=endpoint_url, create=True)
    if isinstance(storage, LocalStorage):
        storage.check_writable()


def run_batch(src: str, dst: str, params_file: str | None = None, overrides: tuple[str, ...] = (), *,
              workers: int = 1, dask_address: str | None = None, endpoint_url: str | None = None,
              incremental: bool = False, include_hidden: bool = False) -> dict:
    """Entry point used by the CLI and tests: load params (errors before any work), pick the runner."""
    from flows.server import ensure_gpu_limit
    params = load_params(params_file, overrides)
    check_backends_ready(params)  # before Prefect starts: a missing file is one line, no traceback
    check_destination(dst, endpoint_url)
    ensure_gpu_limit()  # with a Prefect server configured: the `gpu` tag limit exists before any task
    return batch_flow(workers, dask_address)(src, dst, params, endpoint_url, incremental, include_hidden)


def batch_flow(workers: int = 1, dask_address: str | None = None):
    """`reconstruct_batch` with its task runner: one photo at a time in this process (the native
    detectors are not thread-safe), or ``workers`` Dask processes, or a Dask cluster's."""
    if workers > 1 or dask_address:
        from prefect_dask import DaskTaskRunner

        kwargs = {"address": dask_address} if dask_address else {
            "cluster_kwargs": {"n_workers": workers, "threads_per_worker": 1, "processes": True}}
        return reconstruct_batch.with_options(task_runner=DaskTaskRunner(**kwargs))
    from prefect.task_runners import ThreadPoolTaskRunner

    return reconstruct_batch.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
