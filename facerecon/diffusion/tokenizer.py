"""SD-1.x's CLIP tokenizer, built offline from the BPE table that ships inside open_clip_torch.

Stable Diffusion 1.x tokenizes prompts with OpenAI CLIP's byte-level BPE (49 408 tokens).
``diffusers`` would download ``vocab.json``/``merges.txt`` from the hub; the same table is
in the open_clip_torch wheel as ``open_clip/bpe_simple_vocab_16e6.txt.gz``. The vocabulary
is derived from it exactly as CLIP does (256 byte symbols, the same with the end-of-word
mark, one token per merge, then the two special tokens), written once into a cache folder
and loaded from there with ``transformers.CLIPTokenizer``. Nothing is committed.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path

from facerecon.errors import MissingWeightsError
from facerecon.io.atomic import atomic_write_text

N_MERGES = 49152 - 256 - 2  # CLIP keeps this many merges of the 16e6 table
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"


def byte_symbols() -> list[str]:
    """The 256 byte symbols of CLIP's byte-level BPE, in CLIP's vocabulary order.

    Printable latin-1 bytes stand for themselves and come first (in byte order); the other
    bytes (controls, space, ...) follow in byte order, drawn as the code points 256, 257, ...
    so BPE never sees whitespace or control characters. This order fixes token ids 0..255.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(rest))]


def vocab_from_bpe(lines: list[str], n_merges: int = N_MERGES) -> tuple[dict[str, int], list[str]]:
    """(token → id, merges as "a b" strings) from the lines of CLIP's BPE table (first line = header)."""
    merges = [ln for ln in lines[1:n_merges + 1]]
    if len(merges) < n_merges or any(len(m.split()) != 2 for m in merges):
        raise ValueError(f"BPE table has {len(merges)} usable merge lines, expected {n_merges}")
    symbols = byte_symbols()
    tokens = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_bpe_path() -> Path | None:
    """Where open_clip keeps the BPE table, found without importing open_clip (it pulls torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / BPE_FILE
    return p if p.is_file() else None


def cache_root() -> Path:
    """Folder for files built at first use ($FACERECON_DIFFUSION_CACHE or ~/.cache/facerecon/diffusion)."""
    env = os.environ.get("FACERECON_DIFFUSION_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return base / "facerecon" / "diffusion"


def write_tokenizer_files(folder: Path, vocab: dict[str, int], merges: list[str], tokenizer_config: dict) -> Path:
    """vocab.json + merges.txt + tokenizer_config.json: the layout ``CLIPTokenizer.from_pretrained`` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "merges.txt", "".join(f"{m}\n" for m in ["#version: 0.2", *merges]))
    atomic_write_text(folder / "tokenizer_config.json", json.dumps(tokenizer_config, indent=2))
    # vocab.json last: its presence marks a complete folder
    atomic_write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    return folder


def ensure_sd_tokenizer(tokenizer_config: dict, *, folder: Path | None = None) -> Path:
    """Folder with SD-1.x's tokenizer files, building it from open_clip's BPE table on first use."""
    folder = folder or cache_root() / "sd15-tokenizer"
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return folder
    src = clip_bpe_path()
    if src is None:
        raise MissingWeightsError(
            f"SD-1.x tokenizer: open_clip/{BPE_FILE} not found (it ships in the open_clip_torch wheel; "
            f"install it with: pip install --no-deps open_clip_torch), and no tokenizer in {folder}")
    lines = gzip.open(src).read().decode("utf-8").split("\n")
    vocab, merges = vocab_from_bpe(lines)
    return write_tokenizer_files(folder, vocab, merges, tokenizer_config)


def load_clip_tokenizer(folder: Path):
    """``transformers.CLIPTokenizer`` from a local folder, never touching the hub."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
