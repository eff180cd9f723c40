"""The recipe: one YAML file describing a run, validated by pydantic v2.

Every field has a description (``taskfit schema`` exports the JSON schema, and the README's recipe
reference is generated from it). Unknown keys and wrong types are reported all at once, each with its
dotted path, the value seen and what was expected (with a "did you mean" for misspelt keys).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from taskfit.errors import ConfigError
from taskfit.methods import METHODS
from taskfit.methods.frozen import FrozenConfig
from taskfit.methods.full import FullConfig
from taskfit.methods.lora import LoraConfigBlock

# The discriminated union of method blocks; a new method adds its config class here.
MethodBlock = Annotated[Union[FullConfig, FrozenConfig, LoraConfigBlock], Field(discriminator="name")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ChecksConfig(_Strict):
    """What the data checks do with each finding: 'error' stops the run, 'warn' reports, 'drop' removes rows."""

    empty_text: Literal["error", "warn", "drop"] = Field("drop", description="Rows whose text is empty.")
    duplicates: Literal["error", "warn", "drop"] = Field(
        "warn", description="Rows repeating an earlier (text, label) pair in the same file."
    )
    conflicting_labels: Literal["error", "warn", "drop"] = Field(
        "error", description="The same text with different labels."
    )
    leakage: Literal["error", "warn", "ignore"] = Field(
        "warn", description="Texts of valid/test that also appear in train."
    )
    imbalance_ratio: float = Field(
        10.0, gt=1, description="Warn when the largest class is this many times the smallest."
    )
    min_class_count: int = Field(2, ge=1, description="Error when a training class has fewer rows.")


class DataConfig(_Strict):
    """Where the rows come from and which columns hold what."""

    train: Path = Field(description="Training file: .csv, .tsv, .jsonl/.json or .parquet; for ner also CoNLL "
                        "(.conll/.bio/.txt); for image_classification also a folder with one sub-folder per class.")
    valid: Path | None = Field(None, description="Validation file; if absent, split from train.")
    test: Path | None = Field(None, description="Test file; if absent and test_fraction > 0, split from train.")
    text: str = Field("text", description="Column with the input text.")
    text_pair: str | None = Field(None, description="Optional second text column (sentence-pair tasks).")
    label: str = Field("label", description="Column with the label.")
    labels: list[str] | None = Field(
        None, description="The label set in order; default: the sorted labels found in train."
    )
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of train held out for validation.")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of train held out for test.")
    split_seed: int = Field(0, description="Seed of the stratified split.")
    max_length: int = Field(128, ge=8, le=8192, description="Longer texts are truncated to this many tokens.")
    limit: int | None = Field(None, ge=1, description="Use only the first N rows of each file (quick runs).")
    checks: ChecksConfig = Field(default_factory=ChecksConfig, description="Data quality checks.")
    pii_mask: bool = Field(False, description="Replace personal data (emails, phone numbers, ID and bank card "
                           "numbers, IP addresses, person names) in every text column by a typed placeholder such "
                           "as <PHONE> before training; counts per type go to results.json and the report.")
    keep_columns: list[str] = Field(
        [], description="Extra columns carried through loading but never fed to the model (e.g. the fairness group "
        "column, added here automatically from fairness.group_column).")

    @model_validator(mode="after")
    def _fractions(self) -> DataConfig:
        if self.valid is None and self.valid_fraction == 0:
            raise ValueError("no validation data: give data.valid or a data.valid_fraction > 0")
        if self.valid_fraction + (0 if self.test else self.test_fraction) >= 0.9:
            raise ValueError(
                f"valid_fraction + test_fraction = {self.valid_fraction + self.test_fraction:g} leaves "
                "under 10% of the data for training; lower them"
            )
        return self


# --------------------------------------------------------------------------------------------------
# Task options: one block per task, discriminated on ``name`` (``task: ner`` is short for ``{name: ner}``).
# The task modules (taskfit.tasks.*) read these; they live here so loading a recipe imports no torch.


class TaskOptions(_Strict):
    """Options common to every task block."""

    name: str


class TextClassificationOptions(TaskOptions):
    """Text (or text pair, ``data.text_pair``) → one label from ``data.label``."""

    name: Literal["text_classification"] = Field("text_classification", description="The task.")


class MultiLabelOptions(TaskOptions):
    """Text → any number of labels; ``data.label`` holds them joined by ``separator`` (or a JSON list)."""

    name: Literal["multi_label"] = Field("multi_label", description="The task.")
    separator: str = Field("|", min_length=1, description="Separator between labels in the label column.")
    threshold: float | Literal["tune"] = Field(
        "tune", description="Decision threshold on each label's probability; 'tune' picks per label on validation."
    )


class RegressionOptions(TaskOptions):
    """Text → a number (risk score, sentiment intensity); ``data.label`` holds the target."""

    name: Literal["regression"] = Field("regression", description="The task.")
    normalize: bool = Field(True, description="Train on standardised targets (mean 0, sd 1); predictions are "
                            "mapped back to the original scale.")


class NerOptions(TaskOptions):
    """Tokens → one tag per token (BIO/BIOES). Reads CoNLL files (token per line, blank line between
    sentences) or JSONL / tables with a token-list column and a tag-list column."""

    name: Literal["ner"] = Field("ner", description="The task.")
    tokens: str = Field("tokens", description="Column holding the token list (JSONL/tables).")
    tags: str = Field("tags", description="Column holding the tag list, one per token (JSONL/tables).")
    scheme: Literal["auto", "BIO", "BIOES"] = Field(
        "auto", description="Tag scheme of the data; auto detects it. Tags outside the scheme are errors."
    )
    tag_column: int = Field(-1, description="CoNLL files: which whitespace-separated column holds the tag.")
    label_all_subtokens: bool = Field(
        False, description="Train on every sub-word piece (I- tags) rather than only the first piece of a word."
    )


class RetrievalOptions(TaskOptions):
    """Query → the best answers from a fixed set (FAQ matching): a bi-encoder trained with in-batch negatives."""

    name: Literal["retrieval"] = Field("retrieval", description="The task.")
    query: str = Field("query", description="Column with the query (user question).")
    answer: str = Field("answer", description="Column with the matching answer / FAQ entry.")
    negatives: str | None = Field(
        None, description="Optional column of hard negatives (one text, or several joined by ' || ')."
    )
    temperature: float = Field(0.05, gt=0, le=1, description="Softmax temperature of the contrastive loss.")
    pooling: Literal["mean", "cls"] = Field("mean", description="How token vectors become one vector.")
    query_prefix: str = Field("auto", description="Text put before each query ('auto': 'query: ' for E5 models).")
    passage_prefix: str = Field("auto", description="Text put before each answer ('auto': 'passage: ' for E5).")
    recall_at: list[int] = Field([1, 5, 10], description="The k of the recall@k metrics.")


class GenerationOptions(TaskOptions):
    """Instruction / chat tuning of a causal LM: loss on response tokens only."""

    name: Literal["generation"] = Field("generation", description="The task.")
    prompt: str = Field("prompt", description="Column with the instruction / user turn.")
    response: str = Field("response", description="Column with the wanted answer.")
    messages: str | None = Field(
        None, description="Instead of prompt/response: a column of chat messages [{role, content}, ...]."
    )
    system: str | None = Field(None, description="A system prompt put before every conversation.")
    chat_template: bool = Field(True, description="Format with the tokenizer's chat template when it has one.")
    packing: bool = Field(True, description="Pack several short examples into one sequence (no cross-attention "
                          "between them) to waste no compute on padding.")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="Tokens generated per prompt when predicting.")
    eval_prompts: int = Field(32, ge=0, description="Held-out prompts generated for exact match at evaluation.")


class ImageClassificationOptions(TaskOptions):
    """Image → one label. ``data.train`` is a folder with one sub-folder per class, or a table with an image
    path column (paths relative to the table's folder) and ``data.label``."""

    name: Literal["image_classification"] = Field("image_classification", description="The task.")
    image: str = Field("image", description="Column with image paths (tables only).")
    image_size: int = Field(224, ge=16, le=1024, description="Images are resized to this square size.")
    flip: bool = Field(True, description="Augmentation: random horizontal flips.")
    crop: float = Field(0.8, gt=0, le=1, description="Augmentation: random crops keeping at least this share of "
                        "the area (1 = off).")
    rotation: float = Field(10.0, ge=0, le=180, description="Augmentation: random rotation up to ± degrees.")
    color_jitter: float = Field(0.2, ge=0, le=1, description="Augmentation: brightness/contrast/saturation jitter.")


TASK_OPTIONS: dict[str, type[TaskOptions]] = {
    c.model_fields["name"].default: c
    for c in (TextClassificationOptions, MultiLabelOptions, RegressionOptions, NerOptions, RetrievalOptions,
              GenerationOptions, ImageClassificationOptions)
}
TaskBlock = Annotated[
    Union[TextClassificationOptions, MultiLabelOptions, RegressionOptions, NerOptions, RetrievalOptions,
          GenerationOptions, ImageClassificationOptions],
    Field(discriminator="name"),
]


def task_options(value: str | dict[str, Any]) -> TaskOptions:
    """Validate one task block (``"ner"`` or ``{"name": "ner", ...}``)."""
    tree = {"name": value} if isinstance(value, str) else dict(value)
    cls = TASK_OPTIONS.get(tree.get("name", ""))
    if cls is None:
        raise ConfigError(f"unknown task {tree.get('name')!r}; available: {', '.join(TASK_OPTIONS)}")
    return cls.model_validate(tree)


class ModelConfig(_Strict):
    """The pretrained backbone."""

    name: str = Field(
        "all-MiniLM-L6-v2",
        description="A packaged model name (see `taskfit models`), a local Hugging Face directory, "
        "or a hub id (only when online).",
    )


class EarlyStopping(_Strict):
    """Stop when the validation metric has not improved for `patience` evaluations."""

    metric: str | None = Field(
        None, description="Validation metric to watch (loss, accuracy, macro_f1, f1, recall@1...); default: "
        "the task's main metric."
    )
    patience: int | None = Field(None, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0.0, description="Smallest change that counts as an improvement.")


class TrainConfig(_Strict):
    """The training loop."""

    epochs: float = Field(3, gt=0, description="Passes over the training data (fractions allowed).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimiser steps.")
    lr: float = Field(5e-5, gt=0, lt=1, description="Peak learning rate of the backbone / adapters.")
    head_lr: float | None = Field(None, gt=0, lt=1, description="Learning rate of the new head (default: lr).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decoupled weight decay (not on biases/norms).")
    batch_size: int = Field(32, ge=1, description="Examples per batch (when batch_tokens is not set).")
    batch_tokens: int | None = Field(
        None, ge=16, description="Token budget per batch (padded length × rows); overrides batch_size."
    )
    grad_accum: int = Field(1, ge=1, description="Batches accumulated per optimiser step.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; null turns it off.")
    warmup: float = Field(0.06, ge=0, description="Warm-up: a fraction of all steps if < 1, else steps.")
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="Decay after warm-up.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto = bf16 autocast where the hardware does bf16 fast, else fp32."
    )
    seed: int = Field(0, description="Seed of initialisation, data order and dropout.")
    eval_every: int | None = Field(None, ge=1, description="Evaluate every N steps (default: each epoch).")
    checkpoint_every: int = Field(50, ge=1, description="Write a resumable checkpoint every N steps.")
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep.")
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping, description="Early stopping.")
    bucket_size: int = Field(
        64, ge=1, description="Length bucketing: sort rows by length within windows of this many batches."
    )
    threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: all cores).")
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="With --nproc > 1: ddp keeps a full copy of the model in every process; fsdp (FSDP2) "
        "shards weights, gradients and optimizer state across processes so a model too big for one device "
        "trains (the final model is gathered on rank 0 for scoring and saving).")
    attention: Literal["auto", "eager", "sdpa"] = Field(
        "auto", description="Attention kernel: auto = eager on CPU (faster to train there), sdpa on GPU."
    )


