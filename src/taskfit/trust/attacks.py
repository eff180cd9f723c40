"""Robustness attacks: perturb test texts a little and count how often the model's prediction flips.

Every attack in :data:`ATTACKS` is a seeded function ``perturb(text, rng, budget, ctx) -> text`` that changes
at most ``budget`` (a fraction) of the text's units: words for English, characters (or jieba words) for
Chinese. Attacks register themselves in :data:`ATTACKS` (name → :class:`Attack`); the runner that attacks
a model with them and the report section are in :mod:`taskfit.trust.robustness` (also reachable here:
``attacks.run_attacks``, ``attacks.robustness_section``).

=========== ========= ==================================================================================
attack      language  what it does
=========== ========= ==================================================================================
typo        en, zh    en: swap / drop / insert / keyboard-neighbour a letter in a word; zh: drop, repeat or
                      swap adjacent characters
word_swap   en, zh    swap adjacent words (zh: jieba words)
word_delete en, zh    delete words
synonym     en, zh    replace a word with one of its nearest neighbours in the model's own input-embedding
                      space among whole-word vocabulary tokens (stopwords and the word itself excluded).
                      Limit: static embeddings put related words, even antonyms (good/bad), close together,
                      so a "synonym" may change the meaning; treat this attack as an upper bound.
homophone   zh        replace characters by same-pinyin characters (snownlp's table)
shape       zh        replace characters by look-alike characters (a hand-made table)
width       en, zh    full-width ↔ half-width forms of letters, digits and punctuation
=========== ========= ==================================================================================
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from taskfit.errors import IncompatibleError
from taskfit.registry import Registry
from taskfit.trust.zh_confusables import CJK, homophone_map, is_cjk, shape_map, width_swap

_EN_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _words(s: str) -> frozenset[str]:
    return frozenset(s.split())


EN_STOPWORDS = _words(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those he she they we you i me him her them us my your our their his not no so than then there here "
    "do does did have has had will would can could should may might must shall which who whom what when where "
    "why how all any each both few more most other some such only own same too very just also into over under "
    "about after before up down out off again further once")
ZH_STOPWORDS = _words("的 了 是 在 我 有 和 就 不 人 都 一 也 很 到 说 要 去 你 会 着 没有 看 好 自己 这 那 他 她 "
                      "它 们 之 与 及 而 或 但 被 把 给 让 从 对 为 以 于 吧 呢 吗 啊")


def _neighbours() -> dict[str, str]:
    out: dict[str, str] = {}
    for r, row in enumerate(_KEYBOARD):
        for c, ch in enumerate(row):
            near = [row[j] for j in (c - 1, c + 1) if 0 <= j < len(row)]
            near += [_KEYBOARD[k][c] for k in (r - 1, r + 1) if 0 <= k < 3 and c < len(_KEYBOARD[k])]
            out[ch] = "".join(near)
    return out


KEYBOARD_NEIGHBOURS = _neighbours()


def text_language(texts: Sequence[str]) -> str:
    """'zh' when CJK characters are at least 30% of the letters of (a sample of) the texts, else 'en'."""
    sample = "".join(texts[:200])
    cjk = len(CJK.findall(sample))
    letters = cjk + sum(ch.isascii() and ch.isalpha() for ch in sample)
    return "zh" if letters and cjk / letters >= 0.3 else "en"


def n_edits(budget: float, units: int) -> int:
    """How many of ``units`` units a ``budget`` fraction allows: at least 1 when there is any unit."""
    return 0 if units == 0 else max(1, min(units, round(budget * units)))


# ---- units: where in a text the words / characters are ------------------------------------------------
def word_spans(text: str, lang: str) -> list[tuple[int, int]]:
    """Character spans of the words: English words by regex; Chinese words by jieba (CJK runs only)."""
    if lang != "zh":
        return [m.span() for m in _EN_WORD.finditer(text)]
    try:
        import jieba

        jieba.setLogLevel(60)
        spans, pos = [], 0
        for tok in jieba.lcut(text):
            if CJK.search(tok):
                spans.append((pos, pos + len(tok)))
            pos += len(tok)
        return spans
    except ImportError:  # without jieba a Chinese "word" is a character
        return [m.span() for m in CJK.finditer(text)]


def char_positions(text: str) -> list[int]:
    return [m.start() for m in CJK.finditer(text)]


def _replace_spans(text: str, edits: dict[tuple[int, int], str]) -> str:
    out, pos = [], 0
    for (a, b), new in sorted(edits.items()):
        out += [text[pos:a], new]
        pos = b
    return "".join(out) + text[pos:]


@dataclass
class AttackContext:
    """What attacks may need beyond the text: the language and (for ``synonym``) the model's vocabulary."""

    lang: str = "en"
    synonyms: SynonymTable | None = None


