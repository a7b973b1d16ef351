"""The benchmark pipeline as a researcher runs it: `dvc repro` of dvc.yaml with tiny params, then
`dvc metrics show`, a second `dvc repro` that does nothing, and the reports opened and checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from tiny import TINY as FACE_TINY

from facerecon.config import load_params, to_dict
from flows.benchmark import main as bench_main

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TINY = ["synth.n_train=48", "synth.n_val=4", "synth.n_test=24", "pretrain.epochs=1", "pretrain.batch_size=16",
        "pretrain.supervised_minutes=0.01", "pretrain.perceptual=none", "ae_optimize.perceptual=none",
        "ae_model.width=4", "ae_model.zdim=16", "evaluate.n_faces=24", "evaluate.n_subgroups=3",
        "evaluate.subgroup_size=8", "evaluate.repeats=2", "evaluate.finetune_steps=1", "evaluate.workers=1",
        "evaluate.product_faces=10",
        "evaluate.variants=[constant,mean_depth,mean_shape,landmarks,ae_only,ae_profile,ae_sweep,full,oracle_views,"
        "supervised,product]",
        "likeness.configs=['default:', 'dlib align: align.backend=dlib']",
        f"likeness.overrides=[{', '.join(FACE_TINY)}]"]  # the rows turn export.likeness on again
VARIANTS = ["constant", "mean_depth", "mean_shape", "landmarks", "ae_only", "ae_profile", "ae_sweep", "full",
            "oracle_views", "supervised", "product"]


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A scratch DVC project holding this repo's dvc.yaml and a tiny params.yaml."""
    d = tmp_path_factory.mktemp("dvcrepo")
    shutil.copy(ROOT / "dvc.yaml", d / "dvc.yaml")
    for pkg in ("facerecon", "flows", "tasks"):
        shutil.copytree(ROOT / pkg, d / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (d / "data" / "photos").mkdir(parents=True)  # one real photo: the likeness stage scores its 6 versions
    shutil.copy(ROOT / "data" / "photos" / "grace_hopper.jpg", d / "data" / "photos")
    params = to_dict(load_params(ROOT / "params.yaml", TINY))
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        r = run(cmd, d)
        assert r.returncode == 0, r.stderr
    r = run(["dvc", "repro"], d)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return d


def test_repro_writes_every_output(repo):
    for path in ("data/synth/train", "data/synth/test", "models/ae_synth.pt", "models/ae_synth_supervised.pt",
                 "reports/eval/per_image.parquet", "reports/metrics.json", "reports/benchmark.md"):
        assert (repo / path).exists(), path
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert list(metrics) == sorted(VARIANTS) or set(metrics) == set(VARIANTS)
    for name in VARIANTS:
        for key in ("side", "mad", "mad_exact", "side_eq61", "mad_eq62"):
            assert metrics[name][key] is not None and metrics[name][key] > 0, (name, key)
    md = (repo / "reports/benchmark.md").read_text()
    assert "0.836" in md and "Table 6.2" in md  # the thesis's numbers beside ours
    for name in VARIANTS:
        assert f"| {name} |" in md
    for png in ("side_mad.png", "subgroups.png"):
        with Image.open(repo / "reports/plots" / png) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    assert "![examples](eval/examples.png)" in md
    with Image.open(repo / "reports/eval/examples.png") as im:
        grid = np.asarray(im.convert("L"), dtype=np.float64)[16:]  # below the header of names
    tile = grid.shape[1] // (len(VARIANTS) + 2)  # image, ground truth, every variant
    assert grid.shape[0] % tile == 0 and grid.shape[0] // tile == 6
    truth, flat = grid[:, tile:2 * tile], grid[:, 2 * tile:3 * tile]  # VARIANTS[0] is "constant"
    assert truth.std() > 20  # the shaded ground truth shows a shape
    assert flat[flat > 0].std() < 1.0  # a flat map shades to one grey


def test_repro_scores_the_likeness_of_real_photos(repo):
    md = (repo / "reports/likeness/likeness.md").read_text()
    assert "| default |" in md and "| dlib align |" in md
    per_photo = pd.read_parquet(repo / "reports/likeness/per_photo.parquet")
    assert sorted(per_photo["config"].unique()) == ["default", "dlib align"]
    assert len(per_photo) == 12  # grace_hopper in 6 versions, twice
    found = per_photo[per_photo["photo_detected"]]
    assert len(found) >= 8 and found["distance_+0"].between(0.0, 2.0).all()
    with Image.open(repo / "reports/likeness/likeness.png") as im:
        assert im.size[0] > 300 and im.size[1] > 200


def test_metrics_show_and_second_repro_does_nothing(repo):
    r = run(["dvc", "metrics", "show", "--json"], repo)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert "reports/metrics.json" in json.dumps(shown)
    r = run(["dvc", "repro"], repo)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "didn't change" in out or "up to date" in out.lower(), out[-2000:]
    assert "Running stage" not in out


def test_impossible_subgroups_is_one_clear_error(repo, capsys):
    code = bench_main(["evaluate", "--params", str(repo / "params.yaml"), "--set", "evaluate.n_faces=20",
                       "--set", "evaluate.n_subgroups=10", "--set", "evaluate.subgroup_size=100"])
    assert code == 2
    err = capsys.readouterr().err
    assert "evaluate.n_subgroups" in err and "Traceback" not in err


def test_unknown_variant_is_one_clear_error(repo, capsys):
    code = bench_main(["report", "--params", str(repo / "params.yaml"), "--set", "evaluate.variants=[ae_only,magic]"])
    assert code == 2
    assert "magic" in capsys.readouterr().err


def test_more_faces_than_the_split_holds(repo, capsys):
    os.chdir(repo)
    try:
        code = bench_main(["evaluate", "--params", "params.yaml", "--set", "evaluate.n_faces=500",
                           "--set", "evaluate.variants=[constant]", "--set", "evaluate.out_dir=/nonexistent-x"])
    finally:
        os.chdir(ROOT)
    assert code == 2
    assert "holds 24 faces" in capsys.readouterr().err
