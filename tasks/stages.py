"""Thin Prefect tasks over the stage functions: names, cache keys, retries, tags (DESIGN.md §3).

A stage task's cache key is the stage folder it produces — ``<stage>-<key>``, the key hashing the
photo bytes (through `align`), the stage's params section, its code version and its upstream
keys — and a cached result is reused only while that folder is complete on disk, so a deleted
work folder means a recompute rather than a dangling result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from pathlib import Path
from typing import Any

from prefect import task

from facerecon import registry
from facerecon.stages.workspace import StageJob, StageOut, finished


def stage_cache_key(context: Any, parameters: dict) -> str:
    stage, job = parameters["stage"], parameters["job"]
    key = registry.stage(stage).key(job, parameters["up"])
    root = Path(job.root)
    if finished(root, stage, key) is None:
        return f"{stage}-{key}-{uuid.uuid4().hex}"  # folder missing: run, don't trust an old result
    # The persisted result names its folder, so the key names the work root too: the same stage
    # under another cache.dir must not be served a result pointing into a folder that may be gone.
    return f"{stage}-{key}-{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]}"


@task(name="stage", cache_key_fn=stage_cache_key, persist_result=True)
def run_stage(stage: str, job: StageJob, up: dict[str, StageOut]) -> StageOut:
    return registry.stage(stage).run(job, up)


def _server_configured() -> bool:
    """Tags cost a tag-concurrency round trip per task run (about 1 s on the ephemeral server's
    SQLite on 2 cores). They only matter where a `gpu` limit can exist: on a configured server."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def prefect_runner(stage: str, job: StageJob, up: dict[str, StageOut]) -> StageOut:
    """``facerecon.pipeline`` run-hook: each stage is a task run named and tagged after the stage.

    A stage whose folder is already complete is returned as it is, without a task run: a task
    run costs the Prefect database several writes (state, tag-concurrency slots), which made a
    fully cached face take 10–15 s on 2 cores; the folder is the cache's source of truth anyway.
    """
    spec = registry.stage(stage)
    done = finished(Path(job.root), stage, spec.key(job, up))
    if done is not None:
        return done
    tags = ["gpu"] if spec.accelerator and _server_configured() else []
    state = run_stage.with_options(name=stage, tags=tags, task_run_name=stage)(stage, job, up, return_state=True)
    out = state.result()
    if state.name == "Cached" and not out.cached:
        out = dataclasses.replace(out, cached=True)
    return out
