"""`facerecon serve --once`: one scheduled iteration processes only photos new or changed since the
last successful run (content hash, state in DST) and says so; the planner on its own for the
cases that need no pipeline run (touched but identical, changed bytes, failures retried)."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from ops_support import TINY, photo_bytes

from flows import incremental as inc
from flows.cli import main

pytestmark = pytest.mark.timeout(300)


def serve_once(src, dst, cache, capsys) -> tuple[int, str]:
    args = ["serve", "--once", str(src), str(dst)]
    for s in (*TINY, f"cache.dir={cache}"):
        args += ["--set", s]
    code = main(args)
    return code, " ".join(capsys.readouterr().out.split())


def test_second_run_with_no_new_photo_does_no_work(tmp_path, ops_cache, capsys):
    src, dst, cache = tmp_path / "in", tmp_path / "out", ops_cache
    src.mkdir()
    (src / "astronaut.jpg").write_bytes(photo_bytes("astronaut.jpg"))
    code, out = serve_once(src, dst, cache, capsys)
    assert code == 0, out
    assert "1 photos processed (1 new, 0 changed, 0 retried after failing), 0 unchanged" in out
    assert (dst / "astronaut" / "_complete.json").is_file()
    state = json.loads((dst / inc.STATE_KEY).read_text())
    assert list(state["photos"]) == ["astronaut.jpg"]

    (src / "astronaut.jpg").write_bytes(photo_bytes("astronaut.jpg"))  # touched: same bytes, new mtime
    os.utime(src / "astronaut.jpg", (1e9, 1e9))
    code, out = serve_once(src, dst, cache, capsys)
    assert code == 0 and "0 photos processed" in out and "1 unchanged and skipped" in out
    m = pd.read_parquet(dst / "manifest.parquet")  # still lists every photo, nothing recomputed
    assert m["photo"].tolist() == ["astronaut.jpg"] and m["status"].tolist() == ["ok"]
    assert m["stages_run"].tolist() == [""]


def test_planner_hashes_only_what_looks_changed(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir(), dst.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (src / name).write_bytes(name.encode() * 10)
    p = inc.plan(str(src), str(dst), ["a.jpg", "b.jpg", "c.jpg"], None)
    assert p.todo == ["a.jpg", "b.jpg", "c.jpg"] and p.counts["new"] == 3
    rows = {k: [{"photo": k, "status": "ok", "photo_sha256": f"sha-{k}"}] for k in ("a.jpg", "b.jpg")}
    rows["c.jpg"] = [{"photo": "c.jpg", "status": "failed", "photo_sha256": "x"}]
    from facerecon.pipeline import sha256_bytes

    for k in ("a.jpg", "b.jpg"):
        rows[k][0]["photo_sha256"] = sha256_bytes((src / k).read_bytes())
    counts = inc.commit(p, rows, str(dst), None)
    assert counts["failed_photos"] == 1

    (src / "a.jpg").write_bytes(b"a.jpg" * 10)  # same bytes, new mtime
    os.utime(src / "a.jpg", (2e9, 2e9))
    (src / "b.jpg").write_bytes(b"different")  # changed
    p = inc.plan(str(src), str(dst), ["a.jpg", "b.jpg", "c.jpg"], None)
    assert p.todo == ["b.jpg", "c.jpg"]
    assert p.counts == {"new": 0, "changed": 1, "retried": 1, "unchanged": 1}
    assert [r["photo"] for r in p.carried] == ["a.jpg"] and p.carried[0]["cached"] is True
    inc.commit(p, {}, str(dst), None)  # the touched file's new stamp is remembered: no hashing next time
    p = inc.plan(str(src), str(dst), ["a.jpg"], None)
    assert p.hashes == {} and p.todo == []


def test_a_bad_cron_is_a_user_error(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    code = main(["serve", str(tmp_path / "in"), str(tmp_path / "out"), "--cron", "every tuesday"])
    assert code == 2 and "not a cron expression" in capsys.readouterr().err
