"""Generate the labelled PII test set ``benchmarks/data/pii_labelled.jsonl`` (synthetic, reproducible).

Every line is a realistic support / bank / hospital / retail message in Chinese, English or both, built
from templates whose slots are filled with generated values, plus hand-written lines (``data/pii_handwritten.txt``
and the held-out ``data/pii_holdout.txt``) whose numbers are generated the same way. The span of each
personal value is recorded as it is inserted:
``{"text", "entities": [{"start", "end", "type"}], "lang", "source"}``. Numbers carry valid
checksums (ISO 7064 MOD 11-2 for resident IDs, Luhn for cards) unless the slot is a hard negative, which is
built to fail them (bad ID check digit, 16 digits failing Luhn) or to look like PII without being it (order
and tracking numbers, dates, amounts, product codes, version strings). All names, numbers and addresses
are made up; any match with a real person is chance.

    python benchmarks/pii_data_gen.py            # rewrites benchmarks/data/pii_labelled.jsonl (seed 7)
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

OUT = Path(__file__).parent / "data" / "pii_labelled.jsonl"

ZH_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁沈姚卢"
ZH_COMPOUND = ["欧阳", "司马", "诸葛", "上官"]
ZH_GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
            "超",
            "秀兰", "霞", "平", "刚", "桂英", "建华", "志强", "晓东", "海燕", "丹", "玉兰", "文博", "子涵", "浩然",
            "雨桐", "思远", "嘉怡", "俊杰", "婷婷", "建国", "红梅", "立新", "梓萱", "一鸣", "佳琪", "宇轩"]
EN_FIRST = ["James", "Mary", "Robert", "Patricia", "Michael", "Jennifer", "David", "Linda", "Sarah", "Thomas", "Emily",
            "Daniel", "Jessica", "Kevin", "Laura", "Brian", "Megan", "Oliver", "Sophie", "Priya", "Carlos", "Aisha",
            "Mei", "Hannah", "Lucas", "Chloe", "Ethan", "Olivia", "Siobhan", "Raj", "Fatima", "Yuki", "Andrew",
            "Rachel", "Natalie", "Gregory", "Oluwaseun", "Ingrid", "Mateo", "Zoe"]
EN_LAST = ["Smith", "Johnson", "Williams", "Garcia", "Miller", "Davis", "Martinez", "Anderson", "Taylor", "Thompson",
           "Patel", "Nguyen", "Chen", "Wang", "O'Connor", "Murphy", "Kowalski", "Hernandez", "Adeyemi", "Schmidt",
           "Rossi", "Tanaka", "Okafor", "Fitzgerald", "Lindqvist", "MacLeod", "Sharma", "Robinson", "Clarke", "Baker"]
TITLES_ZH = ["先生", "女士", "小姐", "老师", "医生", "经理"]
TITLES_EN = ["Mr.", "Mrs.", "Ms.", "Dr.", "Mr", "Ms"]
DOMAINS = ["qq.com", "163.com", "gmail.com", "outlook.com", "example.com", "company.cn", "hospital.org.cn",
           "mail.example.co.uk", "yahoo.com", "126.com"]
REGIONS = ["110101", "310104", "440305", "320102", "510107", "330106", "420111", "370202", "500103", "610113"]
ID_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


class Gen:
    """Slot fillers: each returns (value, entity type or None for a hard negative)."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    # ---- people ----
    def zh_name(self) -> str:
        sur = self.r.choice(ZH_COMPOUND) if self.r.random() < 0.06 else self.r.choice(ZH_SURNAMES)
        return sur + self.r.choice(ZH_GIVEN)

    def en_name(self) -> str:
        return f"{self.r.choice(EN_FIRST)} {self.r.choice(EN_LAST)}"

    # ---- numbers ----
    def digits(self, n: int) -> str:
        return "".join(self.r.choice("0123456789") for _ in range(n))

    def mobile(self) -> str:
        num = "1" + self.r.choice("3456789") + self.digits(9)
        form = self.r.randrange(6)
        if form == 1:
            return "+86" + num
        if form == 2:
            return f"+86 {num[:3]} {num[3:7]} {num[7:]}"
        if form == 3:
            return f"{num[:3]}-{num[3:7]}-{num[7:]}"
        if form == 4:
            return f"{num[:3]} {num[3:7]} {num[7:]}"
        return num

    def intl_phone(self) -> str:
        return self.r.choice([
            lambda: f"({self.r.choice(['212', '415', '646', '312', '617'])}) {self.r.randint(201, 989)}-"
                    f"{self.digits(4)}",
            lambda: f"+1 {self.r.choice(['202', '305', '718'])}-{self.r.randint(201, 989)}-{self.digits(4)}",
            lambda: f"+44 20 7946 {self.digits(4)}",
            lambda: f"+852 {self.r.choice('569')}{self.digits(3)} {self.digits(4)}",
            lambda: f"+65 {self.r.choice('89')}{self.digits(3)} {self.digits(4)}",
            lambda: f"010-{self.r.choice('5678')}{self.digits(7)}",
        ])()

    def _id17(self) -> str:
        year = self.r.randint(1950, 2005)
        return f"{self.r.choice(REGIONS)}{year}{self.r.randint(1, 12):02d}{self.r.randint(1, 28):02d}{self.digits(3)}"

    @staticmethod
    def id_check(body: str) -> str:
        return "10X98765432"[sum(int(c) * w for c, w in zip(body, ID_W, strict=True)) % 11]

    def cn_id(self) -> str:
        body = self._id17()
        return body + self.id_check(body)

    def bad_id(self) -> str:
        body = self._id17()
        good = self.id_check(body)
        return body + self.r.choice([c for c in "0123456789" if c != good])

    @staticmethod
    def luhn_digit(body: str) -> str:
        total = 0
        for i, ch in enumerate(reversed(body)):
            d = int(ch)
            if i % 2 == 0:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        return str((10 - total % 10) % 10)

    def card(self) -> str:
        prefix, length = self.r.choice([("622202", 19), ("621700", 19), ("622848", 19), ("4", 16), ("5", 16),
                                        ("6225", 16), ("37", 15), ("4392", 16)])
        if prefix == "5":
            prefix += self.r.choice("12345")
        body = prefix + self.digits(length - len(prefix) - 1)
        num = body + self.luhn_digit(body)
        form = self.r.randrange(3)
        if form == 0 or length == 15:
            return num
        sep = " " if form == 1 else "-"
        return sep.join(num[i:i + 4] for i in range(0, len(num), 4))

    def bad_card(self) -> str:
        body = self.r.choice("456") + self.digits(14)
        good = self.luhn_digit(body)
        return body + self.r.choice([c for c in "0123456789" if c != good])

    def email(self) -> str:
        local = self.r.choice(["zhang.san", "li_ming88", "wangfang", "j.smith", "sarah.johnson", "kevin2024",
                               "chen.mei", "service.user", "liu-yang", "a.garcia", "mike.t", "hr.dept"])
        return f"{local}{self.r.choice(['', str(self.r.randint(1, 99))])}@{self.r.choice(DOMAINS)}"

    def ipv4(self) -> str:
        return self.r.choice([f"192.168.{self.r.randint(0, 255)}.{self.r.randint(1, 254)}",
                              f"10.{self.r.randint(0, 255)}.{self.r.randint(0, 255)}.{self.r.randint(1, 254)}",
                              f"{self.r.randint(11, 223)}.{self.r.randint(0, 255)}.{self.r.randint(0, 255)}."
                              f"{self.r.randint(1, 254)}"])

    def ipv6(self) -> str:
        return self.r.choice([f"2001:db8:{self.r.randint(0, 65535):x}::{self.r.randint(1, 65535):x}",
                              f"fe80::{self.r.randint(0, 65535):x}:{self.r.randint(0, 65535):x}:"
                              f"{self.r.randint(0, 65535):x}:{self.r.randint(0, 65535):x}",
                              "2409:8a00:" + ":".join(f"{self.r.randint(0, 65535):x}" for _ in range(6))])

    # ---- hard negatives ----
    def order_no(self) -> str:
        return self.r.choice([lambda: "2024" + self.digits(12), lambda: "1" + self.r.choice("3456789") + self.digits(9),
                              lambda: "4" + self.digits(15), lambda: "DD" + self.digits(14)])()

    def tracking(self) -> str:
        return self.r.choice([lambda: "SF" + self.digits(13), lambda: "YT" + self.digits(15),
                              lambda: "75" + self.digits(12), lambda: "1Z" + self.digits(16)])()

    def date(self) -> str:
        y, m, d = self.r.randint(2019, 2026), self.r.randint(1, 12), self.r.randint(1, 28)
        return self.r.choice([f"{y}-{m:02d}-{d:02d}", f"{y}年{m}月{d}日", f"{y}.{m:02d}.{d:02d}",
                              f"{d:02d}/{m:02d}/{y}"])

    def amount(self) -> str:
        v = self.r.randint(1, 9_999_999) / 100
        return self.r.choice([f"¥{v:,.2f}", f"{v:.2f}元", f"${v:,.2f}", f"RMB {v:,.2f}"])

    def product(self) -> str:
        return self.r.choice([f"SKU-{self.digits(8)}", f"型号AX{self.digits(4)}", f"P/N {self.digits(10)}",
                              f"iPhone {self.r.randint(11, 16)} Pro Max", f"MX{self.digits(6)}-B"])

    def version(self) -> str:
        v = ".".join(str(self.r.randint(0, 20)) for _ in range(4))
        return self.r.choice([f"v{v}", f"version {v}", f"版本 {v}", f"固件{v}", f"build {v}"])

    def time(self) -> str:
        return f"{self.r.randint(0, 23):02d}:{self.r.randint(0, 59):02d}:{self.r.randint(0, 59):02d}"


