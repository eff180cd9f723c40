"""Recognisers of structured personal data (EMAIL, PHONE, CN_ID, BANK_CARD, IP_ADDRESS) for Presidio.

Each recogniser is a Presidio ``LocalRecognizer``: a case-sensitive regular expression finds candidates,
then a validator decides (checksums, calendar dates, ``phonenumbers``, ``ipaddress``) and the words just
before the candidate veto look-alikes. Why own recognisers rather than Presidio's predefined ones: those
assume spaces around values (Chinese text has none), know no Chinese ID or mobile formats, and score by
context words found through a spaCy model, which taskfit cannot download.

Hard negatives and how they are rejected:

* order / tracking / invoice / product numbers: a candidate right after such a keyword (订单号, 运单,
  order no., tracking, SKU, ...) is not personal data unless a nearer keyword says it is (电话, phone);
  numbers glued to letters (``SF1234567890``, ``SKU13812345678``) never match.
* dates, amounts, times: the patterns need digit runs that dates and amounts do not have, and IPv4 octets
  must be ≤ 255 (``2024.10.15`` fails).
* 18-digit numbers with a wrong ISO 7064 MOD 11-2 check digit or an impossible birth date are not IDs;
  13–19-digit numbers failing Luhn, or not starting with a card network digit (2–6), are not cards.
* version strings: ``1.2.3.4`` *is* a valid IPv4 address, so context decides: right after ``v``,
  ``version``, ``版本``, ``build``, ``firmware``... it is a version; elsewhere it is masked (when in doubt,
  mask).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from typing import Any

from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer

from taskfit.trust.pii import LANG


def _keywords(words: str) -> re.Pattern[str]:
    """One regex for a space-separated keyword list; English words must stand alone (``id`` not in ``paid``)."""
    alts = [(r"\b" if w[0].isascii() and w[0].isalnum() else "") + re.escape(w)
            + (r"\b" if w[-1].isascii() and w[-1].isalnum() else "") for w in words.split()]
    return re.compile("|".join(alts), re.IGNORECASE | re.ASCII)


# Keywords that make a number an identifier of a thing (order, parcel, product), not of a person.
_THING = _keywords("订单 单号 运单 快递 物流 编号 工单 流水号 交易号 发票 批次 型号 货号 序列号 商品 预约号 "
                   "取件码 验证码 order orders tracking invoice sku ref reference ticket case item serial batch "
                   "model part no. # waybill "
                   "parcel shipment")
# Keywords that say the number belongs to a person (they win when nearer than a _THING keyword).
_PERSONAL = _keywords("电话 手机 联系 致电 拨打 短信 微信 身份证 证件 卡号 银行卡 信用卡 储蓄卡 账号 账户 phone "
                      "mobile tel cell call text whatsapp contact card account ip 地址")
_VERSION = _keywords("v ver version 版本 build release firmware 固件 系统 升级 update app sdk driver 驱动 chrome "
                     "android ios windows python")
_IP_WORDS = _keywords("ip 地址 address host server 服务器 登录 login")


def _last_keyword(before: str, words: re.Pattern[str]) -> int:
    """Position (in ``before``) just after the last keyword found, or -1."""
    end = -1
    for m in words.finditer(before):
        end = m.end()
    return end


def thing_context(text: str, start: int, window: int = 14) -> bool:
    """True when the words before ``start`` call the value an order / tracking / product number."""
    before = text[max(0, start - window):start]
    thing = _last_keyword(before, _THING)
    return thing >= 0 and thing > _last_keyword(before, _PERSONAL)


def luhn_ok(digits: str) -> bool:
    """Luhn (mod 10) checksum of a digit string, as payment card numbers carry."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
#: first two digits of mainland, Hong Kong / Macao / Taiwan resident IDs (province-level codes)
_ID_REGIONS = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
                         50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91})


def cn_id_ok(value: str, today: date | None = None) -> bool:
    """An 18-character Chinese resident ID: region code, a real birth date not in the future and the
    ISO 7064 MOD 11-2 check character (``X`` stands for 10)."""
    v = value.upper()
    if len(v) != 18 or not v[:17].isdigit() or not (v[17].isdigit() or v[17] == "X"):
        return False
    if int(v[:2]) not in _ID_REGIONS:
        return False
    try:
        born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return False
    if not date(1900, 1, 1) <= born <= (today or date.today()):
        return False
    total = sum(int(c) * w for c, w in zip(v[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == v[17]


class _Recognizer(LocalRecognizer):  # type: ignore[misc]
    """A case-sensitive regex finds candidates; :meth:`check` keeps, re-scores or drops each one."""

    ENTITY = ""
    PATTERN: re.Pattern[str]
    SCORE = 0.9

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.ENTITY], supported_language=LANG,
                         name=f"taskfit_{self.ENTITY.lower()}")

    def load(self) -> None:  # nothing to load: the pattern is compiled at import
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        out = []
        for m in self.PATTERN.finditer(text):
            start, end = m.span()
            score = self.check(text, start, end)
            if score:
                out.append(RecognizerResult(self.ENTITY, start, end, score))
        return out

    def check(self, text: str, start: int, end: int) -> float:
        """Score of the candidate ``text[start:end]``; 0 drops it."""
        return self.SCORE


class EmailRecognizer(_Recognizer):
    """ASCII e-mail addresses; the character classes stop at Chinese text, so ``邮箱a@b.com谢谢`` works."""

    ENTITY = "EMAIL"
    PATTERN = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                         r"\.[A-Za-z]{2,24}(?![A-Za-z0-9-])", re.ASCII)


