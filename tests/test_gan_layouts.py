"""Checkpoint layouts: our modules and the tiny checkpoints the tests save follow the written list
of the published key names and shapes (facerecon.gan.layouts)."""

from __future__ import annotations

import pytest
import torch

from facerecon.errors import CheckpointError
from facerecon.gan import layouts as L
from facerecon.gan.checkpoints import load_e4e, load_generator, load_hyperstyle, save_checkpoint, torch_load
from facerecon.gan.encoders import EncoderConfig, build_encoder
from facerecon.gan.hypernet import HypernetConfig, SharedWeightsHyperNetResNet
from facerecon.gan.interfacegan import load_direction
from facerecon.gan.stylegan2 import Generator, GeneratorConfig
from facerecon.gan.tiny import GanSpec, write_gan_models


def meta_state(build) -> dict:
    """State dict of a module built without memory (shapes only)."""
    with torch.device("meta"):
        return build().state_dict()


@pytest.mark.parametrize("size,cm", [(1024, 2), (512, 2), (256, 2), (256, 1)])
def test_generator_matches_published_layout(size, cm):
    state = meta_state(lambda: Generator(GeneratorConfig(size=size, channel_multiplier=cm)))
    assert L.check_layout(state, L.generator_layout(size, channel_multiplier=cm)) == []


def test_published_generator_facts():
    lay = L.generator_layout(1024)
    # well-known facts of stylegan2-ffhq-config-f: 18 W+ rows, 17 noise inputs, 30.37 M weights
    assert sum(1 for k in lay if k.startswith("noises.")) == 17
    assert lay["noises.noise_16"] == (1, 1, 1024, 1024)
    assert lay["style.8.weight"] == (512, 512) and "style.9.weight" not in lay
    assert lay["to_rgbs.7.conv.weight"] == (1, 3, 32, 1, 1)
    assert lay["convs.15.conv.weight"] == (1, 32, 32, 3, 3)
    n_params = sum(int(torch.Size(s).numel()) for k, s in lay.items()
                   if not (k.startswith("noises.") or k.endswith(".kernel")))
    assert n_params == 30_370_060
    assert GeneratorConfig(size=1024).n_latent == 18


def test_hyperstyle_layer_table_matches_generator_layers():
    """HyperStyle's published per-layer (kernel, in, out) table is the generator's conv list."""
    layers = L.generator_conv_layers(1024)
    assert {i: tuple(v) for i, v in enumerate(layers)} == L.HYPERSTYLE_PARAMETERS_1024
    assert GeneratorConfig(size=1024).conv_layers() == layers
    assert tuple(i for i, (k, _, _) in enumerate(layers) if k == 1) == L.HYPERSTYLE_TO_RGB_1024


def test_encoders_and_hypernet_match_published_layouts():
    e4e = meta_state(lambda: build_encoder(EncoderConfig(kind="Encoder4Editing")))
    assert L.check_layout(e4e, L.e4e_encoder_layout()) == []
    assert e4e["body.23.res_layer.5.fc1.weight"].shape == (32, 512, 1, 1)  # IR-SE-50: 24 units, SE ratio 16
    psp = meta_state(lambda: build_encoder(EncoderConfig(kind="GradualStyleEncoder")))
    assert set(psp) == set(e4e)
    wenc = meta_state(lambda: build_encoder(EncoderConfig(kind="WEncoder")))
    assert L.check_layout(wenc, L.w_encoder_layout()) == []
    for sep in (False, True):
        kind = "SharedWeightsHyperNetResNetSeparable" if sep else "SharedWeightsHyperNetResNet"
        hyper = meta_state(lambda k=kind: SharedWeightsHyperNetResNet(HypernetConfig(kind=k)))
        assert L.check_layout(hyper, L.hypernet_layout(separable=sep)) == []
    # the shared hypernetwork appears under every shared block, as in the published file
    assert hyper["refinement_blocks.0.hypernet.w2"].shape == (512, 512 * 512)
    assert "refinement_blocks.1.convs.0.weight" not in hyper  # to_rgb1 is not tuned by default


