"""params.yaml → dataclasses: every mistake is one clear error naming the key."""

from pathlib import Path

import pytest

from facerecon.config import Params, load_params, section_hash
from facerecon.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_repo_params_yaml_loads_and_matches_stage_names():
    params = load_params(ROOT / "params.yaml")
    for stage in ("align", "invert", "pose_sweep", "dreambooth", "profile", "ae_optimize", "combine",
                  "correct", "export", "synth", "pretrain", "evaluate"):
        assert hasattr(params, stage)


@pytest.mark.parametrize("override, needle", [
    ("ae_optimize.stpes=5", "ae_optimize.stpes: unknown key"),
    ("ae_optimize.steps=five", "ae_optimize.steps: expected an integer"),
    ("ae_optimize.steps=-1", "ae_optimize.steps: -1 is below the minimum 0"),
    ("invert.backend=stylegan9", "invert.backend: 'stylegan9' is not one of"),
    ("combine.enabled=yes please", "combine.enabled: expected true/false"),
    ("nosuchstage.x=1", "nosuchstage: unknown key"),
    ("correct.source_layer=20", "source_layer"),
    ("pose_sweep.alpha_min=8", "alpha_min"),
    ("evaluate.n_faces=500", "need 1000 faces, but n_faces is 500"),
])
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(ConfigError) as err:
        load_params(None, [override])
    assert needle in str(err.value)


def test_overrides_and_types():
    p = load_params(None, ["ae_optimize.steps=7", "combine.blur_sigma=3", "evaluate.variants=[ae_only]"])
    assert p.ae_optimize.steps == 7
    assert isinstance(p.combine.blur_sigma, float) and p.combine.blur_sigma == 3.0
    assert p.evaluate.variants == ("ae_only",)
    assert hash(p)  # frozen and hashable


def test_exponent_without_dot_is_a_number():
    # YAML 1.1 reads 5e-4 as the string "5e-4"; a float setting must still take it
    assert load_params(None, ["pretrain.lr=5e-4"]).pretrain.lr == pytest.approx(5e-4)
    with pytest.raises(ConfigError, match="pretrain.lr: expected a number"):
        load_params(None, ["pretrain.lr=5e-4x"])


def test_section_hash_changes_only_with_its_section():
    a, b = Params(), load_params(None, ["ae_optimize.steps=3"])
    assert section_hash(a.align) == section_hash(b.align)
    assert section_hash(a.ae_optimize) != section_hash(b.ae_optimize)


def test_missing_and_broken_params_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("align: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("align: 3\n")
    with pytest.raises(ConfigError, match="align: expected a mapping"):
        load_params(notmap)
