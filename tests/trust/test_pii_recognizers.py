"""PII recognisers: checksums, Chinese mobile forms, e-mails inside Chinese text, names, hard negatives,
and masking that leaves everything but the personal data identical."""

from __future__ import annotations

from datetime import date

import pytest

from taskfit.trust.pii import Masker, analyze, placeholder
from taskfit.trust.pii_recognizers import cn_id_ok, luhn_ok


def _id(body17: str) -> str:
    """A resident ID with the right MOD 11-2 check character (computed here from the standard's weights)."""
    weights = [pow(2, 17 - i, 11) for i in range(17)]
    return body17 + "10X98765432"[sum(int(c) * w for c, w in zip(body17, weights, strict=True)) % 11]


def _card(body: str) -> str:
    """``body`` plus its Luhn check digit, found by trying all ten."""
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


def _found(text: str) -> list[tuple[str, str]]:
    return [(r.entity_type, text[r.start:r.end]) for r in analyze(text)]


@pytest.fixture(scope="module")
def masker() -> Masker:
    return Masker()


def test_cn_id_checksum_and_birth_date() -> None:
    good = _id("11010519491231002")
    assert good == "11010519491231002X"  # the worked example of GB 11643-1999
    assert cn_id_ok(good) and cn_id_ok(good.lower())
    assert not cn_id_ok(good[:-1] + "1")  # wrong check character
    assert not cn_id_ok(_id("11010519491331002"))  # month 13, checksum right
    assert not cn_id_ok(_id("11010520990101002"), today=date(2026, 1, 1))  # born in the future
    assert not cn_id_ok(_id("99010519491231002"))  # no such region
    assert _found(f"身份证号{good}请核对") == [("CN_ID", good)]
    assert _found(f"身份证号{good[:-1]}1请核对") == []


def test_luhn_cards_with_separators_and_failing_numbers() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    card = _card("622202123456789012")  # 19-digit UnionPay
    spaced = " ".join(card[i:i + 4] for i in range(0, 19, 4))
    dashed = "-".join(card[i:i + 4] for i in range(0, 19, 4))
    for form in (card, spaced, dashed):
        assert _found(f"卡号{form}，谢谢") == [("BANK_CARD", form)]
    bad = "4111111111111112"  # 16 digits failing Luhn
    assert _found(f"card {bad} declined") == []
    assert _found("order 4111111111111111 shipped") == []  # Luhn-valid, but an order number by context


@pytest.mark.parametrize("form", ["13812345678", "+8613812345678", "+86 138 1234 5678", "138-1234-5678",
                                  "138 1234 5678", "(+86) 13812345678", "008613812345678"])
def test_zh_mobile_forms(form: str) -> None:
    assert _found(f"我的手机{form}，有事打我") == [("PHONE", form)]


def test_international_numbers_and_not_order_numbers() -> None:
    assert _found("call (212) 555-0143 today") == [("PHONE", "(212) 555-0143")]
    assert _found("UK office +44 20 7946 0958.") == [("PHONE", "+44 20 7946 0958")]
    assert _found("座机010-62345678") == [("PHONE", "010-62345678")]
    assert _found("订单号13812345678已发货") == []
    assert _found("SKU13812345678 in stock") == []


def test_email_inside_chinese_text_without_spaces() -> None:
    assert _found("邮箱zhang.san@example.com谢谢") == [("EMAIL", "zhang.san@example.com")]
    assert _found("发到li_ming88@163.com。") == [("EMAIL", "li_ming88@163.com")]


def test_ip_addresses_and_version_strings() -> None:
    assert _found("IP地址192.168.1.100登录失败") == [("IP_ADDRESS", "192.168.1.100")]
    assert _found("sign-in from 2001:db8::8a2e:370:7334 blocked") == [("IP_ADDRESS", "2001:db8::8a2e:370:7334")]
    # An IPv4-looking version string: context decides (a version right after v / version / 版本 / build).
    for text in ("upgrade to v1.2.3.4", "version 10.0.0.1 released", "请升级到版本 2.1.0.3", "build 4.10.2.7"):
        assert _found(text) == [], text
    assert _found("meeting at 10:30:00, MAC 00:1A:2B:3C:4D:5E") == []


def test_hard_negatives_are_left_alone() -> None:
    for text in ("订单2024101512345678已发货，金额¥13,800.00，2024-10-15送达",
                 "快递单号SF1234567890123，型号AX2041", "Invoice INV-2024-00871 total: £3,400.00 on 12/03/2024",
                 "您尾号6688的储蓄卡于今日14:32支出人民币1,200.00元", "Apple and Samsung phones are supported"):
        assert _found(text) == [], text


def test_person_names_zh_and_en() -> None:
    assert _found("您好，我是张伟，请帮我查订单") == [("PERSON", "张伟")]
    assert ("PERSON", "王") in _found("王先生您好，您的包裹到了")
    assert _found("欧阳娜娜明天复诊") == [("PERSON", "欧阳娜娜")]
    assert _found("Hi, my name is Sarah Johnson.") == [("PERSON", "Sarah Johnson")]
    assert _found("Dear Mr. O'Brien, thanks.") == [("PERSON", "O'Brien")]
    assert _found("Will you ship the May orders?") == []  # first names that are everyday words


def test_masking_changes_only_the_personal_data(masker: Masker) -> None:
    text = "客户张伟（zhang.wei@example.com，13812345678）订单2024101512345678退款¥99.00。"
    masked, types = masker.mask(text)
    assert masked == "客户<PERSON>（<EMAIL>，<PHONE>）订单2024101512345678退款¥99.00。"
    assert sorted(types) == ["EMAIL", "PERSON", "PHONE"]
    clean = "Order 2024101512345678 shipped on 2024-10-15 via SF1234567890123."
    assert masker.mask(clean) == (clean, ())
    assert placeholder("CN_ID") == "<CN_ID>"


def test_token_masking_keeps_the_token_count(masker: Masker) -> None:
    chars = list("我是张伟电话13812345678")  # character-level (Chinese NER data)
    out, types = masker.mask_tokens(chars)
    assert len(out) == len(chars) and types == ("PERSON", "PHONE")
    assert out[:2] == ["我", "是"] and out[2:4] == ["<PERSON>"] * 2 and set(out[6:]) == {"<PHONE>"}
    words = ["Call", "Sarah", "Johnson", "on", "+44", "20", "7946", "0958", "today"]
    out, types = masker.mask_tokens(words)
    assert out == ["Call", "<PERSON>", "<PERSON>", "on", "<PHONE>", "<PHONE>", "<PHONE>", "<PHONE>", "today"]