# {SLOT} is personal data (type in the dict below); {~slot} is a hard negative.
TYPES = {"NAME_ZH": "PERSON", "NAME_EN": "PERSON", "SUR_ZH": "PERSON", "SUR_EN": "PERSON", "MOBILE": "PHONE",
         "PHONE": "PHONE", "ID": "CN_ID", "CARD": "BANK_CARD", "EMAIL": "EMAIL", "IP4": "IP_ADDRESS",
         "IP6": "IP_ADDRESS"}

TEMPLATES_ZH = [
    "您好，我是{NAME_ZH}，手机号{MOBILE}，订单号{~order}一直没有发货，麻烦查一下。",
    "客户{NAME_ZH}来电反映信用卡{CARD}在{~date}被盗刷{~amount}，已冻结。",
    "患者{NAME_ZH}，女，{~age}岁，身份证号{ID}，主诉头痛三天，{~date}复诊。",
    "请把发票寄到我的邮箱{EMAIL}谢谢，订单{~order}。",
    "{SUR_ZH}先生您好，您的快递{~tracking}已由顺丰揽收，预计{~date}送达。",
    "联系人：{NAME_ZH}，电话：{MOBILE}，地址：北京市朝阳区建国路88号。",
    "转账到{NAME_ZH}的银行卡{CARD}，金额{~amount}，请核对。",
    "系统检测到您的账号在{~date} {~time}从IP {IP4}异地登录，如非本人操作请修改密码。",
    "我叫{NAME_ZH}，身份证{ID}，想办理挂失。",
    "{NAME_ZH}医生今天门诊，{NAME_ZH}护士长负责病房，患者家属请拨打{MOBILE}。",
    "商品{~product}已降价，现价{~amount}，活动截止{~date}。",
    "请升级到{~version}后重试，旧版本在{~date}停止维护。",
    "您的工单{~order}已受理，客服{NAME_ZH}会在24小时内联系您。",
    "持卡人{NAME_ZH}，卡号{CARD}，有效期至{~date}。",
    "退款{~amount}已原路退回，交易流水号{~order}。",
    "麻烦{SUR_ZH}女士再核对一下收货手机{MOBILE}和邮箱{EMAIL}。",
    "这个身份证号{~badid}校验不通过，请重新输入。",
    "银行卡号{~badcard}无效，请检查后重新填写。",
    "服务器{IP4}和{IP6}的日志里有大量失败请求。",
    "快递单号{~tracking}，物流显示{~date}已签收，签收人{NAME_ZH}。",
    "今天的会议改到{~time}开始，请大家准时参加。",
    "您好，{NAME_ZH}的预约已确认，预约号{~order}，请携带身份证{ID}原件。",
    "收件人：{NAME_ZH} {MOBILE} 上海市浦东新区世纪大道100号",
    "订单{~order}的商品{~product}缺货，预计{~date}补货，给您带来不便深表歉意。",
    "客户反馈App在{~version}上闪退，设备型号{~product}。",
    "{NAME_ZH}和{NAME_ZH}的体检报告已出，请登录公众号查看。",
    "请不要在聊天中发送完整卡号，例如{CARD}这样的信息会被自动屏蔽。",
    "我的电话打不通，换个号码吧：{MOBILE}，或者发邮件到{EMAIL}。",
    "本月账单金额{~amount}，最后还款日{~date}，如有疑问请致电95588。",
    "王府井店{~date}营业时间调整为10:00-22:00。",
]

