"""The NER task: readers, scheme checks, sub-word alignment, seqeval scores, decoding, bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taskfit.config import DataConfig, NerOptions
from taskfit.errors import DataError
from taskfit.tasks.ner import Ner, split_words
from taskfit.tasks.ner_data import detect_scheme, label_set, read_conll, read_sentences
from taskfit.tasks.ner_report import entity_scores, html_section, spans

CONLL = """-DOCSTART- -X- -X- O

John NNP B-PER
lives VBZ O
in IN O
New NNP B-LOC
York NNP I-LOC
. . O


Acme NNP B-ORG
hired VBD O
Mary NNP B-PER
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def conll(sentences: list[list[tuple[str, str]]]) -> str:
    return "\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n"


def many(n: int = 12) -> list[list[tuple[str, str]]]:
    """n small BIO sentences with PER and LOC entities."""
    return [[("Ann", "B-PER"), (f"Lee{i}", "I-PER"), ("in", "O"), ("Paris", "B-LOC")] for i in range(n)]


def cfg(train: Path, **kw: object) -> DataConfig:
    return DataConfig(train=train, **kw)  # type: ignore[arg-type]


# ---- readers ------------------------------------------------------------------------------------------


def test_read_conll_skips_docstart_and_blank_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    frame = read_conll(write(tmp_path / "a.conll", CONLL))
    assert frame["tokens"].tolist() == [["John", "lives", "in", "New", "York", "."], ["Acme", "hired", "Mary"]]
    assert frame["tags"].iloc[0] == ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]
    assert frame["_row"].tolist() == [3, 11]  # line of each sentence's first token
    # tag_column picks another column: here the POS column
    assert read_conll(tmp_path / "a.conll", tag_column=1)["tags"].iloc[1] == ["NNP", "VBD", "NNP"]


def test_read_jsonl_and_csv_with_json_string_lists(tmp_path: Path) -> None:
    rows = [{"words": ["北", "京"], "labels": ["B-LOC", "I-LOC"]}, {"words": ["Bob"], "labels": ["B-PER"]}]
    jl = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    csv = tmp_path / "a.csv"
    pd.DataFrame({k: [json.dumps(r[k], ensure_ascii=False) for r in rows] for k in ("words", "labels")}).to_csv(
        csv, index=False)
    for path in (jl, csv):
        frame = read_sentences(path, "words", "labels")
        assert frame["tokens"].tolist() == [["北", "京"], ["Bob"]]
        assert frame["tags"].tolist() == [["B-LOC", "I-LOC"], ["B-PER"]]


def test_scheme_detection() -> None:
    bio = pd.DataFrame({"tags": [["B-PER", "I-PER", "O", "B-LOC"]]})
    bioes = pd.DataFrame({"tags": [["B-PER", "E-PER", "O", "S-LOC"], ["S-PER", "O"]]})
    # a BIO file with one stray E- tag stays BIO (so the tag is reported rather than the file re-read)
    stray = pd.DataFrame({"tags": [["B-PER", "O", "B-LOC", "O"], ["B-ORG", "E-ORG"], ["B-PER", "O"]]})
    assert [detect_scheme(f) for f in (bio, bioes, stray)] == ["BIO", "BIOES", "BIO"]
    assert label_set(["PER", "LOC"], "BIO") == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert label_set(["X"], "BIOES") == ["O", "B-X", "I-X", "E-X", "S-X"]


def test_load_splits_split_by_sentence_seeded_and_label_set(tmp_path: Path) -> None:
    path = write(tmp_path / "t.conll", conll(many(40)))
    task = Ner(NerOptions())
    a = task.load_splits(cfg(path, valid_fraction=0.2, test_fraction=0.1))
    b = Ner(NerOptions()).load_splits(cfg(path, valid_fraction=0.2, test_fraction=0.1))
    assert {k: len(v) for k, v in a.frames.items()} == {"train": 28, "test": 4, "valid": 8}
    assert all(a.frames[k]["_row"].tolist() == b.frames[k]["_row"].tolist() for k in a.frames)
    assert a.labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"] and task.scheme == "BIO"
    assert task.data_stats(a)["label_counts"]["valid"] == {"LOC": 8, "PER": 8}