class DPConfig(_Strict):
    """Differentially private training (DP-SGD through Opacus): per-example clipping plus Gaussian noise."""

    epsilon: float = Field(gt=0, allow_inf_nan=False, description=(
        "Privacy budget ε to spend over the whole run (smaller = more private; 1–8 is typical). To train "
        "without differential privacy, remove privacy.dp."))
    delta: float | None = Field(None, gt=0, lt=1, description="δ of (ε, δ)-DP (default: 1 / (10 × training rows)).")
    max_grad_norm: float = Field(1.0, gt=0, description="Per-example gradient clipping norm.")
    accountant: Literal["rdp", "prv"] = Field("prv", description="Opacus privacy accountant.")


class PrivacyConfig(_Strict):
    """Privacy of the training data."""

    dp: DPConfig | None = Field(None, description="DP-SGD settings; null trains without differential privacy.")


class AdversarialConfig(_Strict):
    """Adversarial training on the input embeddings (text tasks)."""

    method: Literal["fgm", "pgd"] = Field(description="fgm: one gradient step; pgd: several projected steps.")
    epsilon: float = Field(1.0, gt=0, description="Size (L2 norm per example) of the embedding perturbation.")
    steps: int = Field(3, ge=1, le=20, description="PGD ascent steps (fgm uses 1).")
    alpha: float | None = Field(None, gt=0, description="PGD step size (default: epsilon / steps × 1.5).")
    weight: float = Field(1.0, gt=0, description="Weight of the adversarial loss added to the clean loss.")