# Chinese mobile: 1[3-9] + 9 digits, optionally +86 / 0086 / (+86), grouped 3-4-4 by spaces or dashes.
_CN_MOBILE = r"(?:(?:\(?\+86\)?|0086)[\s-]?)?1[3-9]\d(?:\d{8}|[\s-]\d{4}[\s-]\d{4}|\d{4}[\s-]\d{4}|[\s-]\d{8})"
# International (+country code) and national forms with area codes; validated with phonenumbers.
_INTL = r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"
_NATIONAL = r"\(?0?\d{2,3}\)?[\s.-]\d{3,4}[\s.-]?\d{4}|0\d{2,3}-\d{7,8}"


class PhoneRecognizer(_Recognizer):
    """Chinese mobiles (all common forms) and international / national numbers that ``phonenumbers``
    calls valid (+CC anywhere; national forms as CN, US or GB numbers)."""

    ENTITY = "PHONE"
    PATTERN = re.compile(rf"(?<![\w+.-])(?:{_CN_MOBILE}|{_INTL}|{_NATIONAL})(?![\w-]|\.\d)", re.ASCII)
    _REGIONS = ("CN", "US", "GB")

    def check(self, text: str, start: int, end: int) -> float:
        raw = text[start:end]
        digits = re.sub(r"\D", "", raw)
        if thing_context(text, start):
            return 0.0
        mobile = digits[-11:]
        if len(mobile) == 11 and mobile[0] == "1" and mobile[1] in "3456789" and (
                len(digits) == 11 or digits[:-11] in ("86", "0086")):
            return 0.9
        return 0.85 if self._valid(raw) else 0.0

    def _valid(self, raw: str) -> bool:
        import phonenumbers

        explicit = raw.lstrip("(").startswith("+")
        for region in (None,) if explicit else self._REGIONS:
            try:
                num = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException:
                continue
            # "+CC ..." says it is a phone number: a possible length for that country is enough (new number
            # ranges would fail is_valid); a number without a country code must be a valid CN/US/GB number.
            if phonenumbers.is_possible_number(num) if explicit else phonenumbers.is_valid_number(num):
                return True
        return False


class CnIdRecognizer(_Recognizer):
    """18-character Chinese resident IDs (also written 6-8-4 with spaces) that pass :func:`cn_id_ok`."""

    ENTITY = "CN_ID"
    PATTERN = re.compile(r"(?<![\w.-])[1-9]\d{5}\s?(?:18|19|20)\d{6}\s?\d{3}[\dXx](?![\w-])", re.ASCII)
    SCORE = 0.95

    def check(self, text: str, start: int, end: int) -> float:
        return self.SCORE if cn_id_ok(text[start:end].replace(" ", "")) else 0.0


class BankCardRecognizer(_Recognizer):
    """13–19-digit card numbers (plain, or in groups of 4 split by spaces or dashes) passing Luhn and
    starting with a card-network digit 2–6; not when the words before call it an order number."""

    ENTITY = "BANK_CARD"
    PATTERN = re.compile(r"(?<![\w.-])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{5})"
                         r"(?![\w-]|[.,]\d)", re.ASCII)

    def check(self, text: str, start: int, end: int) -> float:
        digits = re.sub(r"\D", "", text[start:end])
        if not 13 <= len(digits) <= 19 or digits[0] not in "23456" or not luhn_ok(digits):
            return 0.0
        return 0.0 if thing_context(text, start) else 0.9


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"


class IpRecognizer(_Recognizer):
    """IPv4 (dotted quads, octets ≤ 255; not a version string by context) and IPv6 (``ipaddress``-valid,
    at least two colons, not a time of day)."""

    ENTITY = "IP_ADDRESS"
    PATTERN = re.compile(rf"(?<![\w.:])(?:{_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)"
                         r"|(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}(?:\.\d{1,3}){0,3}(?![\w:]))", re.ASCII)

    def check(self, text: str, start: int, end: int) -> float:
        raw = text[start:end]
        if ":" in raw:
            try:
                ipaddress.IPv6Address(raw)
            except ValueError:
                return 0.0
            return 0.9 if not re.fullmatch(r"\d{1,2}(?::\d{2}){1,2}", raw.replace("::", ":")) else 0.0
        before = text[max(0, start - 12):start].lower().rstrip(" :：=")
        version = _last_keyword(before, _VERSION)
        if version >= 0 and version >= len(before) - 1 and version > _last_keyword(before, _IP_WORDS):
            return 0.0  # "v1.2.3.4", "version 10.0.0.1", "版本1.2.0.3": a version, not an address
        return 0.9


class NoContextEnhancer(ContextAwareEnhancer):  # type: ignore[misc]
    """Presidio's lemma context enhancer needs tokens from an NLP model; taskfit's recognisers read their
    own context words from the raw text, so that pass is skipped (it cost ~10% of the time for nothing)."""

    def __init__(self) -> None:
        super().__init__(context_similarity_factor=0, min_score_with_context_similarity=0, context_prefix_count=0,
                         context_suffix_count=0)

    def enhance_using_context(self, text: str, raw_results: list[RecognizerResult], nlp_artifacts: Any,
                              recognizers: list[Any], context: list[str] | None = None) -> list[RecognizerResult]:
        return raw_results


def structured_recognizers() -> list[_Recognizer]:
    """One instance of every structured recogniser."""
    return [EmailRecognizer(), PhoneRecognizer(), CnIdRecognizer(), BankCardRecognizer(), IpRecognizer()]
