"""manifest.parquet: every input of a batch with status, stage reached, error and timings."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field

from facerecon.errors import FaceReconError

COLUMNS = ["photo", "face", "status", "stage", "error_class", "error", "output", "photo_sha256",
           "faces_in_photo", "cached", "stages_run", "seconds_total", "seconds_by_stage"]


@dataclass
class ManifestRow:
    photo: str
    face: str | None = None
    status: str = "failed"
    stage: str = "read"
    error_class: str | None = None
    error: str | None = None
    output: str | None = None
    photo_sha256: str | None = None
    faces_in_photo: int = 0
    cached: bool = False
    stages_run: str = ""  # comma-separated stages that computed (not served from the cache)
    seconds_total: float = 0.0
    seconds_by_stage: dict = field(default_factory=dict)

    def fail(self, exc: BaseException) -> None:
        self.status = "no_face" if exc.__class__.__name__ == "NoFaceError" else "failed"
        self.error_class = exc.__class__.__name__
        msg = str(exc) if isinstance(exc, FaceReconError) else f"internal error: {exc}"
        from facerecon.io.storage import display_key

        if display_key(self.photo) not in msg:  # every error names its file, also when the raiser did not
            msg = f"{display_key(self.photo)}: {msg}"
        self.error = " ".join(msg.split())[:500] or exc.__class__.__name__

    def add_stage(self, out) -> None:
        self.seconds_by_stage[out.stage] = round(0.0 if out.cached else out.seconds, 4)
        if not out.cached:
            self.stages_run = ",".join([s for s in self.stages_run.split(",") if s] + [out.stage])

    def as_dict(self) -> dict:
        """Strings made printable UTF-8 (non-UTF-8 file names, newlines), so parquet and tables take them."""
        from facerecon.io.storage import display_key

        return {k: display_key(v) if isinstance(v, str) else v for k, v in asdict(self).items()}


def manifest_bytes(rows: list[dict]) -> bytes:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {c: [r.get(c) for r in rows] for c in COLUMNS}
    cols["seconds_by_stage"] = [json.dumps(r.get("seconds_by_stage") or {}) for r in rows]
    table = pa.table({
        "photo": pa.array(cols["photo"], pa.string()),
        "face": pa.array(cols["face"], pa.string()),
        "status": pa.array(cols["status"], pa.string()),
        "stage": pa.array(cols["stage"], pa.string()),
        "error_class": pa.array(cols["error_class"], pa.string()),
        "error": pa.array(cols["error"], pa.string()),
        "output": pa.array(cols["output"], pa.string()),
        "photo_sha256": pa.array(cols["photo_sha256"], pa.string()),
        "faces_in_photo": pa.array([int(v or 0) for v in cols["faces_in_photo"]], pa.int32()),
        "cached": pa.array([bool(v) for v in cols["cached"]], pa.bool_()),
        "stages_run": pa.array([v or "" for v in cols["stages_run"]], pa.string()),
        "seconds_total": pa.array([float(v or 0.0) for v in cols["seconds_total"]], pa.float64()),
        "seconds_by_stage": pa.array(cols["seconds_by_stage"], pa.string()),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_manifest(rows: list[dict], dst: str, endpoint_url: str | None = None) -> str:
    from facerecon.io.storage import LocalStorage, open_storage

    storage = open_storage(dst, endpoint_url=endpoint_url, create=True)
    data = manifest_bytes(rows)
    if isinstance(storage, LocalStorage):  # atomic rename, synced: a crash leaves the old or the new manifest
        from facerecon.io.atomic import remove_dead_temps

        remove_dead_temps(storage.root, ".manifest.")  # temp of a run killed while writing it
        storage.write_bytes("manifest.parquet", data, fsync=True)
    else:
        storage.write_bytes("manifest.parquet", data)
    return storage.url_for("manifest.parquet")
