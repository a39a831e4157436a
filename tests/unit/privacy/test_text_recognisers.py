"""Recognisers of identifiers in Chinese clinical text: valid and invalid examples for each, the registry,
overlap resolution and the slot for a trained model."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medspace.core import make_resident_id, resident_id_check_char
from medspace.privacy import (
    RECOGNISERS,
    ModelRecogniser,
    PhiKind,
    PhiSpan,
    Recogniser,
    default_recognisers,
)

# The rule recognisers are not in the stage's API (RECOGNISERS reaches them); their unit tests import them
# from the private module.
from medspace.privacy._text import (
    AddressRecogniser,
    DateRecogniser,
    HospitalNumberRecogniser,
    InstitutionRecogniser,
    PersonNameRecogniser,
    PhoneRecogniser,
    ResidentIdRecogniser,
    RuleRecogniser,
    resolve_overlaps,
)
from medspace.privacy._text_lexicon import cjk_class_without, word_pattern


def found(recogniser: Recogniser, text: str) -> list[str]:
    return [text[s.start : s.end] for s in resolve_overlaps(recogniser.find(text))]


# -- resident IDs (GB 11643-1999) -------------------------------------------------------------------

VALID_ID = "11010519491231002X"  # the example in the standard's commentaries


def with_check(first17: str) -> str:
    """An 18-character ID whose check character is right, whatever else is wrong with it."""
    return first17 + resident_id_check_char(first17)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"身份证号{VALID_ID}。", VALID_ID),
        (f"ID {VALID_ID[:-1]}x，", VALID_ID[:-1] + "x"),  # a lower-case check character, as typed
        ("证件：110105 19491231 002X", "110105 19491231 002X"),  # grouped 6-8-4
        ("号码44030520000229998X来诊", "44030520000229998X"),  # leap day, CJK on both sides
        ("旧身份证110105491231002", "110105491231002"),  # GB 11643-1989: 15 digits, 19YYMMDD
    ],
)
def test_resident_ids_are_found(text: str, expected: str) -> None:
    assert found(ResidentIdRecogniser(), text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "编号110105194912310021",  # checksum failure (the check character should be X)
        f"编号{with_check('11010519491331002')}",  # month 13
        f"编号{with_check('11010519490230002')}",  # 30 February
        f"编号{with_check('99999919491231002')}",  # region code 999999 does not exist
        f"编号{with_check('11010019491231002')}",  # a city code (ends in 00) is never an address code
        f"编号{with_check('11010520991231002')}",  # born in 2099, in the future
        f"编号2{VALID_ID}",  # 19 characters: part of a longer number
        "编号110105491331002",  # 15 digits with month 13
        "编号990105491231002",  # 15 digits with an unknown region
    ],
)
def test_invalid_resident_ids_are_not_found(text: str) -> None:
    assert found(ResidentIdRecogniser(), text) == []


def test_an_id_that_fails_its_checksum_is_still_removed_after_an_id_word() -> None:
    """A mistyped ID after 身份证号 identifies the patient as well as a valid one: found, scored lower."""
    spans = ResidentIdRecogniser().find("身份证号：110105194912310021，")
    assert [(s.start, s.end, s.score) for s in spans] == [(5, 23, 0.6)]


@given(
    region=st.sampled_from(["110105", "310104", "440305", "510107", "650102"]),
    days=st.integers(0, 36_000),
    sequence=st.integers(0, 999),
)
def test_every_generated_id_is_found(region: str, days: int, sequence: int) -> None:
    from datetime import date, timedelta

    value = make_resident_id(region, date(1920, 1, 1) + timedelta(days=days), sequence)
    assert found(ResidentIdRecogniser(), f"患者身份证{value}，") == [value]


# -- phones -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("联系电话13812345678。", "13812345678"),
        ("手机：138-1234-5678", "138-1234-5678"),
        ("手机 138 1234 5678，", "138 1234 5678"),
        ("电话+86 13812345678", "+86 13812345678"),
        ("电话+86-138-1234-5678", "+86-138-1234-5678"),
        ("电话（+86）19912345678", "（+86）19912345678"),
        ("科室电话021-64041990转", "021-64041990"),
        ("座机(0571)87236114", "(0571)87236114"),
        ("家庭电话（010）62345678", "（010）62345678"),
        ("咨询请拨打0571-87236114-8001", "0571-87236114-8001"),  # with an extension
        ("电话：02164041990", "02164041990"),  # no separator: needs the word before it
        ("电话 64041990", "64041990"),
    ],
)
def test_phones_are_found(text: str, expected: str) -> None:
    assert found(PhoneRecogniser(), text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "编号12812345678",  # 12X is not a mobile prefix
        "编号138123456789",  # 12 digits
        "住院号64041990",  # 8 digits with no phone word
        "检验值02164041990",  # a landline shape without separator or phone word
        "血压138/86mmHg",
        "白细胞计数11.3×10^9/L",
    ],
)
def test_other_numbers_are_not_phones(text: str) -> None:
    assert found(PhoneRecogniser(), text) == []


# -- hospital numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("住院号07654321，", "07654321"),
        ("住院号：07654321-2（第2次住院）", "07654321-2"),
        ("门诊号 MZ20240315", "MZ20240315"),
        ("病案号/住院号：1234567", "1234567"),
        ("ID号：0001234567", "0001234567"),
        ("病人id:E02718281", "E02718281"),
        ("检查号：CT2024000123", "CT2024000123"),
        ("病历号为ZY00012345。", "ZY00012345"),
    ],
)
def test_hospital_numbers_are_found_after_their_word(text: str, expected: str) -> None:
    assert found(HospitalNumberRecogniser(), text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "编号07654321",  # no context word
        "住院号：12345",  # 5 characters: too short
        "住院号：ABCDEFGH",  # no digits
        "床号：12",
        "门诊号码待补",
    ],
)
def test_numbers_without_context_or_shape_are_not_hospital_numbers(text: str) -> None:
    assert found(HospitalNumberRecogniser(), text) == []


# -- dates ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("于2023年5月6日入院", "2023年5月6日"),
        ("于2023年05月06日入院", "2023年05月06日"),
        ("于2023 年 5 月 6 日入院", "2023 年 5 月 6 日"),
        ("2023-05-06 08:30 查房", "2023-05-06 08:30"),
        ("2023-05-06T08:30:00+08:00", "2023-05-06T08:30:00"),
        ("日期：2023/5/6。", "2023/5/6"),
        ("日期：2023.05.06。", "2023.05.06"),
        ("于2023年5月6日10时30分手术", "2023年5月6日10时30分"),
        ("于2023年5月6日上午9点手术", "2023年5月6日上午9点"),
        ("2019年3月行PCI术", "2019年3月"),
        ("于5月6日出院", "5月6日"),
        ("2024年2月29日", "2024年2月29日"),
        ("2月29日", "2月29日"),  # a year may be missing: a leap year is assumed
    ],
)
def test_dates_are_found(text: str, expected: str) -> None:
    assert found(DateRecogniser(), text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-30",  # no 30 February
        "2023年13月1日",
        "2023/4/31",
        "2023年2月29日",  # not a leap year
        "1850年3月4日",  # before 1900: not read as a date
        "近3个月体重下降",
        "2023年",  # a year alone is not an identifier
        "30/90mmHg",
        "版本2023.5",
    ],
)
def test_impossible_dates_and_other_numbers_are_not_dates(text: str) -> None:
    assert found(DateRecogniser(), text) == []


# -- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("姓名：张三  性别：男", ["张三"]),
        ("患者李小明，男，45岁", ["李小明"]),
        ("患者王芳因胸痛入院", ["王芳"]),
        ("家属赵六陪同", ["赵六"]),
        ("其女王丽娟代诉病史", ["王丽娟"]),
        ("今日随张伟主任医师查房", ["张伟"]),
        ("请李娜副主任医师会诊", ["李娜"]),
        ("医师：刘洋\n", ["刘洋"]),
        ("主治医师陈静", ["陈静"]),
        ("报告医师：周杰    审核医师：吴敏", ["周杰", "吴敏"]),
        ("参加人员：张伟、李娜、欧阳明", ["张伟", "李娜", "欧阳明"]),
        ("联系人：司马相（儿子）", ["司马相"]),
        ("欧阳娜娜之子欧阳明陪同", ["欧阳娜娜", "欧阳明"]),
        ("兹证明赵梅康，男，13岁", ["赵梅康"]),
        ("孙丽，女，62岁，因头晕就诊", ["孙丽"]),
        ("记录者：上官婉儿", ["上官婉儿"]),
    ],
)
def test_names_are_found_from_context(text: str, expected: list[str]) -> None:
    assert found(PersonNameRecogniser(), text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # Clinical words that start with a common surname character
        "患者高热3天",
        "患者黄疸加重",
        "患者白细胞升高",
        "患者石膏固定中",
        "患者方案同前",
        "患者常规复查",
        "患者高血压病史10年",
        "患者于今日出院",
        "患者平素体健",
        "患者明显好转",
        "患者安静入睡",
        "患者左侧肢体无力",
        "患者双下肢水肿",
        "患者全身乏力",
        "患者张口困难",
        "患者焦虑明显",
        "患者符合出院标准",
        "患者长期吸烟",
        "患者华法林抗凝中",
        # Titles followed by work, not a name
        "主任医师查房，同意目前治疗",
        "上级医师查看患者",
        "家属签字同意",
        "家属表示理解",
        "管床医生：",
        "随访医生已电话联系",
        # Places and drugs
        "家住徐汇区",
        "予阿司匹林100mg口服",
        "黄芪30g 白术15g",
    ],
)
def test_clinical_words_and_roles_are_not_names(text: str) -> None:
    assert found(PersonNameRecogniser(), text) == []


def test_a_rare_surname_is_not_read_from_weak_context() -> None:
    """After 患者 only the 150 most common surnames start a name: 应 is rarer and usually means 'should'."""
    assert found(PersonNameRecogniser(), "患者应卧床休息") == []
    assert found(PersonNameRecogniser(), "家属：应柏玥") == ["应柏玥"]


# -- addresses --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("现住上海市徐汇区澳门街92号，", "上海市徐汇区澳门街92号"),
        (
            "住址：浙江省杭州市西湖区文三路478号华星大厦3单元502室，",
            "浙江省杭州市西湖区文三路478号华星大厦3单元502室",
        ),
        ("家住静安区郑州路563弄17号578室。", "静安区郑州路563弄17号578室"),
        ("居住于南京路12号", "于南京路12号"),  # 于 kept: it also starts place names (于洪区)
        ("现住沈阳市于洪区向阳路5号", "沈阳市于洪区向阳路5号"),
        ("户籍地址宁夏回族自治区银川市西夏区怀远东路2号", "宁夏回族自治区银川市西夏区怀远东路2号"),
        ("患者来自浙江省瑞安市塘下镇鲍田村3组12号", "浙江省瑞安市塘下镇鲍田村3组12号"),
        (
            "现住呼和浩特市和平区人民路1号和谐家园1幢4单元101室",
            "呼和浩特市和平区人民路1号和谐家园1幢4单元101室",
        ),
        ("家住浙江省温州市瑞安市塘下镇。", "浙江省温州市瑞安市塘下镇"),  # a town below a district
        ("地址：北京市朝阳区建国路88号B座12楼", "北京市朝阳区建国路88号B座12楼"),
    ],
)
def test_addresses_are_found(text: str, expected: str) -> None:
    assert found(AddressRecogniser(), text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "患者为浙江温州人",  # a city alone is kept
        "长期居住于上海市浦东新区",  # a district alone is kept
        "予镇痛治疗",
        "3号床患者",
        "第3组淋巴结",
        "塘下镇",  # a town with no city or district before it
    ],
)
def test_places_at_district_level_or_above_are_not_addresses(text: str) -> None:
    assert found(AddressRecogniser(), text) == []


def test_an_address_splits_into_its_district_and_the_rest() -> None:
    assert AddressRecogniser().split("上海市徐汇区澳门街92号") == ("上海市徐汇区", "澳门街92号")
    assert AddressRecogniser().split("南京路12号") == ("", "南京路12号")


# -- institutions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("患者由复旦大学附属中山医院转入", ["复旦大学附属中山医院"]),
        ("曾在北京协和医院就诊", ["北京协和医院"]),
        ("既往于浙江省人民医院住院", ["浙江省人民医院"]),
        ("至华中科技大学同济医学院附属协和医院复查", ["华中科技大学同济医学院附属协和医院"]),
        ("转至徐汇区凌云街道社区卫生服务中心", ["徐汇区凌云街道社区卫生服务中心"]),
        ("工作单位：杭州昊嘉科技有限公司", ["杭州昊嘉科技有限公司"]),
        ("和平镇卫生院", ["和平镇卫生院"]),
        ("上海市第六人民医院（东院）", ["上海市第六人民医院（东院）"]),
        ("曾于301医院治疗", ["301医院"]),
        ("先后于南京鼓楼医院和江苏省人民医院就诊", ["南京鼓楼医院", "江苏省人民医院"]),
    ],
)
def test_institutions_are_found(text: str, expected: list[str]) -> None:
    assert found(InstitutionRecogniser(), text) == expected


@pytest.mark.parametrize(
    "text",
    ["转入我院治疗", "建议至上级医院就诊", "于当地医院就诊", "外院检查", "送医院", "文化程度大学", "该医院"],
)
def test_generic_institution_words_are_not_institutions(text: str) -> None:
    assert found(InstitutionRecogniser(), text) == []


# -- registry, patterns and the model slot ----------------------------------------------------------


def all_subclasses(cls: type) -> Iterable[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from all_subclasses(sub)


def test_every_rule_recogniser_is_registered_under_its_name() -> None:
    classes = {c for c in all_subclasses(RuleRecogniser) if c.__module__.startswith("medspace.")}
    assert classes == set(RECOGNISERS.values())
    for name, factory in RECOGNISERS.items():
        recogniser = factory()
        assert recogniser.name == name
        assert isinstance(recogniser, Recogniser)


def test_the_default_recognisers_cover_every_kind() -> None:
    assert {kind for r in default_recognisers() for kind in r.kinds} == set(PhiKind)


def test_every_published_pattern_compiles() -> None:
    for recogniser in default_recognisers():
        assert recogniser.patterns
        for pattern in recogniser.patterns.values():
            re.compile(pattern)


def test_the_kinds_are_the_synthetic_hospitals_labels() -> None:
    assert [k.value for k in PhiKind] == [
        "NAME",
        "ID",
        "PHONE",
        "HOSPITAL_NO",
        "ADDRESS",
        "DATE",
        "INSTITUTION",
    ]


class FakeModel:
    """A stand-in for a trained tagger: tags 张三 wherever it occurs, and junk the adapter must drop."""

    def predict(self, text: str) -> list[tuple[PhiKind, int, int, float]]:
        spans = [(PhiKind.NAME, m.start(), m.end(), 0.9) for m in re.finditer("张三", text)]
        return [
            *spans,
            (PhiKind.DATE, 0, 2, 0.1),
            (PhiKind.NAME, 5, 2, 0.99),
            (PhiKind.NAME, 0, 10_000, 0.99),
        ]


def test_a_model_plugs_in_as_a_recogniser() -> None:
    recogniser = ModelRecogniser(FakeModel(), name="bert-crf", kinds=frozenset({PhiKind.NAME}))
    assert isinstance(recogniser, Recogniser)
    spans = recogniser.find("今日张三来诊")
    assert [(s.kind, s.start, s.end, s.recogniser) for s in spans] == [(PhiKind.NAME, 2, 4, "bert-crf")]


# -- overlaps and helpers ---------------------------------------------------------------------------


def test_the_longest_span_wins_then_the_score_then_the_kind() -> None:
    name = PhiSpan(PhiKind.NAME, 3, 5, "person_name", 0.8)
    address = PhiSpan(PhiKind.ADDRESS, 0, 10, "address", 0.7)
    phone = PhiSpan(PhiKind.PHONE, 10, 21, "phone", 0.9)
    number = PhiSpan(PhiKind.HOSPITAL_NO, 10, 21, "hospital_number", 0.9)
    assert resolve_overlaps([name, address, number, phone]) == [address, phone]


spans_strategy = st.lists(
    st.builds(
        lambda kind, start, length, score: PhiSpan(kind, start, start + length, "r", score),
        st.sampled_from(list(PhiKind)),
        st.integers(0, 40),
        st.integers(1, 12),
        st.sampled_from([0.5, 0.8, 1.0]),
    ),
    max_size=8,
)


@given(spans_strategy)
def test_overlap_resolution_is_order_independent_and_leaves_no_overlap(spans: list[PhiSpan]) -> None:
    kept = resolve_overlaps(spans)
    for a, b in itertools.pairwise(kept):
        assert a.end <= b.start
    assert resolve_overlaps(list(reversed(spans))) == kept
    # Every dropped span overlaps a kept one at least as long.
    for span in set(spans) - set(kept):
        assert any(k.start < span.end and span.start < k.end and k.length >= span.length for k in kept)


_KIND_ORDER = [
    PhiKind.ID,
    PhiKind.PHONE,
    PhiKind.HOSPITAL_NO,
    PhiKind.DATE,
    PhiKind.ADDRESS,
    PhiKind.INSTITUTION,
    PhiKind.NAME,
]


@given(
    st.lists(
        st.builds(
            lambda kind, start, length, score, recogniser: PhiSpan(
                kind, start, start + length, recogniser, score
            ),
            st.sampled_from(list(PhiKind)),
            st.integers(-2, 30),
            st.integers(-1, 8),
            st.sampled_from([0.5, 0.8, 1.0]),
            st.sampled_from(["a", "b"]),
        ),
        max_size=12,
    )
)
def test_overlap_resolution_is_the_greedy_choice_over_all_spans(spans: list[PhiSpan]) -> None:
    """Clustering (and its shortcuts for one or two spans) gives what ranking every span at once gives."""
    chosen: list[PhiSpan] = []
    ranked = sorted(
        (s for s in spans if 0 <= s.start < s.end),
        key=lambda s: (-s.length, -s.score, _KIND_ORDER.index(s.kind), s.start, s.recogniser),
    )
    for span in ranked:
        if all(span.end <= other.start or other.end <= span.start for other in chosen):
            chosen.append(span)
    assert resolve_overlaps(spans) == sorted(chosen, key=lambda s: s.start)


@given(st.lists(st.text(alphabet="医师生主任签名护士长", min_size=1, max_size=5), min_size=1, max_size=12))
def test_a_word_trie_matches_exactly_the_longest_word(words: list[str]) -> None:
    trie = re.compile(word_pattern(words))
    alternation = re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)))
    for text in [*words, "".join(words), "主任医师签名护士长"]:
        assert [m.span() for m in trie.finditer(text)] == [m.span() for m in alternation.finditer(text)]


def test_a_cjk_class_leaves_out_exactly_the_given_characters() -> None:
    cls = re.compile(cjk_class_without("住在于"))
    assert [c for c in "住在于路街一龥" if cls.fullmatch(c)] == ["路", "街", "一", "龥"]