def test_tiny_checkpoints_follow_the_layouts(tmp_path):
    spec = GanSpec()
    paths = write_gan_models(tmp_path, spec)
    gen_lay = L.generator_layout(spec.size, spec.style_dim, spec.n_mlp, spec.channel_multiplier, spec.channel_max)
    enc_args = dict(widths=spec.encoder_widths, units=spec.encoder_units)
    g = torch_load(paths["generator"])
    assert set(L.GENERATOR_FILE_KEYS) <= set(g)
    assert L.check_layout(g["g_ema"], gen_lay) == []

    hs = torch_load(paths["hyperstyle"])
    assert set(L.HYPERSTYLE_FILE_KEYS) <= set(hs)
    hyper_lay = L.hypernet_layout(spec.size, spec.channel_multiplier, spec.channel_max, input_size=spec.encoder_size,
                                  widths=spec.hyper_widths, units=spec.hyper_units,
                                  layers_to_tune=spec.layers_to_tune, shared_layers=spec.shared_layers,
                                  hyper_dim=spec.hyper_dim, inner_c=spec.inner_c, hyper_inner_c=spec.hyper_inner_c)
    want = {**L.prefixed("hypernet", hyper_lay), **L.prefixed("decoder", gen_lay)}
    assert L.check_layout(hs["state_dict"], want) == []
    # the tiny set exercises all three refinement block kinds
    kinds = {("hyper" if f"hypernet.refinement_blocks.{i}.linear.weight" in hs["state_dict"] else "plain", k)
             for i, (k, _, _) in enumerate(L.generator_conv_layers(spec.size, 2, spec.channel_max))
             if i in spec.layers_to_tune}
    assert kinds == {("hyper", 3), ("plain", 3), ("plain", 1)}

    e4e = torch_load(paths["e4e"])
    assert set(L.E4E_FILE_KEYS) <= set(e4e)
    want = {**L.prefixed("encoder", L.e4e_encoder_layout(8, spec.style_dim, spec.encoder_size, **enc_args)),
            **L.prefixed("decoder", gen_lay)}
    assert L.check_layout(e4e["state_dict"], want) == []
    w = torch_load(paths["w_encoder"])
    want = {**L.prefixed("encoder", L.w_encoder_layout(spec.style_dim, **enc_args)), **L.prefixed("decoder", gen_lay)}
    assert L.check_layout(w["state_dict"], want) == []
    pose = torch.load(paths["pose"], weights_only=True)
    assert pose.shape == (1, 8, spec.style_dim)  # HyperStyle's pose.pt format: (1, n_latent, 512)


def test_wrong_files_are_clear_errors(tmp_path):
    paths = write_gan_models(tmp_path, GanSpec())
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt: not a loadable"):
        load_generator(bad)
    # an e4e file handed to HyperStyle, a HyperStyle file handed to e4e
    with pytest.raises(CheckpointError, match="no 'hypernet"):
        load_hyperstyle(paths["e4e"], paths["w_encoder"])
    with pytest.raises(CheckpointError, match="not an e4e/pSp encoder"):
        load_e4e(paths["hyperstyle"])
    # a generator with a tensor of the wrong shape names the key
    ck = torch_load(paths["generator"])
    state = dict(ck["g_ema"])
    state["conv1.activate.bias"] = torch.zeros(3)
    save_checkpoint(tmp_path / "g.pt", {"g_ema": state})
    with pytest.raises(CheckpointError, match="conv1.activate.bias"):
        load_generator(tmp_path / "g.pt")
    torch.save(torch.zeros(1, 5, 7), tmp_path / "dir.pt")
    with pytest.raises(CheckpointError, match=r"expected \(1, 32\) or \(1, 8, 32\)"):
        load_direction(tmp_path / "dir.pt", 8, 32)
