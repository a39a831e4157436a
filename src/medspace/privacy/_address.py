"""The administrative units at the start of a Chinese address (GB/T 2260 levels: province, prefecture,
county), read by rules rather than a gazetteer.

Role proposals use it to recognise address columns; the direct-identifier step uses it to cut addresses to
the district, city or province.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from medspace.privacy._text_lexicon import lexicon

__all__ = ["STREET_MARKERS", "AddressUnits", "address_units", "clean_address"]

# Characters that may appear inside the name of an administrative unit: word characters except digits,
# Latin letters, the unit suffixes themselves and street-level markers (路 road, 街 street, 巷 lane, 弄 alley,
# 号 number), so a unit match never runs into the street part of an address.
_UNIT_CHAR = r"[^\W\d_A-Za-z省市区县旗盟路街巷弄号]"
# A unit suffix directly followed by one of these belongs to a street or place name (杭州路, 超市场).
_NOT_AFTER = r"(?![路街巷弄道场])"
# Prefecture level (GB/T 2260): 地级市 (市), 地区, 自治州 (州), 盟. Names are matched shortest first, so a 州
# followed by 市, 区 or 县 belongs to the name (温州市, 通州区), not the suffix.
_PREFECTURE = re.compile(rf"{_UNIT_CHAR}{{1,10}}?(?:自治州|地区|盟|州(?![市区县])|市){_NOT_AFTER}")
# County level (GB/T 2260): 市辖区 (区, 新区), 县, 自治县, 县级市 (市), 旗, 自治旗, 林区, 特区. 市中区 is the
# one district name that starts with a suffix character (in 济南, 枣庄, 乐山 and 内江).
_COUNTY = re.compile(
    rf"(?:市中区|{_UNIT_CHAR}{{1,10}}?(?:自治县|自治旗|新区|林区|特区|区|县|旗|市(?!区))){_NOT_AFTER}"
)
# Places below county level that end like a district: residential compounds, campuses, parks.
_NOT_COUNTY = ("小区", "社区", "校区", "景区", "厂区", "片区", "园区", "街区", "营区")
# Street-level markers that show a value goes below district level (road, street, number, room, village);
# GB/T 2260 stops at the county, so these are the words addresses use below it, not a standard's list.
STREET_MARKERS = re.compile(r"[路街道巷弄号村镇乡室栋幢楼]|小区|单元")
_MUNICIPALITIES = ("北京", "天津", "上海", "重庆")


@dataclass(frozen=True)
class AddressUnits:
    """The administrative units at the start of a Chinese address, as written, and where they end.

    Attributes:
        province: Province-level unit (省, 自治区, 直辖市, 特别行政区), full or short form, or None.
        prefecture: Prefecture-level unit (市, 州, 自治州, 地区, 盟), or None.
        county: County-level unit (区, 县, 县级市, 旗), or None.
        end: Index in the cleaned address just after the last unit found.
        municipality: Whether the province is one of the four municipalities (直辖市), which have no
            prefecture level.
    """

    province: str | None
    prefecture: str | None
    county: str | None
    end: int
    municipality: bool


@functools.cache
def _provinces() -> tuple[str, ...]:
    # Longest first, so 内蒙古自治区 wins over 内蒙古.
    return tuple(sorted(lexicon().provinces, key=len, reverse=True))


def clean_address(text: str) -> str:
    # Addresses are written without spaces; exports pad or wrap them (whitespace, no standard).
    text = re.sub(r"\s+", "", text)
    for country in ("中华人民共和国", "中国"):
        text = text.removeprefix(country)
    return text


def address_units(text: str) -> AddressUnits:
    """Read the province, prefecture and county at the start of a Chinese address (GB/T 2260 levels).

    Rules, not a gazetteer: a unit is a run of name characters ending in its level's suffix, in the order
    province, prefecture, county, each optional. Units must follow each other from the start; anything
    after the first part that is not a unit (a road, a compound) ends the search. The four municipalities
    go straight from province to county (上海市浦东新区); GB/T 2260's placeholder 市辖区 is skipped.

    Args:
        text: The address as written; whitespace and a leading 中国 are ignored.

    Returns:
        The units found and where they end in the cleaned text.

    Example:
        >>> u = address_units("江苏省苏州市昆山市玉山镇XX路1号")
        >>> u.province, u.prefecture, u.county
        ('江苏省', '苏州市', '昆山市')
        >>> address_units("上海市浦东新区张江路12弄3号").county
        '浦东新区'
    """
    text = clean_address(text)
    position = 0
    province = next((p for p in _provinces() if text.startswith(p)), None)
    if province is not None:
        position = len(province)
    municipality = province is not None and province.startswith(_MUNICIPALITIES)
    if municipality and text.startswith("市辖区", position):
        position += len("市辖区")
    prefecture = None
    if not municipality:
        match = _PREFECTURE.match(text, position)
        if match is not None:
            prefecture = match.group()
            position = match.end()
    county = None
    match = _COUNTY.match(text, position)
    if match is not None and not match.group().endswith(_NOT_COUNTY):
        county = match.group()
        position = match.end()
    return AddressUnits(province, prefecture, county, position, municipality)