class FairnessConfig(_Strict):
    """Per-group evaluation of the model (fairlearn)."""

    group_column: str = Field(description="Column (in the test data) naming each row's group, e.g. gender or region.")
    positive_label: str | None = Field(
        None, description="The favourable label for selection rates (default: the second label of a binary task).")
    mitigate: bool = Field(False, description="Also fit group-specific thresholds (fairlearn ThresholdOptimizer, "
                           "binary tasks) on validation and report the before/after.")
    constraint: Literal["demographic_parity", "equalized_odds"] = Field(
        "demographic_parity", description="Constraint of the threshold mitigation.")


class FederatedConfig(_Strict):
    """Federated training with Flower (`taskfit federate`): each client trains on its own share of the data."""

    clients: int = Field(3, ge=2, le=100, description="Number of clients.")
    rounds: int = Field(3, ge=1, description="Federated rounds.")
    partition: Literal["column", "iid", "dirichlet"] = Field(
        "iid", description="How train rows are split across clients: by a column, at random, or label-skewed.")
    partition_column: str | None = Field(None, description="Column naming each row's client (partition: column).")
    dirichlet_alpha: float = Field(0.5, gt=0, description="Label skew of partition: dirichlet (smaller = more skew).")
    strategy: Literal["fedavg", "fedprox"] = Field("fedavg", description="Aggregation strategy.")
    proximal_mu: float = Field(0.01, ge=0, description="FedProx proximal term weight.")
    local_epochs: float = Field(1.0, gt=0, description="Local passes over each client's data per round.")
    fraction_fit: float = Field(1.0, gt=0, le=1, description="Share of clients asked to train each round.")
    min_fit_clients: int | None = Field(None, ge=1, description="Fewest results a round accepts (default: 1); "
                                        "with fewer, the round keeps the previous global model.")
    round_timeout: float = Field(600.0, gt=0, description="Seconds the server waits for the clients of a round; "
                                 "a client that has not answered by then counts as failed.")
    mode: Literal["simulation", "processes"] = Field(
        "simulation", description="simulation: one process (Flower simulation); processes: a SuperLink and one "
        "SuperNode process per client on loopback.")

    @model_validator(mode="after")
    def _fit_clients(self) -> FederatedConfig:
        if self.min_fit_clients is not None and self.min_fit_clients > self.clients:
            raise ValueError(f"federated.min_fit_clients {self.min_fit_clients} is more than federated.clients "
                             f"{self.clients}: no round could ever finish; lower it")
        return self