# ---- bad inputs ---------------------------------------------------------------------------------------


def test_e_tag_in_bio_file_names_sentence_line_tag_and_expected(tmp_path: Path) -> None:
    sents = many(6)
    sents[1][3] = ("Paris", "E-LOC")  # sentence 2, 4th token: line 5 + 4 = 9
    path = write(tmp_path / "t.conll", conll(sents))
    with pytest.raises(DataError) as e:
        Ner(NerOptions()).load_splits(cfg(path))
    msg = str(e.value)
    assert "t.conll" in msg and "sentence 2 (line 9)" in msg and "'E-LOC'" in msg
    assert "expected O, B-<type> or I-<type>" in msg and "BIOES" in msg


def test_bare_tag_without_prefix_is_an_error(tmp_path: Path) -> None:
    sents = many(4)
    sents[2][0] = ("Ann", "PER")
    with pytest.raises(DataError, match=r"sentence 3 \(line 11\): tag 'PER' is not a BIO tag.*B-/I- prefix"):
        Ner(NerOptions()).load_splits(cfg(write(tmp_path / "t.conll", conll(sents))))


def test_broken_i_continuation_is_a_warning_not_an_error(tmp_path: Path) -> None:
    sents = many(10)
    sents[0][3] = ("Paris", "I-LOC")  # I- after O
    splits = Ner(NerOptions()).load_splits(cfg(write(tmp_path / "t.conll", conll(sents))))
    warn = [i for i in splits.issues if i["check"] == "tag_sequence"]
    assert warn and warn[0]["severity"] == "warning" and "train: 1 tag(s)" in warn[0]["message"]


def test_length_mismatch_names_sentence_and_row(tmp_path: Path) -> None:
    rows = [{"tokens": ["a", "b"], "tags": ["O", "O"]}, {"tokens": ["Ann", "Lee", "x"], "tags": ["B-PER", "I-PER"]}]
    path = write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"t\.jsonl.*sentence 2 \(row 2\) has 3 tokens but 2 tags.*one tag per token"):
        Ner(NerOptions()).load_splits(cfg(path))


def test_empty_sentence_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '{"tokens": [], "tags": []}\n{"tokens": ["a"], "tags": ["B-X"]}\n')
    with pytest.raises(DataError, match=r"sentence 1 \(row 1\) is empty"):
        Ner(NerOptions()).load_splits(cfg(path))


def test_unknown_tag_in_test_file_names_the_type_and_line(tmp_path: Path) -> None:
    train = write(tmp_path / "train.conll", conll(many(10)))
    test_sents = many(3)
    test_sents[2][3] = ("Paris", "B-MISC")
    test = write(tmp_path / "test.conll", conll(test_sents))
    with pytest.raises(DataError) as e:
        Ner(NerOptions()).load_splits(cfg(train, test=test))
    msg = str(e.value)
    assert "test.conll" in msg and "test: 1 sentence(s)" in msg and "MISC" in msg and "sentence 3 (line 14)" in msg


def test_malformed_line_names_its_number(tmp_path: Path) -> None:
    text = "John B-PER\nlives O\nbrokenline\n\nAnn B-PER\n"
    with pytest.raises(DataError, match=r"line 3 'brokenline' has 1 column\(s\).*token then its tag"):
        Ner(NerOptions()).load_splits(cfg(write(tmp_path / "t.conll", text)))


def test_missing_columns_reported_by_input_problems(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '{"words": ["a"], "tags": ["O"]}\n')
    problems = Ner(NerOptions()).input_problems(cfg(path))
    assert len(problems) == 1 and "column 'tokens' not found" in problems[0] and "task.tokens" in problems[0]


# ---- alignment ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path):
    return Ner(NerOptions()).load_processor(tiny_model_dir)