TEMPLATES_EN = [
    "Hi, my name is {NAME_EN} and my card {CARD} was charged twice on {~date}.",
    "Dear {SUR_EN}, your order {~order} has shipped. Tracking number {~tracking}.",
    "Please call me back at {PHONE}, I am available after {~time}.",
    "Patient {NAME_EN}, DOB {~date}, was admitted for observation. Contact: {EMAIL}.",
    "Login from {IP4} at {~time} was blocked by the firewall.",
    "Refund of {~amount} for order {~order} has been processed.",
    "Thanks, {NAME_EN}",
    "I spoke with {NAME_EN} yesterday and she said the invoice {~order} is paid.",
    "The new firmware {~version} fixes the Bluetooth issue on {~product}.",
    "Can you update my email to {EMAIL} and my phone to {PHONE}?",
    "Account holder: {NAME_EN}; card ending {~last4}; amount {~amount}.",
    "Hello {NAME_EN}, your appointment with Dr. {LAST_EN} is confirmed for {~date}.",
    "The card number {~badcard} was rejected as invalid.",
    "Our VPN gateway {IP6} is down since {~time}.",
    "Product {~product} is out of stock until {~date}.",
    "Regards, {NAME_EN}, Customer Support",
    "{NAME_EN} called about a missing parcel {~tracking}; call back on {PHONE}.",
    "Please send the contract to {EMAIL} before {~date}.",
    "Version {~version} was released on {~date}.",
    "Meeting with {SUR_EN} moved to Monday at {~time}.",
    "Transfer {~amount} to {NAME_EN}, account card {CARD}.",
    "Bank of China and Apple Pay support cards issued before {~date}.",
    "The Grand Hyatt Shanghai booking for {NAME_EN} is confirmed, ref {~order}.",
    "Please ask {FIRST_EN} to reset the password for the server at {IP4}.",
    "Customer says the May promotion price {~amount} was not applied to order {~order}.",
]

