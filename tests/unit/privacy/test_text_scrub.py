"""Scrubbing notes: dates shifted in their own format, keyed surrogates consistent within a patient, known
identifiers found anywhere, and nothing identifying left behind."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medspace.core import InputError, check_resident_id, make_resident_id
from medspace.privacy import (
    ModelRecogniser,
    PhiKind,
    ProductKey,
    ScrubbedText,
    TextScrubber,
    deidentify_table,
    load_profile,
    scrub_texts,
)
from medspace.privacy._text_surrogates import Surrogates, shift_date, year_only_date

KEY = ProductKey.from_hex("00" * 32)
OTHER_KEY = ProductKey.from_hex("11" * 32)
NOTE = (
    "入院记录\n患者张三丰，男，75岁，住院号07654321，身份证号11010519491231002X，"
    "现住上海市徐汇区澳门街92号，联系电话138-1234-5678，于2023年5月6日 08:30由复旦大学附属中山医院转入。"
    "5月8日行手术。家属李四陪同。\n医师：王五"
)
IDENTIFIERS = [
    "张三丰",
    "07654321",
    "11010519491231002X",
    "澳门街92号",
    "138-1234-5678",
    "2023年5月6日",
    "复旦大学附属中山医院",
    "5月8日",
    "李四",
    "王五",
]


@pytest.fixture(scope="module")
def scrubber() -> TextScrubber:
    return TextScrubber(KEY)


def scrub(scrubber: TextScrubber, text: str, person: str = "P1", offset: int = 30) -> ScrubbedText:
    return scrubber.scrub(text, person_key=person, date_offset_days=offset)


def test_every_identifier_is_replaced_and_the_rest_kept(scrubber: TextScrubber) -> None:
    out = scrub(scrubber, NOTE)
    for value in IDENTIFIERS:
        assert value not in out.text
    for kept in ("入院记录", "男，75岁", "上海市徐汇区，", "行手术", "陪同", "医师："):
        assert kept in out.text
    assert dict(out.counts) == {
        PhiKind.NAME: 3,
        PhiKind.ID: 1,
        PhiKind.PHONE: 1,
        PhiKind.HOSPITAL_NO: 1,
        PhiKind.ADDRESS: 1,
        PhiKind.DATE: 2,
        PhiKind.INSTITUTION: 1,
    }
    assert [NOTE[s.start : s.end] for s in out.spans if s.kind is PhiKind.DATE] == [
        "2023年5月6日 08:30",
        "5月8日",
    ]


def test_surrogates_look_real(scrubber: TextScrubber) -> None:
    out = scrub(scrubber, NOTE)
    resident_id = re.search(r"身份证号([0-9X]{18})，", out.text)
    assert resident_id is not None and check_resident_id(resident_id[1]).valid
    # Sex and the shifted birth date survive; the region is new.
    assert int(resident_id[1][16]) % 2 == 0
    assert resident_id[1][6:14] == f"{date(1949, 12, 31) + timedelta(days=30):%Y%m%d}"
    phone = re.search(r"联系电话([0-9-]+)，", out.text)
    assert phone is not None and re.fullmatch(r"1[3-9][0-9]-[0-9]{4}-[0-9]{4}", phone[1])
    number = re.search(r"住院号([0-9]+)，", out.text)
    assert number is not None and len(number[1]) == 8 and number[1].startswith("0")
    assert "现住上海市徐汇区，" in out.text  # the address cut to district level
    assert re.search(r"由\w{2,4}医院转入", out.text)
    name = re.search(r"患者(\w+)，男", out.text)
    assert name is not None and len(name[1]) == 3


def test_the_same_patient_gets_the_same_surrogates_in_every_note(scrubber: TextScrubber) -> None:
    first = scrub(scrubber, "患者张三丰，电话13812345678。")
    second = scrub(TextScrubber(KEY), "复诊。家属：李四。患者张三丰诉好转，电话138 1234 5678")
    name = first.text[2:5]
    assert name in second.text
    assert first.text[-12:-1] == second.text[-13:].replace(" ", "")  # the same digits, each in its own format


def test_another_patient_or_another_key_gets_other_surrogates(scrubber: TextScrubber) -> None:
    text = "患者张三丰，住院号07654321，电话13812345678，家属李四"
    mine = scrub(scrubber, text, person="P1")
    theirs = scrub(scrubber, text, person="P2")
    other_product = scrub(TextScrubber(OTHER_KEY), text, person="P1")
    assert mine.text != theirs.text and mine.text != other_product.text
    mine_parts = set(re.split(r"[，]", mine.text))
    assert not mine_parts & set(re.split(r"[，]", theirs.text))
    assert not mine_parts & set(re.split(r"[，]", other_product.text))


@pytest.mark.parametrize(
    ("original", "offset", "year", "shifted"),
    [
        ("2023年5月6日", 30, None, "2023年6月5日"),
        ("2023年05月06日", 30, None, "2023年06月05日"),
        ("2023-05-06", -10, None, "2023-04-26"),
        ("2023-05-06 08:30", 365, None, "2024-05-05 08:30"),
        ("2023/5/6", 1, None, "2023/5/7"),
        ("2023.12.31", 1, None, "2024.01.01"),
        ("2023/12/5", 27, None, "2024/1/1"),
        ("2023年12月31日", 1, None, "2024年1月1日"),
        ("2023年5月6日10时30分", 2, None, "2023年5月8日10时30分"),
        ("2023年5月", 20, None, "2023年6月"),  # mid-month moved by the offset
        ("12月30日", 5, 2023, "1月4日"),
        ("2月28日", 1, None, "2月29日"),  # no year in the note: a leap year is assumed
        ("2024年2月29日", -366, None, "2023年2月28日"),
    ],
)
def test_dates_shift_by_the_offset_in_their_own_format(
    original: str, offset: int, year: int | None, shifted: str
) -> None:
    assert shift_date(original, offset, year) == shifted


def test_a_date_a_model_found_after_a_year_is_still_read() -> None:
    """Each date is read on its own, so a model's span that starts just after 年 or a digit is shifted too."""

    class Toy:
        def predict(self, text: str) -> list[tuple[PhiKind, int, int, float]]:
            return [(PhiKind.DATE, 5, 9, 0.9)]

    out = TextScrubber(KEY, [ModelRecogniser(Toy())]).scrub(
        "2023年5月6日入院", person_key="P1", date_offset_days=30
    )
    assert out.text == "2023年6月5日入院"


