"""Stage folders are complete or absent, and keys change exactly when they should."""

from pathlib import Path

import pytest

from facerecon.config import load_params
from facerecon.stages.workspace import finished, run_cached, stage_key


def test_interrupted_stage_leaves_nothing(tmp_path: Path):
    def crash(d: Path) -> dict:
        (d / "half.bin").write_bytes(b"x" * 10)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_cached(tmp_path, "invert", "k1", crash)
    assert finished(tmp_path, "invert", "k1") is None
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too


def test_finished_stage_is_reused(tmp_path: Path):
    calls = []

    def body(d: Path) -> dict:
        calls.append(1)
        (d / "out.txt").write_text("ok")
        return {"n": 1}

    a = run_cached(tmp_path, "combine", "k2", body)
    b = run_cached(tmp_path, "combine", "k2", body)
    assert len(calls) == 1 and not a.cached and b.cached
    assert b.summary == {"n": 1} and (b.path / "out.txt").read_text() == "ok"


def test_keys_chain_through_upstream_and_params():
    p1 = load_params(None)
    p2 = load_params(None, ["ae_optimize.steps=3"])
    up = stage_key("pose_sweep", "1", p1.pose_sweep, ["abc"])
    assert up == stage_key("pose_sweep", "1", p2.pose_sweep, ["abc"])  # other section changed: same key
    ae1 = stage_key("ae_optimize", "1", p1.ae_optimize, [up])
    ae2 = stage_key("ae_optimize", "1", p2.ae_optimize, [up])
    assert ae1 != ae2
    assert stage_key("combine", "1", p1.combine, [ae1]) != stage_key("combine", "1", p1.combine, [ae2])
    assert stage_key("combine", "2", p1.combine, [ae1]) != stage_key("combine", "1", p1.combine, [ae1])