TEMPLATES_MIX = [
    "客户{NAME_EN}的邮箱是{EMAIL}，电话{PHONE}。",
    "Ticket from {NAME_ZH}: 手机{MOBILE}, order {~order} not delivered.",
    "VIP客户{NAME_ZH}（{EMAIL}）投诉App {~version}无法登录，IP {IP4}。",
    "Please verify 身份证 {ID} for {NAME_ZH} before {~date}.",
]


def fill(template: str, g: Gen) -> dict[str, object]:
    text, ents = "", []
    for part in re.split(r"(\{~?[A-Za-z0-9_]+\})", template):
        m = re.fullmatch(r"\{(~?)([A-Za-z0-9_]+)\}", part)
        if not m:
            text += part
            continue
        neg, slot = m.groups()
        if neg:
            value = {"order": g.order_no, "tracking": g.tracking, "date": g.date, "amount": g.amount,
                     "product": g.product, "version": g.version, "time": g.time, "badid": g.bad_id,
                     "badcard": g.bad_card, "age": lambda: str(g.r.randint(18, 90)),
                     "last4": lambda: g.digits(4)}[slot]()
            text += value
            continue
        typ = TYPES.get(slot, "PERSON")
        if slot == "SUR_ZH":
            value = g.r.choice(ZH_SURNAMES)
        elif slot == "SUR_EN":
            title = g.r.choice(TITLES_EN) + " "
            text += title
            value = g.r.choice(EN_LAST)
        elif slot == "LAST_EN":
            value = g.r.choice(EN_LAST)
        elif slot == "FIRST_EN":
            value = g.r.choice(EN_FIRST)
        else:
            value = {"NAME_ZH": g.zh_name, "NAME_EN": g.en_name, "MOBILE": g.mobile, "PHONE": g.intl_phone,
                     "ID": g.cn_id, "CARD": g.card, "EMAIL": g.email, "IP4": g.ipv4, "IP6": g.ipv6}[slot]()
        ents.append({"start": len(text), "end": len(text) + len(value), "type": typ,
                     **({"lang": "zh" if slot.endswith("ZH") else "en"} if typ == "PERSON" else {})})
        text += value
    return {"text": text, "entities": ents}


