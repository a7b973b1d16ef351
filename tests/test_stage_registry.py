"""The stage and variant registries: each fact written once, and a new backend is one class + one line."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny import TINY

from facerecon import registry
from facerecon.config import load_params
from facerecon.errors import ConfigError
from facerecon.stages.base import AlignedFace, InvertResult, View, alpha_yaws
from flows.cli import main

ROOT = Path(__file__).resolve().parent.parent
CODE = [p for d in ("facerecon", "flows", "tasks") for p in sorted((ROOT / d).rglob("*.py"))]


class StillSweep:
    """A toy offline pose-sweep backend: every view is the aligned photo itself, unturned.

    (An ablation a researcher might want: fine-tuning on the front alone, as many times.)"""

    def __init__(self, params, device) -> None:
        self.params = params

    def check_ready(self) -> None:
        return None

    def sweep(self, face: AlignedFace, inverted: InvertResult, alphas: list[int], workdir: Path) -> list[View]:
        size = self.params.pose_sweep.image_size
        image = np.asarray(Image.fromarray(face.image).resize((size, size), Image.BILINEAR))
        return [View(image=image, yaw=yaw, name=f"sweep_a{a:+d}", alpha=float(a))
                for a, yaw in zip(alphas, alpha_yaws(alphas, self.params), strict=True)]


def test_a_new_pose_sweep_backend_is_one_class_and_one_registry_line(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="pose_sweep.backend: 'still' is not one of reproject, interfacegan"):
        load_params(overrides=["pose_sweep.backend=still"])
    monkeypatch.setitem(registry.stage("pose_sweep").backends, "still", f"{__name__}:StillSweep")  # the one line

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(ROOT / "data" / "photos" / "astronaut.jpg").convert("RGB").resize((256, 256)).save(photos / "a.jpg")
    args = [a for s in TINY + ["pose_sweep.backend=still", f"cache.dir={tmp_path / 'cache'}"] for a in ("--set", s)]
    assert main(["run", str(photos), str(tmp_path / "out"), "--no-progress", *args]) == 0

    result = json.loads((tmp_path / "out" / "a" / "result.json").read_text())
    sweep = result["stages"]["pose_sweep"]["summary"]
    assert sweep["backend"] == "still"
    assert [v["name"] for v in sweep["views"]] == [f"sweep_a{a:+d}" for a in range(-7, 7)]
    folder = next((tmp_path / "cache").rglob("pose_sweep-*"))
    views = [np.asarray(Image.open(p)) for p in sorted(folder.glob("sweep_a*.png"))]
    assert len(views) == 14 and all(np.array_equal(v, views[0]) for v in views)  # the toy's views, unturned
    assert not (folder / "frontal_texture.png").exists()  # not the reproject backend's folder
    assert (tmp_path / "out" / "a" / "face.glb").is_file()  # and the stages after it took them


def test_every_stage_has_one_signature_and_reads_only_earlier_stages():
    seen: list[str] = []
    for spec in registry.STAGES:
        for kind in ("key", "run"):
            fn = spec._function(kind)
            assert list(inspect.signature(fn).parameters) == ["job", "up"], f"{kind}_{spec.name}"
        assert set(spec.upstream) <= set(seen), spec.name
        for name, target in spec.backends.items():
            module, cls = target.split(":")
            assert isinstance(getattr(__import__(module, fromlist=[cls]), cls), type), f"{spec.name}.{name}"
        seen.append(spec.name)
    assert [s.name for s in registry.FACE_STAGES] == list(registry.STAGE_NAMES[1:])


def _literal_name_lists(names: set[str]) -> list[str]:
    """Where the code writes three or more of ``names`` in one list/tuple/set/dict literal."""
    found = []
    for path in CODE:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
            if not isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)) or not items:
                continue
            hits = {n.value for n in items if isinstance(n, ast.Constant) and n.value in names}
            if len(hits) >= 3:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {sorted(hits)}")
    return found


def test_stage_names_are_listed_only_in_the_stage_registry():
    found = [f for f in _literal_name_lists(set(registry.STAGE_NAMES)) if not f.startswith("facerecon/registry.py")]
    assert not found, found


def test_variant_names_are_listed_only_in_the_variant_registry():
    found = [f for f in _literal_name_lists(set(registry.VARIANT_NAMES))
             if not f.startswith("facerecon/registry.py")]
    assert not found, found


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_two_packages_import_each_other():
    """facerecon's packages (and top-level modules) form no import cycle, lazy imports included."""
    edges: dict[str, set[str]] = {}
    for path in (ROOT / "facerecon").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module == "facerecon":
                names = [f"facerecon.{a.name}" for a in node.names]
            for name in names:
                if name.startswith("facerecon.") and _package(name) != _package(module):
                    edges.setdefault(_package(module), set()).add(_package(name))
    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if a < b and a in edges.get(b, ()))
    assert not cycles, cycles


def test_the_default_variants_are_the_registry_and_unknown_ones_are_refused():
    assert list(load_params().evaluate.variants) == list(registry.VARIANT_NAMES)
    from flows.benchmark import check_variants

    with pytest.raises(ConfigError, match="evaluate.variants: unknown"):
        check_variants(load_params(overrides=["evaluate.variants=[ae_only, nope]"]))