def test_intervals_between_dates_are_kept(scrubber: TextScrubber) -> None:
    text = "于2023年12月20日入院，2024-01-05出院，1月10日复诊。"
    out = scrub(scrubber, text, offset=-47)
    written = re.findall(
        r"[0-9]{4}年[0-9]+月[0-9]+日|[0-9]{4}-[0-9]{2}-[0-9]{2}|(?<![0-9年])[0-9]+月[0-9]+日", out.text
    )
    admit = date(*map(int, re.findall(r"[0-9]+", written[0])))
    discharge = date.fromisoformat(written[1])
    month, day = map(int, re.findall(r"[0-9]+", written[2]))
    assert (discharge - admit).days == 16
    assert (date(discharge.year, month, day) - discharge).days == 5


def test_a_bare_month_and_day_takes_the_nearest_year(scrubber: TextScrubber) -> None:
    out = scrub(scrubber, "2022年12月30日入院，12月31日手术。2024-06-01随访。", offset=3)
    assert "2023年1月2日入院，1月3日手术" in out.text


def test_29_february_near_a_year_without_one_is_shifted_in_a_leap_year(scrubber: TextScrubber) -> None:
    # The nearest year, 2023, has no 29 February; the note still names that day, so it is read in a leap year.
    out = scrub(scrubber, "2023年1月1日入院，2月29日手术", offset=3)
    assert out.text == "2023年1月4日入院，3月3日手术"


# HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(C): no element of a date but the year.
@pytest.mark.parametrize(
    ("original", "kept"),
    [
        ("2023年5月6日", "2023年"),
        ("2023年05月06日 08:30", "2023年"),
        ("2023 年 5 月 6 日", "2023年"),
        ("2023年5月6日10时30分", "2023年"),
        ("2023年5月", "2023年"),
        ("2023-05-06 08:30", "2023"),
        ("2023/5/6", "2023"),
        ("2023.12.31", "2023"),
        ("5月6日", "某日"),  # no year to keep
        ("12月30号上午9点", "某日"),
    ],
)
def test_a_date_cut_to_its_year_keeps_nothing_else(original: str, kept: str) -> None:
    assert year_only_date(original) == kept
    assert year_only_date("明天") is None