def test_first_piece_labelled_others_ignored(tok) -> None:
    labels = label_set(["LOC"], "BIO")
    words, tags = ["Empire", "Statehouseholders", "x"], ["B-LOC", "I-LOC", "O"]
    n_pieces = [len(tok.tokenize(w)) for w in words]
    assert n_pieces[1] > 1  # the case that matters
    frame = pd.DataFrame({"tokens": [words], "tags": [tags]})
    enc = Ner(NerOptions()).encode(frame, tok, labels)
    first = np.cumsum([1, *n_pieces[:-1]])
    assert enc["first"][0].tolist() == first.tolist()
    expect = np.full(len(enc["input_ids"][0]), -100)
    expect[first] = [1, 2, 0]
    assert enc["labels"][0].tolist() == expect.tolist()
    all_pieces = Ner(NerOptions(label_all_subtokens=True)).encode(frame, tok, labels)
    pieces = all_pieces["labels"][0]
    assert pieces[first[1]: first[1] + n_pieces[1]].tolist() == [2] * n_pieces[1]  # I-LOC on every piece
    assert pieces[first[0]] == 1 and pieces[0] == -100 and pieces[-1] == -100  # B- kept; [CLS]/[SEP] ignored


def test_chinese_characters_are_one_word_each(tok) -> None:
    words, offsets = split_words("江泽民在北京发表讲话。")
    assert words == list("江泽民在北京发表讲话。") and offsets[4] == (4, 5)
    enc = Ner(NerOptions()).encode(pd.DataFrame({"tokens": [words]}), tok, ["O", "B-PER", "I-PER"])
    assert enc["first"][0].tolist() == list(range(1, len(words) + 1))
    assert not enc.labelled


def test_english_word_split_keeps_mentions_and_offsets() -> None:
    text = "@paulwalk it's the U.S. office of IBM-Asia, 2024!"
    words, offsets = split_words(text)
    assert words == ["@paulwalk", "it's", "the", "U.S", ".", "office", "of", "IBM-Asia", ",", "2024", "!"]
    assert all(text[s:e] == w for w, (s, e) in zip(words, offsets, strict=True))


def test_truncation_warns_with_count(tok) -> None:
    frame = pd.DataFrame({"tokens": [["word"] * 20, ["short"]], "tags": [["O"] * 20, ["O"]]})
    task = Ner(NerOptions(), max_length=8)
    with pytest.warns(UserWarning, match=r"1 of 2 sentence\(s\) are longer than data.max_length=8"):
        enc = task.encode(frame, tok, ["O", "B-X", "I-X"])
    assert enc.extra["truncated"] == 1 and enc["first"][0][-1] == -1 and len(enc["input_ids"][0]) == 8


# ---- scores and decoding -------------------------------------------------------------------------------


def test_entity_scores_on_hand_made_sequences() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O", "B-LOC"]]
    m = entity_scores(gold, pred, "BIO")
    # 4 gold entities, 3 predicted, 2 exact matches (PER 0-2, ORG 0)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert m["per_type"]["PER"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_type"]["LOC"]["f1"] == 0.0 and m["per_type"]["ORG"]["f1"] == 1.0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert (m["n_entities"], m["n_predicted"]) == (4, 3)


def test_bio_is_lenient_and_bioes_is_strict() -> None:
    # conlleval reading: an I- that starts a span still counts as an entity
    assert entity_scores([["B-PER", "I-PER"]], [["I-PER", "I-PER"]], "BIO")["f1"] == 1.0
    # strict IOBES: B-LOC I-LOC without E-LOC is no entity, so only S-PER is found (P 1, R 1/2)
    m = entity_scores([["B-LOC", "E-LOC", "O", "S-PER"]], [["B-LOC", "I-LOC", "O", "S-PER"]], "BIOES")
    assert (m["precision"], m["recall"]) == (1.0, 0.5)
    none = entity_scores([["O", "O"]], [["O", "O"]], "BIO")
    assert none["f1"] == 0.0 and none["per_type"] == {}


