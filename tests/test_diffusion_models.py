"""Offline model loading: the SD-1.x tokenizer from open_clip's BPE table, the shipped SD-1.5
configs, and single-file checkpoints in the layout community models are distributed in."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import torch  # noqa: E402

from facerecon.diffusion.components import SD15_CONFIGS, load_base_model, load_controlnet  # noqa: E402
from facerecon.diffusion.single_file import read_checkpoint, save_single_file  # noqa: E402
from facerecon.diffusion.tiny import build_tiny, save_config_folder  # noqa: E402
from facerecon.diffusion.tokenizer import clip_bpe_path, ensure_sd_tokenizer, load_clip_tokenizer  # noqa: E402
from facerecon.errors import CheckpointError  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(seed=0, tokenizer_dir=tmp_path_factory.mktemp("tok"))


def outputs(unet, vae, text_encoder, tokenizer) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = tokenizer("a photo of sks person", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        emb = text_encoder(ids)[0]
        x = torch.randn(1, 4, 8, 8, generator=g)
        eps = unet(x, 10, emb).sample
        img = vae.decode(x).sample
    return [emb, eps, img]


@pytest.mark.skipif(clip_bpe_path() is None, reason="open_clip_torch (its BPE table) not installed")
def test_sd_tokenizer_is_built_offline_and_gives_clip_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("FACERECON_DIFFUSION_CACHE", str(tmp_path))
    cfg = json.loads((SD15_CONFIGS / "tokenizer" / "tokenizer_config.json").read_text())
    folder = ensure_sd_tokenizer(cfg)
    assert folder.is_relative_to(tmp_path) and (folder / "vocab.json").is_file()
    tok = load_clip_tokenizer(folder)
    assert len(tok) == 49408 and tok.model_max_length == 77
    # ids of the public openai/clip-vit-large-patch14 tokenizer (SD-1.x's)
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok("A photo of SKS person").input_ids == [49406, 320, 1125, 539, 48136, 2533, 49407]
    padded = tok("a photo", padding="max_length", max_length=77).input_ids
    assert len(padded) == 77 and padded[-1] == 49407
    mtime = (folder / "vocab.json").stat().st_mtime_ns
    assert ensure_sd_tokenizer(cfg) == folder and (folder / "vocab.json").stat().st_mtime_ns == mtime  # reused


def test_shipped_configs_describe_sd15():
    """Built on the meta device: parameter counts of the public SD-1.5 components."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    def count(m):
        return sum(p.numel() for p in m.parameters())

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SD15_CONFIGS / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(SD15_CONFIGS / "vae"))
        cn = ControlNetModel.from_config(ControlNetModel.load_config(SD15_CONFIGS / "controlnet"))
        te = CLIPTextModel(CLIPTextConfig.from_pretrained(SD15_CONFIGS / "text_encoder"))
    assert count(unet) == 859_520_964
    assert count(vae) == 83_653_863
    assert count(te) == 123_060_480
    assert round(count(cn) / 1e6) == 361
    sched = json.loads((SD15_CONFIGS / "scheduler" / "scheduler_config.json").read_text())
    assert (sched["beta_start"], sched["beta_end"], sched["beta_schedule"]) == (0.00085, 0.012, "scaled_linear")


def test_single_file_checkpoint_loads_offline(tiny, tmp_path):
    """A tiny model written in the single-file key layout loads back to the same network."""
    ckpt = save_single_file(tmp_path / "tiny-sd.safetensors", tiny.unet, tiny.vae, tiny.text_encoder)
    keys = set(read_checkpoint(ckpt))
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "first_stage_model.encoder.conv_in.weight" in keys
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in keys)
    assert not any(k.startswith(("down_blocks", "up_blocks")) for k in keys)
    cfg = save_config_folder(tiny, tmp_path / "configs")
    comps = load_base_model(ckpt, config_dir=cfg)
    assert comps.layout == "single_file"
    want = outputs(tiny.unet, tiny.vae, tiny.text_encoder, tiny.tokenizer)
    got = outputs(comps.unet, comps.vae, comps.text_encoder, comps.tokenizer)
    for a, b in zip(want, got, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_single_file_ckpt_pickle_is_read_weights_only(tiny, tmp_path):
    from facerecon.diffusion.single_file import to_single_file_state_dict

    sd = to_single_file_state_dict(tiny.unet, tiny.vae, tiny.text_encoder)
    torch.save({"state_dict": sd, "global_step": 470000}, tmp_path / "tiny.ckpt")
    comps = load_base_model(tmp_path / "tiny.ckpt", config_dir=save_config_folder(tiny, tmp_path / "cfg"))
    torch.testing.assert_close(comps.unet.conv_in.weight, tiny.unet.conv_in.weight)
    # a pickle that needs arbitrary code is refused, not executed
    torch.save({"state_dict": sd, "callback": np.random.RandomState(0)}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="evil.ckpt"):
        load_base_model(tmp_path / "evil.ckpt", config_dir=tmp_path / "cfg")


def test_diffusers_folders_load(tiny, tmp_path):
    from facerecon.diffusion.tiny import save_diffusers_folder

    save_diffusers_folder(tiny, tmp_path / "sd", with_controlnet=tmp_path / "cn")
    comps = load_base_model(tmp_path / "sd")
    assert comps.layout == "diffusers"
    for a, b in zip(outputs(tiny.unet, tiny.vae, tiny.text_encoder, tiny.tokenizer),
                    outputs(comps.unet, comps.vae, comps.text_encoder, comps.tokenizer), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    cn = load_controlnet(tmp_path / "cn")
    torch.testing.assert_close(cn.conv_in.weight, tiny.controlnet.conv_in.weight)


def test_unusable_files_are_clear_errors(tmp_path):
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_base_model(junk)
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a single-file Stable Diffusion"):
        load_base_model(tmp_path / "other.safetensors")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "unet").mkdir()
    with pytest.raises(CheckpointError, match="lacks vae, text_encoder"):
        load_base_model(tmp_path / "half")
