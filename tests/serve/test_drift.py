"""Drift statistics (PSI, KS) against hand computations and scipy; features; the reference on real text."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from taskfit.serve.drift import (
    EPS,
    Reference,
    bin_shares,
    category_shares,
    ks_2samp,
    language,
    oov_rate,
    psi,
    quantile_edges,
    words,
)


def test_psi_matches_hand_computation():
    ref, cur = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    hand = (0.2 - 0.5) * math.log(0.2 / 0.5) + 0 + (0.5 - 0.2) * math.log(0.5 / 0.2)
    assert psi(ref, cur) == pytest.approx(hand, rel=1e-12)
    assert psi(ref, ref) == 0.0
    # an empty bin counts as EPS on that side, so PSI stays finite
    hand_empty = (EPS - 0.5) * math.log(EPS / 0.5) + (0.5 - 0.5) * 0 + (0.5 - EPS) * math.log(0.5 / EPS)
    assert psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]) == pytest.approx(hand_empty, rel=1e-12)
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [1.0, 0.0, 0.0])


def test_bins_are_right_closed_quantiles():
    edges = quantile_edges(np.arange(1, 11), bins=5)  # 20/40/60/80% quantiles of 1..10
    assert edges == pytest.approx([2.8, 4.6, 6.4, 8.2])
    assert bin_shares([2.8, 2.9, 100, -5], edges).tolist() == [0.5, 0.25, 0.0, 0.0, 0.25]
    # many equal values (an OOV rate of 0) collapse duplicate edges instead of making empty bins
    # (linear quantiles of 100 sorted values: the 80% one sits at position 79.2 → 0.02, the 90% one at 89.1 → 0.11)
    assert quantile_edges([0.0] * 80 + [0.1, 0.2] * 10, bins=10) == pytest.approx([0.0, 0.02, 0.11])
    assert category_shares(["a", "b", "a", "zz"], ["a", "b"]).tolist() == [0.5, 0.25, 0.25]


def test_ks_matches_scipy():
    rng = np.random.default_rng(0)
    for a, b in ((rng.normal(0, 1, 300), rng.normal(0, 1, 200)), (rng.normal(0, 1, 300), rng.normal(0.4, 1, 150)),
                 (rng.integers(0, 5, 100).astype(float), rng.integers(1, 6, 80).astype(float))):
        d, p = ks_2samp(a, b)
        ref = stats.ks_2samp(a, b, method="asymp")
        assert d == pytest.approx(ref.statistic, abs=1e-12)
        assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
    # hand: [1,2,3] vs [4,5]: the CDFs are 1 and 0 between 3 and 4
    assert ks_2samp([1, 2, 3], [4, 5])[0] == 1.0
    assert ks_2samp([], [1.0]) == (0.0, 1.0)


def test_text_features_for_english_and_chinese():
    assert words("Shares FELL 3% in 东京 trading") == ["shares", "fell", "3", "in", "东", "京", "trading"]
    assert language("The market fell sharply today.") == "en"
    assert language("今天股市大幅下跌，投资者担忧。") == "zh"
    assert language("Apple 发布了 new iPhone 新品 today") == "mixed"
    assert language("12345 !!!") == "en"
    vocab = {"the", "market", "fell", "股", "市"}
    assert oov_rate("The market rose", vocab) == pytest.approx(1 / 3)
    assert oov_rate("股市大跌", vocab) == pytest.approx(0.5)
    assert oov_rate("", vocab) == 0.0


def _reference(texts_train: list[str], held: list[str]) -> Reference:
    labels = ["a" if len(t) % 2 else "b" for t in held]
    return Reference.build(texts_train, held, labels, [0.9] * len(held), ["a", "b"], bins=10)


def test_no_drift_on_same_distribution_and_drift_on_chinese_or_longer_text(bbc_csv, zh_csv):
    """Real BBC news as an English model's reference: other BBC rows do not drift; Chinese reviews drift on
    language, vocabulary and length; the same English texts repeated three times drift on length only."""
    bbc = pd.read_csv(bbc_csv)["text"].astype(str).tolist()
    zh = pd.read_csv(zh_csv)["text"].astype(str).tolist()
    ref = _reference(bbc[:150], bbc[150:225])
    same = ref.compare({"length": [len(t) for t in bbc[225:]], "oov": [oov_rate(t, ref.vocab) for t in bbc[225:]],
                        "language": [language(t) for t in bbc[225:]]}, psi_alert=0.2, ks_alert=0.01)
    assert {k: v["drifted"] for k, v in same.items()} == {"length": False, "oov": False, "language": False}
    assert all(v["psi"] < 0.2 for v in same.values())

    chinese = ref.compare({"length": [len(t) for t in zh[:75]], "oov": [oov_rate(t, ref.vocab) for t in zh[:75]],
                           "language": [language(t) for t in zh[:75]]}, psi_alert=0.2, ks_alert=0.01)
    assert all(v["drifted"] for v in chinese.values())
    assert chinese["language"]["shares"]["zh"] > 0.9 and chinese["language"]["reference_shares"]["en"] == 1.0
    assert chinese["oov"]["mean"] > 0.5 > same["oov"]["mean"]

    longer = [" ".join([t] * 3) for t in bbc[225:]]
    shifted = ref.compare({"length": [len(t) for t in longer], "oov": [oov_rate(t, ref.vocab) for t in longer]},
                          psi_alert=0.2, ks_alert=0.01)
    assert shifted["length"]["drifted"] and shifted["length"]["psi"] > 1.0 and shifted["length"]["ks_p"] < 1e-6
    assert not shifted["oov"]["drifted"]


def test_reference_cache_round_trip(tmp_path):
    ref = _reference(["the cat sat", "a dog ran"], ["the cat ran", "a bird sat", "the dog"] * 10)
    ref.data["fingerprint"] = "abc"
    path = tmp_path / "monitor_reference.json"
    ref.save(path)
    again = Reference.load(path, "abc")
    assert again is not None and again.vocab == ref.vocab and again.features == ref.features
    assert Reference.load(path, "other-model") is None  # built for another model / settings: rebuilt
    path.write_text("{torn", encoding="utf-8")
    assert Reference.load(path, "abc") is None