def test_spans() -> None:
    assert spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "B-LOC"]) == [
        ("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("LOC", 5, 6)]
    assert spans(["S-PER", "B-ORG", "I-ORG", "E-ORG", "E-ORG"]) == [("PER", 0, 1), ("ORG", 1, 4), ("ORG", 4, 5)]


def test_predictions_decode_first_pieces_into_spans_with_char_offsets(tok) -> None:
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    task = Ner(NerOptions())
    frame = task.input_frame(["Barack  Obama visited Paris.", ["北", "京", "好"]])
    enc = task.encode(frame, tok, labels)
    wanted = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-LOC", "I-LOC", "O"]]
    outs = []
    for r, tags in enumerate(wanted):
        logits = np.zeros((len(enc["input_ids"][r]), len(labels)), dtype=np.float32)
        logits[:, 0] = 1.0
        for w, t in enumerate(tags):
            logits[enc["first"][r][w]] = 0.0
            logits[enc["first"][r][w], labels.index(t)] = 5.0
        outs.append((logits, enc["first"][r], frame.iloc[r]))
    res = task.format_predictions(outs, labels, top_k=1)
    assert res[0]["tags"] == wanted[0]
    per, loc = res[0]["entities"]
    assert per["type"] == "PER" and per["text"] == "Barack  Obama" and (per["start"], per["end"]) == (0, 2)
    assert (per["start_char"], per["end_char"]) == (0, 13) and 0.9 < per["score"] <= 1.0
    assert loc["text"] == "Paris" and loc["start_char"] == 22
    assert res[1]["entities"] == [{"type": "LOC", "start": 0, "end": 2, "score": pytest.approx(res[1]["entities"][0]
                                   ["score"]), "text": "北京"}]
    json.dumps(res)


def test_report_section_and_console_table_escape_types() -> None:
    from rich.console import Console

    m = entity_scores([["B-<b>", "O", "B-LOC"]], [["B-<b>", "O", "O"]], "BIO")
    m.update(token_accuracy=0.5, n=1, loss=0.3)
    frag = html_section("test", m)
    assert "&lt;b&gt;" in frag and "<b>" not in frag.replace("<b>0.5", "").replace("</b>", "")
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', frag)
    console = Console(record=True, width=100)
    Ner(NerOptions()).render(console, m, "test")
    out = console.export_text()
    assert "LOC" in out and "micro avg" in out and "token accuracy 0.5000" in out


def test_meta_round_trip_keeps_detected_scheme() -> None:
    task = Ner(NerOptions(label_all_subtokens=True), max_length=40, scheme="BIOES")
    again = Ner.from_meta(task.meta())
    assert isinstance(again, Ner) and again.scheme == "BIOES" and again.opts.label_all_subtokens
    assert again.max_length == 40


def test_bare_sentencepiece_marker_does_not_stand_for_a_word() -> None:
    """XLM-R (multilingual-e5) pieces a Chinese character as "▁" + character: the character carries the label."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = [("<unk>", 0.0), ("<pad>", 0.0), ("▁", -2.0), ("江", -3.0), ("北", -3.0), ("▁Bob", -1.0)]
    spm = Tokenizer(models.Unigram(vocab, unk_id=0))
    spm.pre_tokenizer = pre_tokenizers.Metaspace()
    tok = PreTrainedTokenizerFast(tokenizer_object=spm, unk_token="<unk>", pad_token="<pad>")
    frame = pd.DataFrame({"tokens": [["江", "北", "Bob"]], "tags": [["B-LOC", "I-LOC", "B-PER"]]})
    enc = Ner(NerOptions()).encode(frame, tok, ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"])
    assert tok.convert_ids_to_tokens(enc["input_ids"][0].tolist()) == ["▁", "江", "▁", "北", "▁Bob"]
    assert enc["first"][0].tolist() == [1, 3, 4]
    assert enc["labels"][0].tolist() == [-100, 1, -100, 2, 3]
