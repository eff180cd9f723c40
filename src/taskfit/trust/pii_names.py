"""PERSON recognisers that work offline: Chinese names from jieba's part-of-speech tags plus surname
rules, English names from a census gazetteer plus capitalisation and context words.

Chinese: jieba (``posseg``, HMM on) tags person names ``nr``; a tag is kept when the word starts with a
common surname (single or compound) and has a name's length, or when it is a given name right after a
surname jieba split off. jieba also tags words such as 谢谢 or 银行卡 ``nr``, which the surname rule and a
short stop list drop. Surname + title (王先生, 李医生) masks the surname; context words (我叫, 姓名：,
联系人, 患者...) catch names jieba misses.

English: no spaCy English NER model can be installed offline, so names are found by rules over the 1990
US Census first-name and surname lists (``assets/``): a title (Mr, Ms, Dr...) before capitalised words,
a context cue (my name is, Dear, regards,...) before a capitalised word from the lists, or a first name
from the lists followed by another capitalised word. First names that are common words (May, Will, Grant,
Hope) count only after a title or a cue.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any

from presidio_analyzer import LocalRecognizer, RecognizerResult

from taskfit.trust.pii import LANG

ENTITY = "PERSON"

# The ~300 most common Chinese surnames; rare ones that are mostly ordinary characters (银, 门) left out.
_ZH_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温"
    "康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成"
    "苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费"
    "卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝")
# (东方, 西门 and 南宫 left out: as words they mean "east", "west gate", "south palace")
_ZH_COMPOUND = frozenset({"欧阳", "司马", "诸葛", "上官", "皇甫", "尉迟", "公孙", "慕容", "令狐", "夏侯", "长孙",
                          "宇文", "司徒", "端木", "独孤", "轩辕", "呼延"})
_ZH_TITLES = ("先生", "女士", "小姐", "老师", "医生", "经理", "护士", "律师", "阿姨", "师傅", "主任", "教授", "总",
              "护士长", "院长", "科长", "处长", "店长", "总监", "同学", "大夫")
# Words jieba tags nr that are not names in service text.
_ZH_STOP = frozenset({"谢谢", "银行卡", "高兴", "安心", "明白", "成功", "时间", "关心", "方便", "周末", "万元", "常见",
                      "包邮", "余额", "金额", "车主", "史上", "文明", "于是", "和平", "全额", "应该", "单价", "王府井",
                      "张江", "黄浦", "徐汇", "杨浦", "高新", "金山", "周庄", "朱家角", "马上", "高达", "常州", "温州"})
_CJK = re.compile(r"[\u4e00-\u9fff]")
# Function-word tags: a surname character tagged like this is the word it is (和老师 = "and the teacher").
_FUNCTION_TAGS = ("c", "p", "u", "uj", "ul", "r", "y", "e", "f")
_ZH_SURNAME_CUE = re.compile(r"(?:我姓|免贵姓|本人姓|他姓|她姓)([\u4e00-\u9fff]{1,2}?)"
                             r"(?=[，,。；;、\s]|$|的|先生|女士|小姐)")
_ZH_CUE = re.compile(r"(?:我叫|我是|本人|姓名|名字|联系人|收件人|收货人|签收人|持卡人|户名|患者|病人|客户|用户|投诉人|"
                     r"申请人|签名|经办人|客服|专员|转账给|转账到|转给|汇款给|付款给|来自|from)[:：\s]*", re.IGNORECASE)


def _zh_surname_len(word: str) -> int:
    """Length of the surname ``word`` starts with (2 compound, 1 single, 0 none)."""
    if word[:2] in _ZH_COMPOUND:
        return 2
    return 1 if word[:1] in _ZH_SURNAMES else 0


# Characters (almost) never in a given name: pronouns, particles, common verbs and shop words. jieba's HMM
# calls 谢谢您, 向左转 or 莫太住 names; a given name containing one of these is not taken.
_NOT_IN_GIVEN = frozenset("您你我他她它们的了是有或也都还就很太更最不没无勿别莫要会能可该把被让给对往从到以而但所如"
                          "若即便只才又再已曾将着过吗呢吧啊呀哦嗯么些这那哪谁什怎几个位条件次块点左右下后里外内间边头面"
                          "处住转走跑吃喝看听说讲问答买卖付完款价元号码话机箱卡证单订货物递谢祝请")
_NOT_ALONE_GIVEN = frozenset("小老大阿")  # 小王, 老李: a nickname prefix, not a one-character given name


def _zh_name_ok(word: str) -> bool:
    """A full name: a surname and a 1–2 character given name, all CJK, not a known non-name or a cue word."""
    n = _zh_surname_len(word)
    given = word[n:]
    return (bool(n) and 1 <= len(given) <= 2 and word not in _ZH_STOP and all(_CJK.match(c) for c in word)
            and not _ZH_CUE.fullmatch(word) and not any(c in _NOT_IN_GIVEN for c in given)
            and not (len(given) == 1 and given in _NOT_ALONE_GIVEN))


class ChinesePersonRecognizer(LocalRecognizer):  # type: ignore[misc]
    """Chinese person names (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(supported_entities=[ENTITY], supported_language=LANG, name="taskfit_person_zh")

    def load(self) -> None:
        _jieba()

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        if not _CJK.search(text):
            return []
        spans: dict[tuple[int, int], float] = {}
        words = _segment(text)
        for i, (w, flag, start) in enumerate(words):
            # neighbours only within the same run of Chinese characters (之余，默契 is not one name)
            prev = words[i - 1] if i and words[i - 1][2] + len(words[i - 1][0]) == start else None
            nxt = words[i + 1] if i + 1 < len(words) and words[i + 1][2] == start + len(w) else None
            if w in _ZH_STOP or (prev and prev[0] in _ZH_COUNTERS):
                continue  # 这张卡, 一位: a measure word, not a surname
            titled = bool(nxt and nxt[0] in _ZH_TITLES)
            sur = _zh_surname_len(w)
            if sur and sur == len(w):  # a lone surname
                span = (_given_after(text, start) if sur == 2 else
                        (start, nxt[2] + len(nxt[0])) if nxt and _given_ok(nxt) and flag not in _FUNCTION_TAGS
                        and _zh_name_ok(w + nxt[0]) and (flag.startswith("nr") or nxt[1].startswith("nr"))
                        else None)
                if span:
                    spans[span] = 0.87  # 周/nr + 浩然/a, 欧阳 + 立新: jieba split the name
                elif titled and flag not in _FUNCTION_TAGS:
                    spans.setdefault((start, start + sur), 0.75)  # 王 + 先生
            elif flag.startswith("nr"):
                stripped = next((w[:-len(t)] for t in _ZH_TITLES if w.endswith(t) and len(w) > len(t)), w)
                if stripped != w and _zh_surname_len(stripped) == len(stripped):
                    spans[(start, start + len(stripped))] = 0.85  # 黄先生 as one word
                elif _zh_name_ok(stripped) and (titled or stripped != w or _unknown(stripped)):
                    spans[(start, start + len(stripped))] = 0.85
                elif (prev and len(w) <= 2 and prev[1] not in _FUNCTION_TAGS and prev[0][-1] in _ZH_SURNAMES
                      and _zh_name_ok(prev[0][-1] + w) and _unknown(w)):
                    spans[(start - 1, start + len(w))] = 0.7  # 客户王 + 秀英: jieba glued the surname before
            elif titled and _zh_name_ok(w):
                spans.setdefault((start, start + len(w)), 0.75)  # 彭洋/ns + 护士长
        for m in _ZH_SURNAME_CUE.finditer(text):
            if _zh_surname_len(m.group(1)) == len(m.group(1)):
                spans[m.span(1)] = 0.8  # 我姓钱: the surname alone
        for m in _ZH_CUE.finditer(text):
            span = _given_after(text, m.end())
            if span and span[1] - span[0] > 1:
                spans[span] = 0.86  # a cue right before beats jieba's word boundaries
        return [RecognizerResult(ENTITY, s, e, score) for (s, e), score in spans.items()]


# Characters that end a name: particles, pronouns, verbs and the first characters of titles.
_ZH_COUNTERS = frozenset({"这", "那", "一", "每", "几", "两", "哪", "该", "此", "整", "半", "多"})
_STOP_FIRST = frozenset("的在会已是和与了等您你我他她先女经医护总主老师说来到给也都就还要将把被对为从于及或啊吗呢吧请")
_STOP_SECOND = _STOP_FIRST | frozenset("小生长电致反打向今明昨已")


# Tags a given name never has (verbs, adverbs, particles...): 钱/nr + 崇拜/v is not a name.
_NOT_GIVEN_TAGS = frozenset({"v", "vn", "vd", "d", "p", "c", "u", "uj", "ul", "uz", "ug", "ud", "r", "m", "q", "f",
                             "t", "y", "e", "x", "zg", "eng", "l", "i"})


def _given_ok(word: tuple[str, str, int]) -> bool:
    """Can this jieba word be the given name after a lone surname?"""
    w, flag, _ = word
    return (1 <= len(w) <= 2 and all(_CJK.match(c) for c in w) and w[0] not in _STOP_FIRST
            and (flag not in _NOT_GIVEN_TAGS or (len(w) == 2 and _freq(w) < 100)))  # 胡 + 立新/d


def _unknown(word: str) -> bool:
    """True unless ``word`` is a common dictionary word. jieba's dictionary tags many ordinary words ``nr``
    (温泉, 安静, 陈旧, 林立: they are also someone's name); real names are mostly absent from it and found
    by the HMM, so an ``nr`` word counts as a name alone only when absent from the dictionary or rare in it
    (陈建国: 3; 麦克风: 44, 温泉: 680)."""
    return _freq(word) < 5


def _freq(word: str) -> int:
    """Frequency of ``word`` in jieba's dictionary (0 when absent)."""
    import jieba

    _jieba()  # the dictionary is loaded lazily
    return int(jieba.dt.FREQ.get(word, 0) or 0)


def _given_after(text: str, at: int) -> tuple[int, int] | None:
    """The span of surname + 1–2 character given name starting at ``at``, read character by character
    (used where a cue or a lone surname says a name starts), or None."""
    sur = _zh_surname_len(text[at:at + 2])
    if not sur:
        return None
    end = at + sur
    for stop in (_STOP_FIRST, _STOP_SECOND):
        c = text[end:end + 1]
        if not c or not _CJK.match(c) or c in stop:
            break
        end += 1
    while end > at + sur and not _zh_name_ok(text[at:end]):
        end -= 1  # 许文博会 -> 许文博; 王老 -> nothing
    return (at, end) if end > at + sur else None


@lru_cache(maxsize=1)
def _jieba() -> Any:
    """jieba's posseg module, dictionary loaded once and quietly."""
    import logging

    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba.posseg


_ZH_FIRST_CHARS = _ZH_SURNAMES | {c[0] for c in _ZH_COMPOUND}
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")


def _segment(text: str) -> list[tuple[str, str, int]]:
    """(word, tag, start offset) of every jieba word of the Chinese runs of ``text``.

    Only runs of Chinese characters go to jieba: its HMM pass over digits, e-mails and English took over
    half of the time, and names are Chinese characters anyway.
    """
    out = []
    for run in _CJK_RUN.finditer(text):
        if _ZH_FIRST_CHARS.isdisjoint(run.group()):
            continue  # no surname character in this clause: no name can start in it
        pos = run.start()
        for pair in _jieba().cut(run.group()):  # HMM on: it finds names missing from the dictionary
            out.append((pair.word, pair.flag, pos))
            pos += len(pair.word)
    return out


# ---- English ----------------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _names(kind: str) -> frozenset[str]:
    """A gazetteer of ``assets/en_<kind>.txt`` (title case)."""
    text = resources.files("taskfit.trust").joinpath("assets", f"en_{kind}.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


# First names (or surnames) that are everyday words, months or places: names only after a title or cue.
_EN_COMMON = frozenset(str.split("""
April May June August Will Bill Mark Grant Chase Rich Art Pat Sue Don Jack Frank Guy Ray Rose Lily Ivy Summer
Autumn Dawn Crystal Ruby Amber Jade Pearl Sandy Sunny Hope Faith Grace Joy Charity Patience Mercy Honor Young Long
King Love Page Price Cash Bank Card Ace Angel Baby Bee Bell Belle Berry Best Bird Black Blue Bond Brown Buck Burns
Case Chance Christian Clay Cliff Cook Dean Dell Destiny Di Dot Ever Fair Fancy Fern Fields Fleet Ford Fortune Fox
Gay Gene Gold Green Hall Harmony Hill Holly Hunter Iris Jewel Justice Key Lane Major Marsh Miles Moon Neat Noble
North Norman Paris Penny Pierce Pink Queen Rain Reed Rex River Rock Sage Scott Sky Star Sterling Stone Storm Story
Strong Sun Sweet Tab Teddy Trinity Trust Van Velvet Wade Walker Ward Wash West White Wood Worth Young Sharp Royal
Florence Georgia Virginia Carolina Dakota Jordan Indiana Austin Houston Dallas Phoenix Sydney Lincoln Washington
Victoria Adelaide China India Asia Delta Alpha Echo Ginger Olive Violet Cherry Apple Happy Golden Precious Dear Hi
Hello Thanks Regards Team Customer Support Service Order Please Thank Sorry Sir Madam Grand Hotel Hyatt Hilton
Marriott Pay Google Microsoft Amazon Tesla Visa Contact Call Email Ask Tell Send Update Check Visit Meet
Welcome Attention Note Dept Department Office Center Centre Group Ltd Inc Co University College School Good
Bright Early East Fine Free Gray Grey High Little Low Main New Ok Quick Short Small South Back Else Still Many
Yesterday Today Tomorrow Tonight Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March
September October November December Christmas Easter Bay
Street Road Avenue Park Lake Mall City Town Visa Master Express Premier Gold Platinum Prime Plus Pro Max Mini Air
Note Net Web Help Desk Care Health Hospital Clinic Bank Account Refund Return Delivery Pending Urgent Re Fw
"""))
_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Sir|Madam|Mme|Rev|Capt|Nurse|Officer|Judge)\.?"
# After a strong cue any capitalised words are a name; after a weak one a word must be in the lists.
_STRONG_CUE = (r"(?:[Mm]y name is|[Nn]ame\s*[:：]|[Rr]egards,|[Ss]incerely,|[Tt]hanks,|[Cc]heers,|[Bb]est,"
               r"|[Ss]igned|[Pp]atient|[Cc]ardholder|[Aa]ccount holder|[Bb]ooking for|[Tt]ransfer .{0,20}? to"
               r"|[Ss]poke (?:with|to)|[Aa]ttn:?|联系人|姓名[:：]?|客户|患者|持卡人)")
_WEAK_CUE = (r"(?:I am|I'm|[Tt]his is|[Dd]ear|[Hh]i|[Hh]ello|[Hh]ey|[Cc]ontact|[Cc]ustomer|[Aa]gent|[Cc]alled"
             r"|[Aa]sk(?:ed)? for|[Ff]rom|[Ww]ith|[Ff]or|[Bb]y|[Tt]o|[Aa]sk)")
_WORD = r"(?:[A-Z]['’])?[A-Z][a-z]+(?:[A-Z][a-z]+)?(?:-[A-Z]?[a-z]+)*"
_INITIAL = r"[A-Z]\."
_NAME_SEQ = rf"{_WORD}(?:\s+(?:{_INITIAL}\s+)?{_WORD}){{0,2}}"
_AFTER_TITLE = re.compile(rf"\b{_TITLE}\s+({_NAME_SEQ}|[A-Z]\.?\s*{_WORD})")
_AFTER_STRONG = re.compile(rf"{_STRONG_CUE}[\s,:]*({_NAME_SEQ})")
_AFTER_WEAK = re.compile(rf"\b{_WEAK_CUE}[\s,:]+({_NAME_SEQ})")
# A look-ahead so that pairs overlap: in "Call Sarah Johnson" both "Call Sarah" and "Sarah Johnson" are tried.
_PAIR = re.compile(rf"(?<![A-Za-z])(?=({_WORD})\s+(?:({_INITIAL})\s+)?({_WORD})(?![A-Za-z]))")
# Capitalised words that end a name sequence (a name is not followed by these in the same span).
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS  # spaCy is installed with Presidio; no model needed

    return frozenset(w.title() for w in STOP_WORDS)


_STOP = _stop_words()
_NOT_NAME = _EN_COMMON | _STOP


class EnglishPersonRecognizer(LocalRecognizer):  # type: ignore[misc]
    """English person names (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(supported_entities=[ENTITY], supported_language=LANG, name="taskfit_person_en")

    def load(self) -> None:
        _names("first_names"), _names("surnames")

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        if not re.search(r"[A-Z][a-z]", text):
            return []
        first, last = _names("first_names"), _names("surnames")
        spans: dict[tuple[int, int], float] = {}
        for m in _AFTER_TITLE.finditer(text):
            spans[self._trim(text, m.start(1), m.end(1), keep_first=True)] = 0.85
        for strong, pattern in ((True, _AFTER_STRONG), (False, _AFTER_WEAK)):
            for m in pattern.finditer(text):
                s, e = self._trim(text, m.start(1), m.end(1))
                words = text[s:e].split()
                if words and (strong or any(w in first or w in last for w in words)):
                    spans.setdefault((s, e), 0.75)
        for m in _PAIR.finditer(text):
            given, surname = m.group(1), m.group(3)
            if surname in _STOP:
                continue
            if given in first and given not in _NOT_NAME:
                spans.setdefault((m.start(1), m.end(3)), 0.8)  # Michael Brown: a sure first name + any surname
            elif surname in _NOT_NAME:
                continue
            elif given in first and surname in last:
                spans.setdefault((m.start(1), m.end(3)), 0.8 if surname in last else 0.65)  # Grace Kim too
            elif surname in last and given not in last and given not in _NOT_NAME:
                # Priya Murphy: unknown given name, known surname (two surnames in a row is more often a
                # firm: Goldman Sachs, Morgan Stanley)
                spans.setdefault((m.start(1), m.end(3)), 0.6)
        for m in re.finditer(rf"(?<![A-Za-z])({_WORD})(?![A-Za-z])", text):
            word = m.group(1)
            if word in first and word not in _NOT_NAME and not self._in_proper_noun(text, *m.span()) and (
                    not self._sentence_start(text, m.start()) or _CJK.match(text[m.end():m.end() + 1])):
                spans.setdefault(m.span(), 0.55)  # a lone first name inside a sentence
        return [RecognizerResult(ENTITY, s, e, score) for (s, e), score in spans.items() if e > s]

    @staticmethod
    def _trim(text: str, start: int, end: int, keep_first: bool = False) -> tuple[int, int]:
        """Cut a capitalised-word run at the first word that cannot be part of a name."""
        pos, last_end = start, start
        for i, m in enumerate(re.finditer(r"\S+", text[start:end])):
            word = m.group().rstrip(".")
            if word in _NOT_NAME and not (keep_first and i == 0) and len(word) > 1:
                break
            last_end = start + m.end()
            pos = last_end
        return start, max(pos, last_end)

    @staticmethod
    def _in_proper_noun(text: str, start: int, end: int) -> bool:
        """Is the word next to another capitalised word (London Irish, AC Milan, Aston Martin)? Then it is part
        of a longer proper noun; if that is a person's name, the pair rule has it."""
        before = re.search(r"([A-Za-z]+)\W{0,2}$", text[max(0, start - 30):start])
        after = re.match(r"\W{0,2}([A-Za-z]+)", text[end:end + 30])
        return any(m is not None and m.group(1)[0].isupper() and m.group(1) not in _STOP for m in (before, after))

    @staticmethod
    def _sentence_start(text: str, at: int) -> bool:
        before = text[:at].rstrip()
        return not before or before[-1] in ".!?。！？:：\n\"'“"