class AlertRule(_Strict):
    """One alert rule of the served model's monitor, checked every ``monitor.check_every_s`` seconds over the
    recent predictions (e.g. "share of label 'negative' above 0.4 in the last 10 minutes")."""

    name: str = Field(min_length=1, description="Rule name, shown in alerts and used for the cool-down.")
    kind: Literal["label_share", "drift_psi", "drift_ks", "confidence_mean", "volume"] = Field(
        description="What is measured over the window: label_share (share of predictions with `label`), drift_psi "
        "(PSI of `feature` against the training reference; the largest over all features when no feature), "
        "drift_ks (KS p-value of a numeric `feature`), confidence_mean (mean confidence), volume (predictions).")
    label: str | None = Field(None, description="The label of a label_share rule (one of the model's labels).")
    feature: Literal["length", "language", "oov", "label", "confidence"] | None = Field(
        None, description="Feature of a drift rule: length (chars), language (zh/en/mixed), oov (share of words "
        "unseen in training), label (predicted label), confidence. drift_ks takes numeric ones only.")
    above: float | None = Field(None, description="Fire when the value is above this (drift_psi default: "
                                "monitor.psi_alert).")
    below: float | None = Field(None, description="Fire when the value is below this (drift_ks default: "
                                "monitor.ks_alert).")
    window_minutes: float | None = Field(None, gt=0, description="Window of this rule (default: "
                                         "monitor.window_minutes).")

    @model_validator(mode="after")
    def _threshold(self) -> AlertRule:
        if self.above is not None and self.below is not None:
            raise ValueError(f"rule {self.name!r} sets both above and below; give one (two rules for a band)")
        if self.above is None and self.below is None and self.kind not in ("drift_psi", "drift_ks"):
            raise ValueError(f"rule {self.name!r} ({self.kind}) needs a threshold: set above or below")
        if self.kind == "label_share" and not self.label:
            raise ValueError(f"rule {self.name!r} is a label_share rule without label; name one of the model's "
                             "labels")
        if self.kind == "drift_ks" and self.feature in ("language", "label"):
            raise ValueError(f"rule {self.name!r}: KS needs a numeric feature (length, oov, confidence), got "
                             f"{self.feature!r}; use drift_psi for categorical ones")
        return self