def test_notes_can_keep_only_the_year_of_their_dates(scrubber: TextScrubber) -> None:
    out = scrubber.scrub(NOTE, person_key="P1", dates="year_only")
    assert "于2023年由" in out.text and "某日行手术" in out.text
    assert not re.search(r"[0-9]+ ?月|[0-9]{1,2}:[0-9]{2}", out.text)
    assert out.counts[PhiKind.DATE] == 2
    # The offset plays no part, and everything but dates and the resident ID is replaced as when dates are
    # shifted.
    assert scrubber.scrub(NOTE, person_key="P1", date_offset_days=200, dates="year_only").text == out.text
    shifted = scrubber.scrub(NOTE, person_key="P1", date_offset_days=30)
    for part in re.split(r"[，。\n]", shifted.text):
        if "月" not in part and "身份证" not in part:
            assert part in out.text


def test_a_resident_id_keeps_only_its_birth_year_when_dates_do(scrubber: TextScrubber) -> None:
    out = scrubber.scrub("身份证号11010519491231002X，", person_key="P1", dates="year_only")
    resident_id = re.search(r"身份证号([0-9X]{18})，", out.text)
    assert resident_id is not None and check_resident_id(resident_id[1]).valid
    assert resident_id[1][6:10] == "1949" and resident_id[1][6:14] != "19491231"
    assert int(resident_id[1][16]) % 2 == 0


def test_a_batch_keeps_only_years_like_one_note_at_a_time() -> None:
    texts = [NOTE, "患者李四，2023-01-01入院，1月3日出院", ""]
    batch = scrub_texts(texts, ["P1", "P2", "P3"], [30, 5, 1], KEY, dates="year_only")
    single = TextScrubber(KEY)
    assert [b.text for b in batch] == [
        single.scrub(t, person_key=p, dates="year_only").text
        for t, p in zip(texts, ["P1", "P2", "P3"], strict=True)
    ]
    assert batch[1].text.endswith("，2023入院，某日出院")


def test_an_unknown_date_treatment_is_refused(scrubber: TextScrubber) -> None:
    with pytest.raises(InputError, match="year_only"):
        scrubber.scrub(NOTE, person_key="P1", dates="month_only")  # type: ignore[arg-type]


def test_the_safe_harbor_profile_keeps_only_the_year_of_dates_in_notes() -> None:
    """``medspace deid`` with HIPAA Safe Harbor: the profile keeps only the year of dates, in notes too."""
    table = pa.table(
        {
            "patient_id": ["P1", "P2", "P1"],
            "note_text": [NOTE, None, "复诊：2024/1/15，家属李四陪同，主诉头痛三天，5月8日复查。"],
        }
    )
    out = deidentify_table(
        table, load_profile("hipaa-safe-harbor"), KEY, name="notes", person_column="patient_id"
    )
    first, missing, second = out.tables["notes"].column("note_text").to_pylist()
    assert missing is None
    assert "于2023年由" in first and "某日行手术" in first
    assert second.startswith("复诊：2024，") and "某日复查" in second
    for note in (first, second):
        assert "张三丰" not in note and "李四" not in note
        assert not re.search(r"[0-9]+ ?月|(?:19|20)[0-9]{2}[-/.][0-9]{1,2}(?![0-9])", note)
    assert out.report.text_identifiers["DATE"] == 4


