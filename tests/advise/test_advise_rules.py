"""`taskfit advise` on a constructed profile: ranking by the objective, constraints (latency, language, budget,
memory), the stated linear scalings, quality adjustment by rows, and bad-input messages."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from conftest import run_taskfit
from taskfit.advise import Constraints, Workload, advise, select_profile
from taskfit.advise.estimate import eval_seconds, fit_steps, latency_ms, peak_memory_mb, shape_of_entry, train_seconds
from taskfit.advise.quality import MEASURED, adjust
from taskfit.advise.tokens import batch_shapes
from taskfit.errors import ConfigError
from taskfit.train.memory import activation_bytes

SETTINGS = {"steps": 2, "rows": 32, "lengths": [16, 128], "infer_lengths": [16, 128], "infer_rows": 32,
            "infer_length": 64, "infer_calls": 3, "threads": None}
SHAPES = {"all-MiniLM-L6-v2": (22_700_000, 6, 384, 12), "multilingual-e5-small": (117_700_000, 12, 384, 12),
          "SmolLM2-135M-Instruct": (134_500_000, 30, 576, 9)}
KINDS = {"all-MiniLM-L6-v2": "encoder", "multilingual-e5-small": "encoder", "SmolLM2-135M-Instruct": "causal_lm"}


def entry(model: str, method: str, fixed: float, per_token: float, latency: tuple[float, float],
          peak: float = 900.0, precision: str = "bf16") -> dict[str, Any]:
    """A profile entry whose step times lie exactly on ``fixed + per_token × tokens``."""
    params, layers, hidden, heads = SHAPES[model]
    trainable = params if method == "full" else 100_000
    return {"model": model, "method": method, "precision": precision, "precision_used": precision,
            "kind": KINDS[model], "task": "text_classification", "device": "cpu", "threads": 2, "load_s": 1.0,
            "warmup_extra_s": 0.5,
            "shape": {"params": params, "trainable": trainable, "layers": layers, "hidden": hidden, "heads": heads},
            "train": [{"rows": 32, "length": n, "tokens": 32 * n, "step_s": fixed + per_token * 32 * n}
                      for n in (16, 128)],
            "train_peak_mb": peak, "base_rss_mb": 400.0,
            "inference": {"latency_ms": {"16": latency[0], "128": latency[1]}, "throughput_rows_s": 100.0,
                          "throughput_shape": [32, 64]}}


@pytest.fixture()
def profile() -> dict[str, Any]:
    entries = [
        entry("all-MiniLM-L6-v2", "full", 0.02, 2e-4, (4.0, 12.0)),
        entry("all-MiniLM-L6-v2", "lora", 0.01, 1.5e-4, (4.0, 12.0), peak=600.0),
        entry("all-MiniLM-L6-v2", "frozen", 0.005, 0.7e-4, (4.0, 12.0), peak=300.0),
        entry("multilingual-e5-small", "full", 0.3, 6e-4, (9.0, 30.0), peak=2500.0),
        entry("multilingual-e5-small", "lora", 0.05, 4e-4, (9.0, 30.0), peak=1200.0),
        entry("SmolLM2-135M-Instruct", "lora", 0.1, 2e-3, (20.0, 60.0), peak=3000.0),
    ]
    return {"version": 1, "machine": {"cpu": "test cpu", "cpu_cores": 2, "torch_threads": 2, "gpu": None},
            "settings": SETTINGS,
            "options": {f"{e['model']}|{e['method']}|{e['precision']}": e for e in entries}}


def names(options: list[Any]) -> list[tuple[str, str]]:
    return [(o.model, o.method) for o in options]


def test_ranks_by_quality_from_measured_results(profile):
    work = Workload("text_classification", 2000, 5, ("en",))
    adv = advise(work, profile)
    # MiniLM's three methods have measured English accuracies (each carried to 1,600 train rows); e5 has none
    rated = [o for o in adv.ranked if o.quality is not None]
    assert names(rated) == [("all-MiniLM-L6-v2", m) for m in ("lora", "full", "frozen")] or len(rated) == 3
    assert [o.quality.value for o in rated] == sorted((o.quality.value for o in rated), reverse=True)
    for o in rated:
        measured = next(x for x in MEASURED if (x.model, x.method, x.language) == (o.model, o.method, "en"))
        assert o.quality.value == adjust(measured, work.train_rows, 5)[0]
    assert adv.ranked[len(rated):] and all(o.quality is None for o in adv.ranked[len(rated):])
    assert {o.model for o in adv.ranked[len(rated):]} == {"multilingual-e5-small"}
    # SmolLM2 is a causal LM: it cannot train a classifier
    smol = [o for o in adv.rejected if o.model == "SmolLM2-135M-Instruct"]
    assert smol and "needs an encoder model" in smol[0].rejected
    assert adv.source == "profile" and not adv.notes


def test_ranks_by_time_and_latency(profile):
    work = Workload("text_classification", 2000, 5, ("en",))
    by_time = advise(work, profile, objective="time").ranked
    assert [o.estimate.total_s for o in by_time] == sorted(o.estimate.total_s for o in by_time)
    assert names(by_time)[0] == ("all-MiniLM-L6-v2", "frozen")
    by_latency = advise(work, profile, objective="latency").ranked
    assert [o.estimate.latency_ms for o in by_latency] == sorted(o.estimate.latency_ms for o in by_latency)


def test_language_constraint(profile):
    adv = advise(Workload("text_classification", 2000, 2, ("zh", "en")), profile)
    assert {o.model for o in adv.ranked} == {"multilingual-e5-small"}
    minilm = [o for o in adv.rejected if o.model == "all-MiniLM-L6-v2"]
    assert len(minilm) == 3 and all(o.rejected == "all-MiniLM-L6-v2 does not cover zh (it covers en)" for o in minilm)
    # the measured Chinese result (e5 full, 0.818 at 1,200 rows) ranks e5 full above e5 lora (not measured)
    assert names(adv.ranked)[0] == ("multilingual-e5-small", "full")


def test_latency_constraint_and_int8_rescue(profile):
    work = Workload("text_classification", 2000, 5, ("en",), tokens=64.0)
    # MiniLM at 64 tokens: 4 + 8 × 48/112 = 7.43 ms; e5: 9 + 21 × 48/112 = 18 ms
    assert latency_ms(profile["options"]["all-MiniLM-L6-v2|full|bf16"], 64) == pytest.approx(4 + 8 * 48 / 112)
    adv = advise(work, profile, limits=Constraints(latency_ms=10.0))
    serve = {o.model: o.serve_as for o in adv.ranked}
    # MiniLM meets 10 ms eager; e5 (18 ms eager) meets it only as int8 ONNX (18 / 4.58 = 3.9 ms), and says so
    assert serve == {"all-MiniLM-L6-v2": "eager", "multilingual-e5-small": "onnx-int8"}
    e5 = next(o for o in adv.ranked if o.model == "multilingual-e5-small")
    assert any("taskfit compress --method onnx-int8" in r for r in e5.reasons)
    # 3 ms: MiniLM only as int8 (7.43 / 4.58 = 1.6 ms); e5 (3.9 ms even as int8) is rejected
    adv = advise(work, profile, limits=Constraints(latency_ms=3.0))
    assert {o.model: o.serve_as for o in adv.ranked} == {"all-MiniLM-L6-v2": "onnx-int8"}
    e5 = [o for o in adv.rejected if o.model == "multilingual-e5-small"]
    assert len(e5) == 2 and all(o.rejected == "latency 18.0 ms > 3 ms" for o in e5)


def test_budget_constraints(profile):
    work = Workload("text_classification", 200_000, 5, ("en",))
    free = advise(work, profile)
    hours = {names([o])[0]: o.estimate.total_s / 3600 for o in free.ranked}
    limit = sorted(hours.values())[1]  # room for the two cheapest only
    adv = advise(work, profile, limits=Constraints(budget_hours=limit))
    assert len(adv.ranked) == 2 and all(o.estimate.total_s / 3600 <= limit for o in adv.ranked)
    assert all("> budget" in o.rejected for o in adv.rejected if o.model != "SmolLM2-135M-Instruct")
    price = 3.0
    money = advise(work, profile, objective="cost",
                   limits=Constraints(budget_money=limit * price, price_per_hour=price))
    assert set(names(money.ranked)) == set(names(adv.ranked))
    assert [o.cost for o in money.ranked] == sorted(o.cost for o in money.ranked)
    assert all(o.cost == pytest.approx(o.estimate.total_s / 3600 * price) for o in money.ranked)


def test_memory_constraint(profile):
    adv = advise(Workload("text_classification", 1000, 5, ("en",)), profile, limits=Constraints(memory_gb=1.2))
    assert all(o.estimate.process_mb <= 1.2 * 1024 for o in adv.ranked) and adv.ranked
    assert any(o.rejected and o.rejected.startswith("peak memory") for o in adv.rejected)


def test_training_time_is_linear_in_rows_epochs_and_tokens(profile):
    e = profile["options"]["all-MiniLM-L6-v2|full|bf16"]
    fit = fit_steps(e["train"])
    assert fit.fixed == pytest.approx(0.02) and fit.per_token == pytest.approx(2e-4)
    base = Workload("text_classification", 4000, tokens=40.0)  # 3,200 train rows = 100 batches of 32
    steps, t1, _ = train_seconds(e, base)
    assert steps == 300 and base.train_rows == 3200
    warm = e["warmup_extra_s"]
    assert t1 - warm == pytest.approx(300 * 0.02 + 2e-4 * 3200 * 3 * 40)
    _, t2, _ = train_seconds(e, Workload("text_classification", 8000, tokens=40.0))
    assert t2 - warm == pytest.approx(2 * (t1 - warm))  # twice the rows: twice the time
    _, t3, _ = train_seconds(e, Workload("text_classification", 4000, epochs=6.0, tokens=40.0))
    assert t3 - warm == pytest.approx(2 * (t1 - warm))
    _, t4, _ = train_seconds(e, Workload("text_classification", 4000, tokens=80.0))
    assert t4 - t1 == pytest.approx(2e-4 * 3200 * 3 * 40)  # the per-token part doubles, the fixed part stays
    # evaluation runs at the measured forward speed, inversely proportional to tokens per row
    assert eval_seconds(e, Workload("text_classification", 4000, tokens=32.0)) == pytest.approx(
        (4 * 400 + 400) / (100.0 * 64 / 32))
    # retrieval encodes a query and a passage per row: twice the tokens
    _, tr, _ = train_seconds(e, Workload("retrieval", 4000, tokens=40.0))
    assert tr - t1 == pytest.approx(2e-4 * 3200 * 3 * 40)


def test_memory_follows_the_activation_term(profile):
    full = profile["options"]["all-MiniLM-L6-v2|full|bf16"]
    frozen = profile["options"]["all-MiniLM-L6-v2|frozen|bf16"]
    at_profiled = Workload("text_classification", 1000, longest=128)
    assert peak_memory_mb(full, at_profiled, 32, 128) == pytest.approx(900.0)
    short, long_ = (peak_memory_mb(full, Workload("text_classification", 1000, longest=n), 32, 128) for n in (64, 256))
    assert short < 900.0 < long_
    assert peak_memory_mb(full, Workload("text_classification", 1000, batch_size=64), 32, 128) > 900.0
    # a frozen backbone keeps no activations for backward: its measured peak stands
    assert peak_memory_mb(frozen, Workload("text_classification", 1000, longest=512), 32, 128) == 300.0


def test_largest_batches_come_from_the_loops_own_bucketing():
    # 390 rows of 40 tokens and 10 of 128: sorted and cut in 32s, the 10 longest share the 16-row remainder
    lengths = [40] * 390 + [128] * 10
    assert batch_shapes(lengths, train_rows=400, batch_size=32) == ((16, 128), (32, 40))
    # with 40 long rows one full batch holds 128-token rows: that shape dominates every other
    assert batch_shapes([40] * 360 + [128] * 40, train_rows=400, batch_size=32) == ((32, 128),)
    # more training rows than counted: drawn with replacement, still only shapes the data can make
    shapes = batch_shapes([10, 20, 30], train_rows=100, batch_size=8)
    assert all(r <= 8 and n in (10, 20, 30) for r, n in shapes)


def test_generation_batches_are_packed_like_the_generation_collate():
    from taskfit.tasks.generation_data import first_fit

    # 32 examples of 60 tokens packed into rows of 256: 4 per row, 8 rows of 240 tokens
    assert batch_shapes([60] * 64, train_rows=64, batch_size=32, pack=256) == ((8, 240),)
    # mixed lengths: each batch's shape is what first-fit decreasing makes of that batch's examples
    lengths = [200] * 20 + [30] * 300
    shapes = batch_shapes(lengths, train_rows=320, batch_size=32, pack=256)
    assert all(rows <= 32 and width <= 256 for rows, width in shapes)
    bins = first_fit([200] * 20 + [30] * 12, 256)  # the bucket of the 20 long examples and 12 short ones
    assert (len(bins), 230) in shapes or any(r >= len(bins) and w >= 230 for r, w in shapes)


def test_memory_line_uses_the_packed_shape_a_profile_step_ran_on(profile):
    full = profile["options"]["all-MiniLM-L6-v2|full|bf16"]
    shape = shape_of_entry(full)
    # a causal LM's probe asked for 32 × 16 but its rows were packed into 4 × 128
    train = [dict(full["train"][0], peak_mb=500.0, batch=[4, 128]), dict(full["train"][1], peak_mb=1400.0)]
    measured = full | {"train": train}
    a_small, a_big = activation_bytes(shape, 4, 128) / 2**20, activation_bytes(shape, 32, 128) / 2**20
    k = (1400.0 - 500.0) / (a_big - a_small)
    work = Workload("text_classification", 500, longest=128, batches={"all-MiniLM-L6-v2": ((8, 128),)})
    assert peak_memory_mb(measured, work, 32, 128) == pytest.approx(
        500.0 + k * (activation_bytes(shape, 8, 128) / 2**20 - a_small))


def test_memory_uses_the_largest_batch_the_loop_forms(profile):
    full = profile["options"]["all-MiniLM-L6-v2|full|bf16"]
    guess = Workload("text_classification", 500, longest=128)  # no lengths: 32 × 128 assumed
    known = Workload("text_classification", 500, longest=128,
                     batches={"all-MiniLM-L6-v2": ((16, 128), (32, 40))})
    shape = shape_of_entry(full)
    expected = 900.0 + (activation_bytes(shape, 16, 128) - activation_bytes(shape, 32, 128)) / 2**20
    assert peak_memory_mb(full, guess, 32, 128) == pytest.approx(900.0)
    assert peak_memory_mb(full, known, 32, 128) == pytest.approx(expected)
    assert expected < 900.0
    # another model of the same workload without counted lengths keeps the old assumption
    other = profile["options"]["all-MiniLM-L6-v2|full|bf16"] | {"model": "multilingual-e5-small"}
    assert peak_memory_mb(other, known, 32, 128) == pytest.approx(900.0)


def test_memory_is_a_line_through_the_peaks_measured_per_shape(profile):
    full = profile["options"]["all-MiniLM-L6-v2|full|bf16"]
    shape = shape_of_entry(full)
    a16, a128 = (activation_bytes(shape, 32, n) / 2**20 for n in (16, 128))
    train = [dict(full["train"][0], peak_mb=500.0), dict(full["train"][1], peak_mb=1400.0)]
    measured = full | {"train": train}
    k = (1400.0 - 500.0) / (a128 - a16)
    # at a profiled shape the estimate is that shape's own measurement
    assert peak_memory_mb(measured, Workload("text_classification", 500, longest=128), 32, 128) == \
        pytest.approx(1400.0)
    half = Workload("text_classification", 500, longest=64)
    assert peak_memory_mb(measured, half, 32, 128) == pytest.approx(
        500.0 + k * (activation_bytes(shape, 32, 64) / 2**20 - a16))
    # peaks that do not grow with activations (shapes run out of order) fall back to the formula
    flat = full | {"train": [dict(train[0], peak_mb=1400.0), dict(train[1], peak_mb=1400.0)]}
    assert peak_memory_mb(flat, Workload("text_classification", 500, longest=128), 32, 128) == \
        pytest.approx(900.0)


def image_entry(method: str, fixed: float, per_pixel: float, peaks: tuple[float, float]) -> dict[str, Any]:
    """An image option profiled at 32 images of 64 and 160 px, on exact lines in pixels."""
    return {"model": "mobilenet_v2", "method": method, "precision": "fp32", "precision_used": "fp32",
            "kind": "image", "task": "image_classification", "unit": "pixels", "load_s": 0.1, "warmup_extra_s": 0.2,
            "shape": {"params": 2_236_682, "trainable": 2_236_682 if method == "full" else 12_810, "layers": 1,
                      "hidden": 1, "heads": 1},
            "train": [{"rows": 32, "length": n, "tokens": 32 * n * n, "batch": [32, 3, n, n],
                       "step_s": fixed + per_pixel * 32 * n * n, "peak_mb": peak}
                      for n, peak in zip((64, 160), peaks, strict=True)],
            "train_peak_mb": peaks[1], "base_rss_mb": 340.0,
            "inference": {"latency_ms": {"4096": 10.0, "25600": 20.0}, "throughput_rows_s": 80.0,
                          "throughput_shape": [32, 25600]}}


def test_image_options_scale_in_pixels(profile):
    from taskfit.advise.estimate import image_data_mb
    from taskfit.tasks.image_data import stored_size

    full = image_entry("full", 0.07, 1.5e-6, (400.0, 1600.0))
    frozen = image_entry("frozen", 0.0, 0.6e-6, (150.0, 480.0))
    doc = profile | {"options": {**profile["options"], "mobilenet_v2|full|fp32": full,
                                 "mobilenet_v2|frozen|fp32": frozen}}
    work = Workload("image_classification", 2000, 10, ("zh",), tokens=96.0 * 96, longest=96, image_side=96)
    steps, secs, fit = train_seconds(full, work)
    assert fit.fixed == pytest.approx(0.07) and fit.per_token == pytest.approx(1.5e-6)
    assert steps == 150 and secs == pytest.approx(150 * 0.07 + 1.5e-6 * 1600 * 3 * 96 * 96 + 0.2)
    # memory: the line through (32 × 64², 400 MB) and (32 × 160², 1600 MB) at 32 × 96², plus the decoded images
    data = 2000 * 3 * stored_size(96) ** 2 / 2**20
    assert image_data_mb(work) == pytest.approx(data)
    line = 400.0 + (1600.0 - 400.0) / (32 * (160**2 - 64**2)) * 32 * (96**2 - 64**2)
    assert peak_memory_mb(full, work, 32, 128) == pytest.approx(line + data)
    # latency between the profiled sides, linear in pixels; evaluation throughput inverse in pixels
    assert latency_ms(full, 96.0 * 96) == pytest.approx(10.0 + 10.0 * (96**2 - 4096) / (25600 - 4096))
    assert eval_seconds(full, work) == pytest.approx((4 * 200 + 200) / (80.0 * 25600 / 96**2))
    # fewer images than a batch: the batch is what there is
    tiny = Workload("image_classification", 20, tokens=96.0 * 96, image_side=96)
    assert peak_memory_mb(full, tiny, 32, 128) == pytest.approx(
        400.0 + 1200.0 / (32 * (160**2 - 64**2)) * (16 * 96**2 - 32 * 64**2) + image_data_mb(tiny))
    adv = advise(work, doc, objective="time")
    # only the image options train an image task; a language asked for does not filter images
    assert names(adv.ranked) == [("mobilenet_v2", "frozen"), ("mobilenet_v2", "full")]
    assert all("cannot train task image_classification (it needs an image model)" in o.rejected
               for o in adv.rejected) and len(adv.rejected) == len(profile["options"])
    reasons = " ".join(adv.ranked[1].reasons)
    assert "s for 32 images of 96 × 96 px (linear in pixels between the profiled 64 and 160 px)" in reasons
    assert "2000 images decoded once" in reasons
    # and an image model cannot train a text task
    text = advise(Workload("text_classification", 500), doc)
    assert {o.model for o in text.rejected if "an image model cannot train" in (o.rejected or "")} == {"mobilenet_v2"}
    # the project's measured Fashion-MNIST accuracy is the expected quality of EfficientNet-Lite0, whatever language
    from taskfit.advise.quality import expected_quality

    q = expected_quality("image_classification", "efficientnet-lite0", "full", ("zh",), 2000, 10)
    assert q is not None and q.value == pytest.approx(0.794) and "Fashion-MNIST" in q.note


def test_three_profiled_sides_give_a_piecewise_line():
    """Step time, memory and latency come from the two profiled sides around the workload's side."""
    e = image_entry("full", 0.07, 1.5e-6, (400.0, 1600.0))
    # a convex curve: 0.3 s at 64 px, 0.8 s at 128 px, 3.2 s at 224 px for 32 images
    e["train"] = [{"rows": 32, "length": n, "tokens": 32 * n * n, "batch": [32, 3, n, n], "step_s": t, "peak_mb": m}
                  for n, t, m in ((64, 0.3, 400.0), (128, 0.8, 900.0), (224, 3.2, 2500.0))]
    e["inference"]["latency_ms"] = {"4096": 10.0, "16384": 14.0, "50176": 30.0}
    for side, (n1, t1, m1), (n2, t2, m2) in ((96, (64, 0.3, 400.0), (128, 0.8, 900.0)),
                                              (160, (128, 0.8, 900.0), (224, 3.2, 2500.0)),
                                              (256, (128, 0.8, 900.0), (224, 3.2, 2500.0))):  # beyond: last pair
        work = Workload("image_classification", 3200 // 8 * 10, tokens=float(side * side), image_side=side)
        steps, secs, fit = train_seconds(e, work)
        per_px = (t2 - t1) / (32 * (n2 * n2 - n1 * n1))
        assert fit.per_token == pytest.approx(per_px)
        assert secs == pytest.approx(steps * fit.fixed + per_px * work.train_rows * 3 * side * side + 0.2)
        assert fit.step_s(32 * side * side) == pytest.approx(t1 + per_px * 32 * (side * side - n1 * n1))
        mem = m1 + (m2 - m1) / (32 * (n2 * n2 - n1 * n1)) * 32 * (side * side - n1 * n1)
        from taskfit.advise.estimate import image_data_mb

        assert peak_memory_mb(e, work, 32, 128) == pytest.approx(mem + image_data_mb(work))
    assert latency_ms(e, 96.0 * 96) == pytest.approx(10.0 + 4.0 * (96**2 - 4096) / (16384 - 4096))
    assert latency_ms(e, 160.0 * 160) == pytest.approx(14.0 + 16.0 * (160**2 - 16384) / (50176 - 16384))
    # text profiles (two shapes) keep the one line through both
    text = fit_steps([{"tokens": 512, "step_s": 0.2}, {"tokens": 4096, "step_s": 0.9}], at=100.0)
    assert text.per_token == pytest.approx(0.7 / 3584)


def test_quality_adjustment_by_rows():
    m = next(x for x in MEASURED if x.model == "all-MiniLM-L6-v2" and x.method == "full" and x.language == "en")
    assert adjust(m, m.rows, 5)[0] == pytest.approx(m.value)
    fewer, more = adjust(m, m.rows // 8, 5)[0], adjust(m, m.rows * 8, 5)[0]
    assert fewer < m.value < more
    assert 1 - fewer == pytest.approx((1 - m.value) * 8 ** 0.3)
    assert adjust(m, 1, 2)[0] == pytest.approx(0.5)  # never worse than chance with 2 labels
    assert 1 - adjust(m, 10**9, 5)[0] == pytest.approx(0.25 * (1 - m.value))  # nor better than a quarter of the error


def test_bad_input_messages(profile, tmp_path):
    with pytest.raises(ConfigError, match=r"--task: 'sentiment' is not a task; available: .*text_classification"):
        advise(Workload("sentiment", 100), profile)
    with pytest.raises(ConfigError, match=r"--rows: must be a positive number of training rows; got 0"):
        advise(Workload("text_classification", 0), profile)
    with pytest.raises(ConfigError, match=r"--budget-money needs --price-per-hour"):
        advise(Workload("text_classification", 100), profile, limits=Constraints(budget_money=10))
    with pytest.raises(ConfigError, match=r"--objective: 'speed' is not one of quality, time, cost, latency"):
        advise(Workload("text_classification", 100), profile, objective="speed")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile), encoding="utf-8")
    assert select_profile("cpu", path) == (profile, "profile")
    with pytest.raises(ConfigError, match=r"--hardware 'TPU-v9': no measured figures for it \(available: "
                                          r".*p.json: cpu\)"):
        select_profile("TPU-v9", path)
    with pytest.raises(ConfigError, match=r"--profile '.*missing.json' does not exist; run `taskfit profile` first"):
        select_profile(None, tmp_path / "missing.json")