class MonitorConfig(_Strict):
    """Monitoring of the served model (`taskfit serve`): drift against the training reference, alert rules
    and a webhook. The service uses this block of the run's recipe unless its own settings give one."""

    window_minutes: float = Field(60.0, gt=0, description="Sliding window of recent predictions that drift "
                                  "and rules are computed over.")
    min_count: int = Field(30, ge=1, description="Fewest predictions in a window before drift and rules judge it.")
    reference_rows: int = Field(500, ge=20, description="Held-out rows (test, else validation split) whose "
                                "features and predictions form the drift reference.")
    bins: int = Field(10, ge=2, le=100, description="Quantile bins of numeric features for PSI.")
    psi_alert: float = Field(0.2, gt=0, description="PSI above which a feature counts as drifted (0.1 some, 0.2 "
                             "significant shift).")
    ks_alert: float = Field(0.01, gt=0, lt=1, description="KS p-value below which a numeric feature counts as "
                            "drifted.")
    check_every_s: float = Field(30.0, gt=0, description="Seconds between rule checks in the service.")
    cooldown_minutes: float = Field(10.0, ge=0, description="A rule that fired is not fired again (same model) "
                                    "for this long.")
    rules: list[AlertRule] = Field(
        default_factory=lambda: [AlertRule(name="input_drift", kind="drift_psi")],
        description="Alert rules; default: one drift_psi rule over all features at psi_alert.")
    webhook: str | None = Field(None, description="URL that receives each alert as a JSON POST (null: none).")
    webhook_timeout_s: float = Field(3.0, gt=0, le=60, description="Timeout of one webhook POST.")

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"webhook must be an http:// or https:// URL, got {v!r}")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> MonitorConfig:
        names = [r.name for r in self.rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"rule names must be unique (the cool-down is per name); repeated: {twice}")
        return self


class OutputConfig(_Strict):
    """Where the run directory goes."""

    dir: Path = Field(Path("runs"), description="Parent directory of run directories.")
    name: str | None = Field(None, description="Run name (default: <task>-<timestamp>).")
    overwrite: bool = Field(False, description="Replace an existing run directory of the same name.")