def test_surrogates_stay_the_same_for_the_same_key() -> None:
    """Pinned values: a product rebuilt with its key gets the surrogates it had (HMAC-SM3, GB/T 32905)."""
    surrogates = Surrogates(KEY)
    for kind, original, expected in [
        (PhiKind.NAME, "张三丰", "洪成秋"),
        (PhiKind.NAME, "李四", "丁斌"),
        (PhiKind.NAME, "欧阳娜娜", "诸葛军彬"),
        (PhiKind.ID, "11010519491231002X", "220202195001307504"),
        (PhiKind.ID, "110105 19491231 002x", "220202 19500130 7504"),
        (PhiKind.PHONE, "138-1234-5678", "151-3786-6561"),
        (PhiKind.PHONE, "+86 13812345678", "+86 18845146806"),
        (PhiKind.PHONE, "(021)62345678", "(021)77984703"),
        (PhiKind.HOSPITAL_NO, "ZY00012345", "ZY00235825"),
        (PhiKind.HOSPITAL_NO, "07654321-2", "07529459-2"),
        (PhiKind.INSTITUTION, "复旦大学附属中山医院", "恒安医院"),
        (PhiKind.ADDRESS, "澳门街92号", "朝阳街608号"),
        (PhiKind.ADDRESS, "上海市徐汇区澳门街92号", "上海市徐汇区"),
    ]:
        assert surrogates.surrogate(kind, original, "P1", 30) == expected, original


def test_known_identifiers_are_found_anywhere(scrubber: TextScrubber) -> None:
    text = "张三丰诉头痛。张三丰之妻代诉。ZY20240001已缴费。"
    known = {PhiKind.NAME: ["张三丰"], PhiKind.HOSPITAL_NO: ["ZY20240001"], PhiKind.PHONE: ["1"]}
    out = scrubber.scrub(text, person_key="P1", date_offset_days=1, known=known)
    assert "张三丰" not in out.text and "ZY20240001" not in out.text
    assert out.counts[PhiKind.NAME] == 2 and out.counts[PhiKind.HOSPITAL_NO] == 1
    assert [s.recogniser for s in out.spans] == ["known", "known", "known"]


def test_the_offset_defaults_to_the_keys_offset_for_the_patient(scrubber: TextScrubber) -> None:
    offset = KEY.date_offset_days("P9")
    out = scrubber.scrub("2023-05-06", person_key="P9")
    assert out.text == (date(2023, 5, 6) + timedelta(days=offset)).isoformat()


def test_spans_point_into_the_original_text(scrubber: TextScrubber) -> None:
    out = scrub(scrubber, NOTE)
    assert [NOTE[s.start : s.end] for s in out.spans if s.kind is not PhiKind.ADDRESS][:3] == [
        "张三丰",
        "07654321",
        "11010519491231002X",
    ]


def test_a_batch_matches_one_note_at_a_time() -> None:
    texts = [NOTE, "患者李四，2023-01-01入院", ""]
    batch = scrub_texts(texts, ["P1", "P2", "P3"], [30, 5, 1], KEY)
    single = TextScrubber(KEY)
    assert [b.text for b in batch] == [
        single.scrub(t, person_key=p, date_offset_days=o).text
        for t, p, o in zip(texts, ["P1", "P2", "P3"], [30, 5, 1], strict=True)
    ]
    assert batch[2].text == "" and batch[2].spans == ()


def test_a_batch_with_mismatched_lengths_is_refused_without_echoing_text() -> None:
    with pytest.raises(InputError) as error:
        scrub_texts(["患者张三丰"], ["P1", "P2"], None, KEY)
    assert "张三丰" not in str(error.value)


def test_a_note_without_a_patient_key_is_refused(scrubber: TextScrubber) -> None:
    with pytest.raises(InputError, match="person_key") as error:
        scrubber.scrub("患者张三丰", person_key="")
    assert "张三丰" not in str(error.value)


@settings(max_examples=60, deadline=None)
@given(
    region=st.sampled_from(["110105", "310104", "440305", "330106", "650102"]),
    days=st.integers(0, 36_000),
    sequence=st.integers(0, 999),
    before=st.sampled_from(["身份证号", "ID：", "患者", "，", "证件号码 "]),
    after=st.sampled_from(["，", "。", "\n", "来诊", ""]),
    spaced=st.booleans(),
    person=st.text(min_size=1, max_size=8),
)
def test_scrubbing_never_leaves_an_input_resident_id(
    region: str, days: int, sequence: int, before: str, after: str, spaced: bool, person: str
) -> None:
    value = make_resident_id(region, date(1920, 1, 1) + timedelta(days=days), sequence)
    written = f"{value[:6]} {value[6:14]} {value[14:]}" if spaced else value
    out = TextScrubber(KEY).scrub(f"{before}{written}{after}", person_key=person, date_offset_days=7)
    assert value not in out.text.replace(" ", "")
    assert out.counts[PhiKind.ID] == 1