@dataclass(frozen=True)
class Attack:
    """A registered attack: ``perturb(text, rng, budget, ctx)`` returns the perturbed text."""

    perturb: Callable[[str, random.Random, float, AttackContext], str]
    languages: tuple[str, ...]
    description: str


ATTACKS: Registry[Attack] = Registry("attack")
DEFAULT_ATTACKS = {"en": ("typo", "word_swap", "word_delete", "synonym"), "zh": ("homophone", "shape", "width", "typo")}


def _typo_word(word: str, rng: random.Random) -> str:
    ops = ["drop", "insert", "neighbour"] + (["swap"] if len(word) >= 4 else [])
    op, i = rng.choice(ops), rng.randrange(len(word))
    if op == "swap":
        i = rng.randrange(1, len(word) - 2)  # keep first and last letter: the readable kind of typo
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == "drop" and len(word) > 1:
        return word[:i] + word[i + 1:]
    if op == "neighbour" and word[i].lower() in KEYBOARD_NEIGHBOURS:
        new = rng.choice(KEYBOARD_NEIGHBOURS[word[i].lower()])
        return word[:i] + (new.upper() if word[i].isupper() else new) + word[i + 1:]
    return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[i:]


def typo(text: str, rng: random.Random, budget: float, ctx: AttackContext) -> str:
    """One typo in each of up to ``budget`` of the words of 3+ letters (zh: of the characters)."""
    if ctx.lang == "zh":
        pos = char_positions(text)
        edits: dict[tuple[int, int], str] = {}
        for p in rng.sample(pos, n_edits(budget, len(pos))):
            op = rng.choice(("drop", "repeat", "swap"))
            if op == "swap" and p + 1 < len(text) and is_cjk(text[p + 1]) and (p + 1, p + 2) not in edits:
                edits[(p, p + 2)] = text[p + 1] + text[p]
            elif not any(a <= p < b for a, b in edits):
                edits[(p, p + 1)] = "" if op == "drop" else text[p] * 2
        return _replace_spans(text, _non_overlapping(edits))
    spans = [s for s in word_spans(text, "en") if s[1] - s[0] >= 3]
    chosen = rng.sample(spans, n_edits(budget, len(spans)))
    return _replace_spans(text, {(a, b): _typo_word(text[a:b], rng) for a, b in chosen})


def _non_overlapping(edits: dict[tuple[int, int], str]) -> dict[tuple[int, int], str]:
    kept: dict[tuple[int, int], str] = {}
    end = -1
    for (a, b), new in sorted(edits.items()):
        if a >= end:
            kept[(a, b)], end = new, b
    return kept