class Recipe(_Strict):
    """A taskfit recipe."""

    task: TaskBlock = Field(
        default_factory=TextClassificationOptions,
        description="What to learn: a task name (text_classification, multi_label, regression, ner, retrieval, "
        "generation, image_classification) or a block {name: ..., options}.",
    )
    data: DataConfig = Field(description="Input data.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Pretrained backbone.")
    method: MethodBlock = Field(default_factory=FullConfig, description="Tuning method (by name).")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training loop.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Run directory.")
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig, description="Differential privacy.")
    adversarial: AdversarialConfig | None = Field(None, description="Adversarial training (null: off).")
    fairness: FairnessConfig | None = Field(None, description="Per-group fairness evaluation (null: off).")
    federated: FederatedConfig | None = Field(
        None, description="Federated training settings for `taskfit federate` (null: its defaults).")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="Monitoring of the served model: "
                                   "drift, alert rules, webhook.")

    @model_validator(mode="after")
    def _group_kept(self) -> Recipe:
        if self.fairness and self.fairness.group_column not in self.data.keep_columns:
            self.data.keep_columns = [*self.data.keep_columns, self.fairness.group_column]
        fed = self.federated
        if fed is not None and fed.partition == "column":
            if fed.partition_column is None:
                raise ValueError("federated.partition is 'column' but federated.partition_column is not set")
            if fed.partition_column not in self.data.keep_columns:
                self.data.keep_columns = [*self.data.keep_columns, fed.partition_column]
        return self

    @field_validator("task", mode="before")
    @classmethod
    def _task_name(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = {"name": v}
        if isinstance(v, dict) and "name" in v and v["name"] not in TASK_OPTIONS:
            raise ValueError(f"unknown task {v['name']!r}; available: {', '.join(TASK_OPTIONS)}")
        return v

    @field_validator("method", mode="before")
    @classmethod
    def _method_name(cls, v: Any) -> Any:
        # Give the registry's "Available: ..." message instead of pydantic's tag error.
        if isinstance(v, str):
            v = {"name": v}
        if isinstance(v, dict) and "name" in v and v["name"] not in METHODS:
            raise ValueError(f"unknown method {v['name']!r}; available: {', '.join(METHODS.names())}")
        return v

    def to_yaml(self) -> str:
        """The fully resolved recipe (defaults filled in) as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------------------------------
# Loading, overrides and error formatting


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """Return the pydantic model class holding the key at ``path`` (for "did you mean")."""
    model: Any = Recipe
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        candidates = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
        model = next((c for c in candidates if issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _clean_loc(raw: tuple[Any, ...]) -> tuple[tuple[Any, ...], str | None]:
    """Drop pydantic's union-branch parts (method tags, 'list[str]', "literal[...]") from a location."""
    method = None
    loc = []
    for i, p in enumerate(raw):
        if i == 1 and isinstance(p, str) and (
            (raw[0] == "method" and p in METHODS) or (raw[0] == "task" and p in TASK_OPTIONS)
        ):
            method = p
        elif isinstance(p, str) and ("[" in p or p in ("function-after", "function-before")):
            continue
        else:
            loc.append(p)
    return tuple(loc), method


def _format_error(err: dict[str, Any]) -> tuple[str, str]:
    """(dotted path, message) for one pydantic error."""
    loc, method = _clean_loc(tuple(err["loc"]))
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        if method and len(loc) == 2:
            parent: Any = TASK_OPTIONS[method] if loc[0] == "task" else METHODS.get(method).config_cls
        else:
            parent = _model_at(loc[:-1])
        allowed = sorted(parent.model_fields) if parent else []
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        return dotted, f"unknown key.{hint} Allowed keys here: {', '.join(allowed)}."
    if kind == "missing":
        return dotted, "required key is missing."
    return dotted, f"{err['msg'].removeprefix('Value error, ').rstrip('.')} (got {value!r})."


def _problems(errors: list[dict[str, Any]]) -> list[str]:
    """One line per key: a union's failed branches at the same key are joined with 'or'."""
    merged: dict[str, list[str]] = {}
    for err in errors:
        dotted, msg = _format_error(err)
        if msg not in merged.setdefault(dotted, []):
            merged[dotted].append(msg)
    lines = []
    for key, msgs in merged.items():
        if len(msgs) > 1:  # "A (got x)." + "B (got x)." -> "A, or B (got x)."
            got = msgs[-1][msgs[-1].rfind(" (got "):]
            msgs = [m.removesuffix(got) for m in msgs[:-1]] + [msgs[-1]]
        lines.append(f"{key}: {', or '.join(msgs)}")
    return lines


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.get(p)
        if isinstance(child, str) and p == "method":
            child = {"name": child}
        if not isinstance(child, dict):
            child = {}
        node[p] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML: ``3e-5``, ``true``, ``[a, b]``)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Override {item!r} is not of the form key.path=value (e.g. train.lr=3e-5).")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _set_dotted(tree, key.strip(), value)
    return tree


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a recipe file into a dict; a missing or malformed file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Recipe file {str(path)!r} does not exist.")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"Recipe file {str(path)!r} is not valid YAML: {e}") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"Recipe file {str(path)!r} must hold a mapping of keys, got {type(tree).__name__}.")
    return tree


def parse_recipe(tree: dict[str, Any], base_dir: str | Path | None = None) -> Recipe:
    """Validate a recipe mapping; relative data paths resolve against ``base_dir``.

    Raises:
        ConfigError: listing every problem at once, each with its dotted path.
    """
    try:
        recipe = Recipe.model_validate(tree)
    except ValidationError as e:
        problems = _problems(e.errors())  # type: ignore[arg-type]
        raise ConfigError(f"The recipe has {len(problems)} problem(s):", problems) from None
    if base_dir is not None:
        base = Path(base_dir)
        for key in ("train", "valid", "test"):
            p = getattr(recipe.data, key)
            if p is not None and not p.is_absolute() and not p.exists() and (base / p).exists():
                setattr(recipe.data, key, base / p)
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file."""
    tree = apply_overrides(read_yaml(path), overrides or [])
    return parse_recipe(tree, base_dir=Path(path).parent)


def json_schema() -> dict[str, Any]:
    """The JSON schema of the recipe (for editors and the docs)."""
    return Recipe.model_json_schema()
