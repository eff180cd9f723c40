"""Memory per process by strategy and method for the packaged models and two common larger ones.

    .venv/bin/python benchmarks/memory_table.py            # prints the Markdown table of docs/scale.md

Packaged models are read from taskfit's cache (their real parameter counts, LoRA r=8 on attention);
BERT-base and Qwen2-0.5B are built from their published configs on the meta device (no weights needed).
"""

from __future__ import annotations

import torch

from taskfit.methods import METHODS
from taskfit.methods.lora import LoraConfigBlock
from taskfit.train.memory import estimate, shape_of

GB = 1024**3


def _meta_model(name: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, BertConfig, Qwen2Config

    with torch.device("meta"):
        if name == "bert-base":
            return AutoModelForSequenceClassification.from_config(BertConfig(num_labels=4))
        return AutoModelForCausalLM.from_config(Qwen2Config(
            vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
            num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True))


def _packaged(name: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from taskfit.models import resolve_model

    path = resolve_model(name)
    if "smollm" in name:
        return AutoModelForCausalLM.from_pretrained(path)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=4)


def main() -> None:
    rows = []
    models = [("all-MiniLM-L6-v2", 128, 32), ("multilingual-e5-small", 128, 32), ("SmolLM2-135M-Instruct", 512, 8),
              ("bert-base", 128, 32), ("qwen2-0.5b", 1024, 8)]
    for name, length, batch in models:
        for method in ("full", "lora"):
            model = _meta_model(name) if name in ("bert-base", "qwen2-0.5b") else _packaged(name)
            heads = ["classifier"] if hasattr(model, "classifier") else []
            if method == "lora":
                model = METHODS.get("lora").apply(model, LoraConfigBlock(r=8), heads)
            shape = shape_of(model)
            cells = []
            for strategy, world in (("single", 1), ("ddp", 4), ("fsdp", 4)):
                est = estimate(shape, strategy, world=world, batch=batch, length=length)  # type: ignore[arg-type]
                cells.append(f"{est.total / GB:.2f}")
            rows.append(f"| {name} | {method} | {shape.params / 1e6:.1f} M | {shape.trainable / 1e6:.2f} M | "
                        f"{batch}×{length} | " + " | ".join(cells) + " |")
    print("| model | method | params | trainable | batch × length | one process | DDP ×4 (each) | FSDP ×4 (each) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