def word_swap(text: str, rng: random.Random, budget: float, ctx: AttackContext) -> str:
    """Swap pairs of adjacent (different) words; ``budget`` bounds the words moved."""
    spans = word_spans(text, ctx.lang)
    pairs = list(range(len(spans) - 1))
    rng.shuffle(pairs)
    swaps = max(1, n_edits(budget, len(spans)) // 2)  # a swap moves two words
    edits: dict[tuple[int, int], str] = {}
    used: set[int] = set()
    for i in pairs:
        if len(used) >= 2 * swaps:
            break
        if i in used or i + 1 in used or text[spans[i][0]:spans[i][1]] == text[spans[i + 1][0]:spans[i + 1][1]]:
            continue
        (a, b), (c, d) = spans[i], spans[i + 1]
        edits[(a, b)], edits[(c, d)] = text[c:d], text[a:b]
        used.update((i, i + 1))
    return _replace_spans(text, edits)


def word_delete(text: str, rng: random.Random, budget: float, ctx: AttackContext) -> str:
    """Delete up to ``budget`` of the words (never all of them)."""
    spans = word_spans(text, ctx.lang)
    if len(spans) < 2:
        return text  # deleting the only word leaves nothing to classify
    chosen = rng.sample(spans, min(len(spans) - 1, n_edits(budget, len(spans))))
    # English: take one following space with the word so that no double spaces are left behind
    return _replace_spans(text, {(a, b + (ctx.lang != "zh" and text[b:b + 1] == " ")): "" for a, b in chosen})


def synonym(text: str, rng: random.Random, budget: float, ctx: AttackContext) -> str:
    """Replace up to ``budget`` of the (non-stopword) words by embedding-space neighbours, keeping capitals."""
    if ctx.synonyms is None:
        raise IncompatibleError("attack 'synonym' needs the model's embeddings; run it through run_attacks().")
    stop = ZH_STOPWORDS if ctx.lang == "zh" else EN_STOPWORDS
    spans = [(a, b) for a, b in word_spans(text, ctx.lang) if text[a:b].lower() not in stop]
    candidates = [(s, ctx.synonyms.neighbours(text[s[0]:s[1]])) for s in spans]
    candidates = [(s, n) for s, n in candidates if n]
    chosen = rng.sample(candidates, min(len(candidates), n_edits(budget, len(spans))))
    edits = {}
    for (a, b), options in chosen:
        new = rng.choice(options)
        edits[(a, b)] = new.capitalize() if text[a].isupper() else new
    return _replace_spans(text, edits)


def _char_map_attack(table: Callable[[], dict[str, tuple[str, ...]]]) -> Callable[..., str]:
    def perturb(text: str, rng: random.Random, budget: float, ctx: AttackContext) -> str:
        """Replace up to ``budget`` of the Chinese characters by a character the table pairs them with."""
        mapping = table()
        pos = char_positions(text)
        usable = [p for p in pos if mapping.get(text[p])]
        chosen = rng.sample(usable, min(len(usable), n_edits(budget, len(pos))))
        return _replace_spans(text, {(p, p + 1): rng.choice(mapping[text[p]]) for p in chosen})

    return perturb


def width(text: str, rng: random.Random, budget: float, ctx: AttackContext) -> str:
    """Switch the width of up to ``budget`` of the visible characters (those that have another width)."""
    usable = [i for i, ch in enumerate(text) if width_swap(ch) is not None and not ch.isspace()]
    visible = sum(not ch.isspace() for ch in text)
    chosen = rng.sample(usable, min(len(usable), n_edits(budget, visible)))
    return _replace_spans(text, {(i, i + 1): width_swap(text[i]) or text[i] for i in chosen})


for _name, _fn, _langs, _desc in (
    ("typo", typo, ("en", "zh"), "swap / drop / insert / keyboard-neighbour letters (zh: drop, repeat, swap chars)"),
    ("word_swap", word_swap, ("en", "zh"), "swap adjacent words"),
    ("word_delete", word_delete, ("en", "zh"), "delete words"),
    ("synonym", synonym, ("en", "zh"), "nearest neighbours in the model's input-embedding space"),
    ("homophone", _char_map_attack(homophone_map), ("zh",), "same-pinyin characters"),
    ("shape", _char_map_attack(shape_map), ("zh",), "look-alike characters (hand-made table)"),
    ("width", width, ("en", "zh"), "full-width / half-width forms"),
):
    ATTACKS.register(_name)(Attack(_fn, _langs, _desc))


class SynonymTable:
    """Nearest neighbours of a word among the whole-word tokens of the model's vocabulary, by cosine similarity
    of the model's own input embeddings (WordPiece: tokens without ``##``; SentencePiece: tokens with ``▁``)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, k: int = 8) -> None:
        vocab: dict[str, int] = tokenizer.get_vocab()
        special = set(getattr(tokenizer, "all_special_tokens", []))
        sentencepiece = sum(t.startswith("\u2581") for t in vocab) > len(vocab) // 10
        words: dict[str, int] = {}
        for tok, i in vocab.items():
            if tok in special or (sentencepiece and not tok.startswith("\u2581")) or tok.startswith("##"):
                continue
            word = tok[1:] if sentencepiece else tok
            if word.isalpha() and (len(word) >= 2 or is_cjk(word)) and word.lower() not in EN_STOPWORDS \
                    and word not in ZH_STOPWORDS:
                words.setdefault(word.lower(), i)
        self.words = list(words)
        weight = model.get_input_embeddings().weight.detach().float()  # type: ignore[operator, union-attr]
        ids = torch.tensor(list(words.values()))
        self.matrix = torch.nn.functional.normalize(weight[ids].cpu(), dim=1)  # [V', H]
        self.index = {w: j for j, w in enumerate(self.words)}
        self.k = k
        self._cache: dict[str, list[str]] = {}

    def neighbours(self, word: str) -> list[str]:
        """Up to ``k`` neighbours of ``word`` (lower-cased); [] when the word is not one vocabulary token."""
        key = word.lower()
        if key not in self._cache:
            j = self.index.get(key)
            if j is None:
                self._cache[key] = []
            else:
                sims = self.matrix @ self.matrix[j]
                order = torch.topk(sims, min(len(self.words), self.k * 3)).indices.tolist()
                near = [self.words[i] for i in order if self.words[i] != key and key not in self.words[i]
                        and self.words[i] not in key]
                self._cache[key] = near[: self.k]
        return self._cache[key]


# The runner and the report section live in taskfit.trust.robustness; they are reachable from here too
# (``attacks.run_attacks``), loaded on first use so that neither module imports the other at import time.
_RUNNER = ("run_attacks", "attack_texts", "unsupported_reason", "robustness_section", "highlight_diff",
           "predict_indices", "perturbation_size", "check_attacks")


def __getattr__(name: str) -> Any:
    if name in _RUNNER:
        from taskfit.trust import robustness

        return getattr(robustness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