HANDWRITTEN = {"handwritten": Path(__file__).parent / "data" / "pii_handwritten.txt",
               "holdout": Path(__file__).parent / "data" / "pii_holdout.txt"}


def handwritten(g: Gen, source: str) -> list[dict[str, object]]:
    """The hand-written lines of ``data/pii_<source>.txt`` with their values filled and spans found."""
    fillers = {"@mobile": g.mobile, "@intl": g.intl_phone, "@id": g.cn_id, "@card": g.card, "@email": g.email,
               "@ip4": g.ipv4, "@ip6": g.ipv6, "{@badid}": g.bad_id, "{@badcard}": g.bad_card,
               "{@order}": g.order_no, "{@tracking}": g.tracking}
    rows = []
    for line in HANDWRITTEN[source].read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        lang, body = line.split("|", 1)
        text, ents = "", []
        for part in re.split(r"(\[\[[A-Z_]+\|[^\]]+\]\]|\{@[a-z]+\})", body):
            m = re.fullmatch(r"\[\[([A-Z_]+)\|([^\]]+)\]\]", part)
            if m:
                value = fillers[m.group(2)]() if m.group(2).startswith("@") else m.group(2)
                ents.append({"start": len(text), "end": len(text) + len(value), "type": m.group(1)})
                text += value
            else:
                text += fillers[part]() if part in fillers else part
        rows.append({"text": text, "entities": ents, "lang": lang, "source": source})
    return rows


def main(n: int = 300, seed: int = 7) -> None:
    rng = random.Random(seed)
    g = Gen(rng)
    rows = handwritten(g, "handwritten") + handwritten(g, "holdout")
    pools = [("zh", TEMPLATES_ZH), ("en", TEMPLATES_EN), ("mixed", TEMPLATES_MIX)]
    for i in range(n):
        lang, pool = pools[0] if i % 20 < 9 else pools[1] if i % 20 < 18 else pools[2]
        row = fill(rng.choice(pool), g)
        row["lang"] = lang
        row["source"] = "template"
        rows.append(row)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} lines to {OUT}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