def test_cli_reference_json_and_errors(tmp_path):
    env = {"TASKFIT_CACHE": str(tmp_path / "cache")}  # no profile of this machine: the built-in reference is used
    res = run_taskfit(["advise", "--task", "text_classification", "--rows", "3000", "--labels", "5",
                       "--languages", "zh", "--latency-ms", "1000", "--json"], **env)
    doc = json.loads(res.stdout)
    assert doc["source"] == "reference"
    assert doc["notes"][0].startswith("not profiled on this machine — run `taskfit profile`")
    assert doc["ranked"] and all(o["model"] == "multilingual-e5-small" for o in doc["ranked"])
    assert all("does not cover zh" in o["rejected"] for o in doc["rejected"] if o["model"] == "all-MiniLM-L6-v2")
    bad = run_taskfit(["advise", "--task", "nope", "--rows", "-3"], ok=False, **env)
    assert bad.returncode == 2
    assert "--task: 'nope' is not a task" in bad.stderr and "--rows: must be a positive number" in bad.stderr
    hw = run_taskfit(["advise", "--task", "text_classification", "--rows", "10", "--hardware", "A100"], ok=False,
                     **env)
    assert hw.returncode == 2 and "--hardware 'A100': no measured figures for it" in hw.stderr
    assert math.isfinite(doc["ranked"][0]["total_s"])
    # images: the reference carries the packaged CNNs, measured on another machine, and says so
    img = json.loads(run_taskfit(["advise", "--task", "image_classification", "--rows", "3000", "--labels", "4",
                                  "--image-size", "96", "--json"], **env).stdout)
    assert {o["model"] for o in img["ranked"]} == {"efficientnet-lite0", "mobilenet_v2"}
    assert {o["method"] for o in img["ranked"]} == {"full", "frozen"}
    assert any(n.startswith("the reference's options for efficientnet-lite0, mobilenet_v2 were measured on another "
                            "machine") for n in img["notes"])
    assert img["workload"]["image_side"] == 96 and img["workload"]["tokens"] == 96 * 96
