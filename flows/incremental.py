"""Scheduled runs process only photos that are new or changed since the last successful run.

The state lives in DST (``_facerecon_state.json``), so it travels with the results and any
machine serving the same DST agrees on it. Per photo key it holds the content sha256, the
storage's cheap version stamp (S3 ETag, local mtime) and the manifest rows of its last run.
A photo whose stamp is unchanged is skipped without being read; one whose stamp changed is
read and hashed, and skipped if the bytes are the same (a touched file, a re-upload). Photos
that failed are not recorded, so the next run tries them again. The state is written only
after a run has finished, so a run that dies leaves the previous state in force.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from facerecon.pipeline import sha256_bytes

STATE_KEY = "_facerecon_state.json"
STATE_VERSION = 1
DONE_STATUSES = ("ok", "no_face")  # a photo with only these rows needs no retry


@dataclass
class Plan:
    todo: list[str]
    carried: list[dict] = field(default_factory=list)  # manifest rows of skipped photos, from the state
    counts: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    hashes: dict = field(default_factory=dict)


def load_state(dst_storage) -> dict:
    raw = dst_storage.read_optional(STATE_KEY)
    if raw is None:
        return {"version": STATE_VERSION, "photos": {}}
    try:
        state = json.loads(raw)
    except ValueError:
        state = None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return {"version": STATE_VERSION, "photos": {}}  # unreadable: process everything once more
    return state


def plan(src: str, dst: str, keys: list[str], endpoint_url: str | None) -> Plan:
    """Which of ``keys`` need processing, and why the rest do not."""
    from facerecon.io.storage import open_storage

    src_storage = open_storage(src, endpoint_url=endpoint_url)
    dst_storage = open_storage(dst, endpoint_url=endpoint_url, create=True)
    state = load_state(dst_storage)
    known = state["photos"]
    wanted = set(keys)
    versions = {e.key: f"{e.size}:{e.version}" for e in src_storage.list() if e.key in wanted}
    out = Plan(todo=[], state=state, versions=versions)
    counts = {"new": 0, "changed": 0, "retried": 0, "unchanged": 0}
    failed_before = set(state.get("failed", []))
    for key in keys:
        prev = known.get(key)
        if prev is None:
            counts["retried" if key in failed_before else "new"] += 1
            out.todo.append(key)
            continue
        if prev.get("stamp") != versions.get(key):
            sha = sha256_bytes(src_storage.read_bytes(key))
            out.hashes[key] = sha
            if sha != prev.get("sha256"):
                counts["changed"] += 1
                out.todo.append(key)
                continue
        counts["unchanged"] += 1
        out.carried.extend(dict(r, cached=True, stages_run="", seconds_total=0.0, seconds_by_stage={})
                           for r in prev.get("rows", []))
    out.counts = counts
    return out


def commit(p: Plan, rows_by_key: dict[str, list[dict]], dst: str, endpoint_url: str | None) -> dict:
    """Record this run's finished photos; returns the counts for the run's summary."""
    from facerecon.io.storage import open_storage

    photos = {k: v for k, v in p.state["photos"].items() if k in p.versions}  # photos gone from SRC drop out
    failed = []
    for key, rows in rows_by_key.items():
        sha = next((r.get("photo_sha256") for r in rows if r.get("photo_sha256")), None) or p.hashes.get(key)
        if rows and sha and all(r.get("status") in DONE_STATUSES for r in rows):
            photos[key] = {"sha256": sha, "stamp": p.versions.get(key), "rows": rows}
        else:
            photos.pop(key, None)
            failed.append(key)
    for key, sha in p.hashes.items():  # touched but identical: remember the new stamp, skip the hash next time
        if key in photos and key not in rows_by_key and photos[key].get("sha256") == sha:
            photos[key] = {**photos[key], "stamp": p.versions.get(key)}
    state = {"version": STATE_VERSION, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "photos": photos, "failed": failed}
    open_storage(dst, endpoint_url=endpoint_url, create=True).write_bytes(STATE_KEY, json.dumps(state).encode())
    return {**p.counts, "processed": len(rows_by_key), "failed_photos": len(failed)}


def describe(counts: dict) -> str:
    """One line for the CLI and the Prefect artifact."""
    return (f"incremental run: {counts.get('processed', 0)} photos processed ({counts.get('new', 0)} new, "
            f"{counts.get('changed', 0)} changed, {counts.get('retried', 0)} retried after failing), "
            f"{counts.get('unchanged', 0)} unchanged and skipped")
