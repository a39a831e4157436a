"""A labelled corpus of synthetic Chinese clinical notes for scoring text de-identification.

The synthetic hospital writes first-course, progress and discharge notes; this corpus deliberately uses
other document types and other wording, so the scrubber is not tuned to one generator: outpatient records
(门诊病历), nursing records, consultation notes, referral letters, imaging and ultrasound reports, informed
consent forms, death and transfer records, follow-up phone calls and medical certificates. Identifiers vary
in format the way real notes do: resident IDs grouped with spaces or ending in a lower-case x, old 15-digit
IDs, phones with +86 or dashes, landlines, every common date format, addresses with and without province or
district, rural addresses, compound surnames, relatives' and doctors' names, hospitals across China,
community health centres, clinics, schools and companies. Clinical words that start with a surname
character (高血压, 黄疸, 白细胞, 石膏, 方案) and numbers that are not identifiers (doses, lab values, beds)
appear throughout, to measure precision.

Every note carries its gold spans: (kind, start, end) with kind one of the PhiKind values. What is labelled:
every person's name; resident IDs, phones and hospital numbers as written (with spaces, dashes and +86, but
without the word before them); addresses from the first written province, city or district through the last
street, house or room unit (a province, city or district alone is not an identifier: it is kept); dates with
at least a month, with the time of day if written next to them; and every named institution.

Values come from Faker's zh_CN tables and ``medspace.core.make_resident_id``; a fixed seed makes the corpus
identical on every run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from faker import Faker
from faker.providers.address.zh_CN import Provider as Address
from faker.providers.person.zh_CN import Provider as Person
from faker.providers.phone_number.zh_CN import Provider as Phone

from medspace.core import make_resident_id, region_codes

NAME, ID, PHONE, HOSPITAL_NO, ADDRESS, DATE, INSTITUTION = (
    "NAME",
    "ID",
    "PHONE",
    "HOSPITAL_NO",
    "ADDRESS",
    "DATE",
    "INSTITUTION",
)
KINDS = (NAME, ID, PHONE, HOSPITAL_NO, ADDRESS, DATE, INSTITUTION)

# Wider than Faker's 101 given-name characters, including rarer ones, so names are not all from one table.
GIVEN_CHARS = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂华飞玉兰萍红燕鹏辉斌宇浩凯健俊帆帅旭宁龙林欢阳建国晨"
    "瑞博文雷波海鑫晶颖倩婷雪琳丹玲梅莉琴云荣珍香凤洁慧怡悦欣嘉佳轩涵睿泽梓宸诺思雨梦晓德志永福春秋冬东"
    "山成胜立新清江家乐康宝兴仁义智忠豪美婉蕾薇琪琦璐瑶露然峰岩松柏毅诚彬昊翔皓晗钰沐煜铭烨琛珂玥瑾璇"
    "韵蔚芸蓉菁茜萱淑贞惠巧爱亮兵坤岚骏逸霖炜焱耀炳桐楷栋樾曦熙朗卿"
)
COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "慕容", "司徒", "夏侯", "令狐")
HOSPITALS = (
    "北京协和医院",
    "中国人民解放军总医院",
    "北京大学第一医院",
    "首都医科大学附属北京天坛医院",
    "四川大学华西医院",
    "浙江大学医学院附属第一医院",
    "浙江大学医学院附属邵逸夫医院",
    "中山大学附属第一医院",
    "华中科技大学同济医学院附属协和医院",
    "中南大学湘雅医院",
    "南京鼓楼医院",
    "江苏省人民医院",
    "山东大学齐鲁医院",
    "郑州大学第一附属医院",
    "西安交通大学第一附属医院",
    "重庆医科大学附属第一医院",
    "哈尔滨医科大学附属第一医院",
    "中国医科大学附属盛京医院",
    "吉林大学白求恩第一医院",
    "福建医科大学附属协和医院",
    "广西医科大学第一附属医院",
    "新疆医科大学第一附属医院",
    "温州医科大学附属第一医院",
    "苏州大学附属第一医院",
    "宁波市第二医院",
    "杭州市第一人民医院",
    "上海市第六人民医院",
    "复旦大学附属华山医院",
    "上海交通大学医学院附属仁济医院",
    "昆山市中医医院",
    "瑞安市人民医院",
    "义乌市中心医院",
    "广州市妇女儿童医疗中心附属医院",
    "深圳市人民医院",
)
SCHOOLS = ("杭州市第十四中学", "南京大学", "浙江工业大学", "成都市实验小学", "武汉大学", "合肥工业大学")
CLINIC_KINDS = ("诊所", "门诊部", "口腔诊所")
DEPARTMENTS = (
    "心内科",
    "呼吸科",
    "消化内科",
    "神经内科",
    "内分泌科",
    "普外科",
    "骨科",
    "泌尿外科",
    "妇科",
    "肿瘤科",
)
DIAGNOSES = (
    "高血压病3级",
    "2型糖尿病",
    "冠状动脉粥样硬化性心脏病",
    "慢性阻塞性肺疾病急性加重",
    "社区获得性肺炎",
    "急性胆囊炎",
    "梗阻性黄疸",
    "右桡骨远端骨折",
    "脑梗死",
    "甲状腺结节",
    "胃癌",
    "肝硬化失代偿期",
)
# Clinical sentences, with words that begin with a surname character and numbers that are not identifiers.
CLINICAL = (
    "高血压病史10余年，规律服用氨氯地平5mg qd，血压控制在130/80mmHg左右。",
    "查体：T 36.8℃，P 88次/分，R 20次/分，BP 142/86mmHg，皮肤巩膜无黄染。",
    "血常规示白细胞12.3×10^9/L，中性粒细胞比例85%，C反应蛋白56mg/L。",
    "予石膏外固定，嘱抬高患肢，定期复查X线。",
    "治疗方案：常规抗感染、化痰、平喘治疗，必要时行支气管镜检查。",
    "黄疸较前消退，总胆红素由156μmol/L降至68μmol/L。",
    "双肺呼吸音粗，可闻及少量湿啰音，心律齐，各瓣膜听诊区未闻及病理性杂音。",
    "空腹血糖7.8mmol/L，糖化血红蛋白8.1%，调整胰岛素用量为早12U、晚8U。",
    "左下肢轻度水肿，足背动脉搏动可，余未见明显异常。",
    "高热3天，最高体温39.2℃，伴畏寒、寒战，无咳嗽咳痰。",
    "方便起见，嘱患者每日监测血压并记录。",
    "心电图示窦性心律，ST段压低0.1mV，肌钙蛋白阴性。",
    "CT示右肺上叶见一约8mm×6mm磨玻璃结节，建议3个月后复查。",
    "经皮冠状动脉介入治疗后，继续双联抗血小板治疗12个月。",
    "余肝功能、肾功能、电解质未见明显异常。",
    "明显好转，饮食睡眠可，大小便正常。",
    "全身浅表淋巴结未触及肿大，甲状腺未触及结节。",
    "常规行术前准备，备血400ml，拟于次日在全麻下手术。",
    "腹部平坦，未见胃肠型及蠕动波，全腹软，右上腹压痛阳性，Murphy征阳性。",
    "患者平素体健，否认肝炎、结核等传染病史，否认药物过敏史。",
    "安静状态下心率76次/分，6分钟步行试验420米。",
    "白蛋白32g/L，予补充人血白蛋白10g qd×3天。",
    "向患者及家属交代病情及注意事项，表示理解。",
    "3床患者夜间睡眠欠佳，予艾司唑仑1mg口服。",
    "于今日复查血常规，结果待回报。",
    "石淋症状反复发作，予消石排石治疗。",
    "曾因阑尾炎行手术治疗，具体不详。",
    "既往体检发现甲状腺结节，未定期随访。",
    "患者为浙江温州人，长期在上海市浦东新区务工，否认疫区旅居史。",
    "籍贯江苏南京，已婚已育，育有1子1女，均体健。",
    "予华法林3mg qn抗凝，INR目标2.0～3.0，住院第3天复查凝血功能。",
    "近3月体重下降约5kg，每日吸烟20支，饮酒史30年。",
    "术后第5天，切口Ⅰ/甲愈合，拆除缝线12针。",
    "NYHA心功能Ⅲ级，左室射血分数45%，BNP 1256pg/ml。",
    "李斯特菌培养阴性，血培养2套均未见细菌生长。",
    "向家属交代病情，家属表示理解并签字。",
)
COMPLAINTS = ("反复胸闷", "咳嗽咳痰", "上腹痛", "头晕", "多饮多尿")
RELATIONS = (
    ("儿子", "其子"),
    ("女儿", "其女"),
    ("配偶", "其妻"),
    ("丈夫", "其夫"),
    ("母亲", "其母"),
    ("父亲", "其父"),
)
AREA_CODES = (
    "010",
    "021",
    "022",
    "023",
    "020",
    "025",
    "027",
    "028",
    "029",
    "0571",
    "0574",
    "0577",
    "0512",
    "0531",
)


@dataclass(frozen=True)
class LabelledNote:
    """One synthetic note with its gold identifier spans."""

    note_id: str
    template: str
    person_key: str
    text: str
    spans: tuple[tuple[str, int, int], ...]
    known: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Patient:
    key: str
    name: str
    sex: str
    birth: date
    resident_id: str
    old_id: bool
    mobile: str
    landline: str
    address_parts: tuple[str, str, str, str]  # province, city, district, below district
    relative: str
    relation: tuple[str, str]
    inpatient_no: str
    outpatient_no: str
    employer: str


class _Builder:
    """Concatenates a note and records where each identifier lands."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.spans: list[tuple[str, int, int]] = []

    def t(self, text: str) -> _Builder:
        self.parts.append(text)
        self.length += len(text)
        return self

    def x(self, kind: str, value: str) -> _Builder:
        self.spans.append((kind, self.length, self.length + len(value)))
        return self.t(value)

    def text(self) -> str:
        return "".join(self.parts)


class _Corpus:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("zh_CN")
        self.fake.seed_instance(seed)
        self.surnames = [s for s in Person.last_names if len(s) == 1]
        self.surname_weights = [Person.last_names[s] for s in self.surnames]
        self.provinces = list(Address.provinces)
        self.cities = [c for c in Address.cities if len(c) >= 2]
        self.districts = list(Address.districts)
        self.regions = sorted(region_codes())
        self.phone_prefixes = [str(p) for p in Phone.phonenumber_prefixes]
        self.doctors = [self.person_name() for _ in range(80)]

    # -- values --------------------------------------------------------------------------------------------

    def person_name(self, surname: str | None = None) -> str:
        rng = self.rng
        if surname is None:
            if rng.random() < 0.06:
                surname = rng.choice(COMPOUND_SURNAMES)
            else:
                surname = rng.choices(self.surnames, self.surname_weights)[0]
        given = rng.choice(GIVEN_CHARS) + (rng.choice(GIVEN_CHARS) if rng.random() < 0.7 else "")
        return surname + given

    def resident_id(self, birth: date, male: bool) -> tuple[str, bool]:
        rng = self.rng
        region = rng.choice(self.regions)
        sequence = rng.randrange(0, 500) * 2 + int(male)
        if birth.year < 1980 and rng.random() < 0.2:
            return f"{region}{birth:%y%m%d}{sequence:03d}", True
        value = make_resident_id(region, birth, sequence)
        roll = rng.random()
        if roll < 0.12:
            value = f"{value[:6]} {value[6:14]} {value[14:]}"
        if value.endswith("X") and rng.random() < 0.4:
            value = value[:-1] + "x"
        return value, False

    def mobile(self) -> str:
        rng = self.rng
        number = f"{rng.choice(self.phone_prefixes)}{rng.randrange(10**8):08d}"
        style = rng.random()
        if style < 0.55:
            return number
        if style < 0.7:
            return f"{number[:3]}-{number[3:7]}-{number[7:]}"
        if style < 0.8:
            return f"{number[:3]} {number[3:7]} {number[7:]}"
        if style < 0.9:
            return f"+86 {number}"
        return f"+86-{number[:3]}-{number[3:7]}-{number[7:]}"

    def landline(self) -> str:
        rng = self.rng
        area = rng.choice(AREA_CODES)
        local = str(rng.randrange(2, 10)) + "".join(
            str(rng.randrange(10)) for _ in range(7 if len(area) == 3 else 6)
        )
        style = rng.random()
        if style < 0.6:
            return f"{area}-{local}"
        if style < 0.85:
            return f"({area}){local}"
        return f"（{area}）{local}"

    def address(self) -> tuple[str, str, str, str]:
        rng = self.rng
        province = rng.choice(self.provinces)
        city = rng.choice(self.cities) + "市" if not province.endswith("市") else ""
        district = rng.choice(self.districts) + rng.choice(("区", "区", "县"))
        road = rng.choice(
            (rng.choice(self.cities), self.fake.last_name() + rng.choice(("家", "")), "人民", "解放")
        )
        road += rng.choice(("路", "路", "街", "大道", "东路", "中路"))
        style = rng.random()
        if style < 0.3:
            local = f"{road}{rng.randrange(1, 1500)}号"
        elif style < 0.55:
            local = f"{road}{rng.randrange(1, 900)}弄{rng.randrange(1, 40)}号{rng.randrange(101, 2405)}室"
        elif style < 0.75:
            estate = rng.choice(("阳光", "金色", "翠苑", "锦绣", "和谐", "世纪")) + rng.choice(
                ("花园", "小区", "新村", "家园")
            )
            units = f"{rng.randrange(1, 30)}幢{rng.randrange(1, 6)}单元{rng.randrange(101, 2802)}室"
            local = f"{road}{rng.randrange(1, 800)}号{estate}{units}"
        elif style < 0.9:
            town = rng.choice(self.districts) + rng.choice(("镇", "乡"))
            village = rng.choice(("东风", "红旗", "新民", "和平", "李家", "王庄")) + "村"
            local = f"{town}{village}{rng.randrange(1, 12)}组{rng.randrange(1, 99)}号"
        else:
            local = f"{road}{rng.randrange(1, 300)}号{rng.choice('ABCD')}座{rng.randrange(1, 30)}楼"
        return province, city, district, local

    def hospital_number(self, kind: str) -> str:
        rng = self.rng
        if kind == "住院号":
            return f"{rng.randrange(10**7):08d}" if rng.random() < 0.7 else f"ZY{rng.randrange(10**8):08d}"
        if kind == "门诊号":
            return (
                f"MZ{rng.randrange(10**8):08d}" if rng.random() < 0.5 else f"{rng.randrange(10**9, 10**10)}"
            )
        if kind == "病案号":
            return f"{rng.randrange(10**5, 10**7)}"
        return f"{rng.choice(('CT', 'US', 'MR', 'DR'))}{rng.randrange(2019, 2025)}{rng.randrange(10**6):06d}"

    def institution(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            return rng.choice(HOSPITALS)
        if roll < 0.75:
            return rng.choice(self.districts) + rng.choice(
                ("街道社区卫生服务中心", "镇卫生院", "社区卫生服务中心")
            )
        if roll < 0.85:
            return (
                rng.choice(self.cities)
                + rng.choice(("康宁", "仁和", "惠民", "博爱"))
                + rng.choice(CLINIC_KINDS)
            )
        return rng.choice(self.cities) + rng.choice(("市妇幼保健院", "市中医院", "市第二人民医院"))

    def employer(self) -> str:
        if self.rng.random() < 0.6:
            return self.rng.choice(self.cities) + self.fake.company()
        return self.rng.choice(SCHOOLS)

    def patient(self, index: int) -> Patient:
        rng = self.rng
        male = rng.random() < 0.5
        birth = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 85 * 365))
        name = self.person_name()
        resident_id, old = self.resident_id(birth, male)
        relation = rng.choice(RELATIONS)
        relative = (
            self.person_name(name[:2] if name[:2] in COMPOUND_SURNAMES else name[0])
            if relation[0]
            in (
                "儿子",
                "女儿",
            )
            else self.person_name()
        )
        return Patient(
            key=f"Q{index:05d}",
            name=name,
            sex="男" if male else "女",
            birth=birth,
            resident_id=resident_id,
            old_id=old,
            mobile=self.mobile(),
            landline=self.landline(),
            address_parts=self.address(),
            relative=relative,
            relation=relation,
            inpatient_no=self.hospital_number("住院号"),
            outpatient_no=self.hospital_number("门诊号"),
            employer=self.employer(),
        )

    # -- pieces of notes ----------------------------------------------------------------------------------

    def date(self, b: _Builder, d: datetime, *, time: bool | None = None, style: str | None = None) -> None:
        rng = self.rng
        style = style or rng.choice(("cn", "cn", "iso", "slash", "dot"))
        if style == "cn":
            text = f"{d.year}年{d.month}月{d.day}日"
        elif style == "iso":
            text = f"{d:%Y-%m-%d}"
        elif style == "slash":
            text = f"{d.year}/{d.month}/{d.day}"
        else:
            text = f"{d:%Y.%m.%d}"
        if time if time is not None else rng.random() < 0.3:
            if style == "cn" and rng.random() < 0.5:
                text += rng.choice((f"{d.hour}时{d.minute:02d}分", f" {d.hour}时", f"{d.hour}点"))
            else:
                text += f" {d:%H:%M}"
        b.x(DATE, text)

    def address_text(self, b: _Builder, p: Patient) -> None:
        province, city, district, local = p.address_parts
        roll = self.rng.random()
        if roll < 0.55:
            value = province + city + district + local
        elif roll < 0.8:
            value = (city or province) + district + local
        elif roll < 0.9:
            value = district + local
        else:
            value = local
        b.x(ADDRESS, value)

    def clinical(self, b: _Builder, k: int = 2) -> None:
        for sentence in self.rng.sample(CLINICAL, k):
            b.t(sentence)

    def doctor(self) -> str:
        return self.rng.choice(self.doctors)


# -- templates --------------------------------------------------------------------------------------


def _outpatient(c: _Corpus, p: Patient, when: datetime) -> _Builder:
    rng = c.rng
    b = _Builder().t("门诊病历\n")
    if rng.random() < 0.5:
        b.t("姓名：").x(NAME, p.name).t(f"  性别：{p.sex}  年龄：{when.year - p.birth.year}岁  门诊号：")
        b.x(HOSPITAL_NO, p.outpatient_no).t("\n就诊日期：")
        c.date(b, when)
        b.t(f"  科室：{rng.choice(DEPARTMENTS)}\n")
    else:
        b.x(NAME, p.name).t(f"，{p.sex}，{when.year - p.birth.year}岁，ID号：").x(
            HOSPITAL_NO, p.outpatient_no
        )
        b.t("。")
        c.date(b, when, style="iso", time=True)
        b.t(" 初诊\n")
    b.t(f"主诉：{rng.choice(COMPLAINTS)}{rng.randrange(2, 20)}天。\n")
    b.t("现病史：患者")
    if rng.random() < 0.5:
        b.t("于")
        c.date(b, when - timedelta(days=rng.randrange(3, 20)), style="cn", time=False)
        b.t("无明显诱因出现症状，")
    b.t("曾至").x(INSTITUTION, c.institution()).t("就诊，")
    c.clinical(b, 2)
    b.t("\n既往史：")
    c.clinical(b, 1)
    b.t(f"\n初步诊断：{rng.choice(DIAGNOSES)}\n处理：")
    c.clinical(b, 1)
    b.t("1周后复诊，")
    if rng.random() < 0.5:
        b.t("如有不适请拨打").x(PHONE, c.landline()).t("咨询。")
    b.t("\n医师签名：").x(NAME, c.doctor())
    return b


def _nursing(c: _Corpus, p: Patient, when: datetime) -> _Builder:
    rng = c.rng
    b = _Builder()
    c.date(b, when, style=rng.choice(("slash", "iso", "dot")), time=True)
    b.t(f" 护理记录  床号：{rng.randrange(1, 60)}  住院号：").x(HOSPITAL_NO, p.inpatient_no).t("\n")
    b.t("患者").x(NAME, p.name).t(rng.choice(("神志清，精神可，", "诉切口疼痛，", "今日体温平稳，")))
    c.clinical(b, 1)
    b.t(f"遵医嘱予{rng.choice(('头孢呋辛1.5g', '奥美拉唑40mg', '低分子肝素4000IU'))}治疗。")
    b.t(rng.choice(("家属", f"{p.relation[1]}")) + rng.choice(("", "：")))
    b.x(NAME, p.relative).t(rng.choice(("在旁陪护", "陪同", "已知晓")))
    b.t("，留取联系电话").x(PHONE, p.mobile).t("。\n")
    if rng.random() < 0.5:
        b.t("交接班时间：")
        c.date(b, when + timedelta(hours=8), style="cn", time=True)
        b.t("。")
    b.t("责任护士：").x(NAME, c.doctor())
    if rng.random() < 0.4:
        b.t(" 护士长：").x(NAME, c.doctor())
    return b


def _consultation(c: _Corpus, p: Patient, when: datetime) -> _Builder:
    rng = c.rng
    b = _Builder().t("会诊记录\n申请科室：").t(rng.choice(DEPARTMENTS)).t("  申请医师：").x(NAME, c.doctor())
    b.t("  申请时间：")
    c.date(b, when, time=True)
    b.t("\n患者").x(NAME, p.name).t(f"，{p.sex}，{when.year - p.birth.year}岁，因“{rng.choice(DIAGNOSES)}”")
    b.t("入院，住院号").x(HOSPITAL_NO, p.inpatient_no).t("。")
    c.clinical(b, 2)
    b.t("请").x(NAME, c.doctor()).t(rng.choice(("主任", "主任医师", "副主任医师", "教授"))).t(
        "会诊。\n会诊意见："
    )
    c.clinical(b, 1)
    b.t("建议转").x(INSTITUTION, c.institution()).t("进一步诊治。\n会诊医师：").x(NAME, c.doctor())
    b.t("（").x(INSTITUTION, rng.choice(HOSPITALS)).t(f"{rng.choice(DEPARTMENTS)}）\n")
    c.date(b, when + timedelta(hours=rng.randrange(2, 20)), time=True)
    return b


def _referral(c: _Corpus, p: Patient, when: datetime) -> _Builder:
    rng = c.rng
    b = _Builder().t("转诊单\n").x(INSTITUTION, c.institution()).t("：\n    兹有患者").x(NAME, p.name)
    b.t(f"，{p.sex}，{when.year - p.birth.year}岁，")
    b.t("身份证号：" if rng.random() < 0.6 else "公民身份号码").x(ID, p.resident_id).t("，住址：")
    c.address_text(b, p)
    b.t("，因").t(rng.choice(DIAGNOSES)).t("于")
    c.date(b, when - timedelta(days=rng.randrange(5, 30)), style="cn", time=False)
    b.t("在我院住院治疗，")
    c.clinical(b, 2)
    b.t("现病情需要，转至贵院进一步治疗。\n联系人：").x(NAME, p.relative).t(f"（{p.relation[0]}），电话：")
    b.x(PHONE, p.mobile).t("\n转诊医生：").x(NAME, c.doctor()).t("  联系电话：").x(PHONE, c.landline())
    b.t("\n").x(INSTITUTION, rng.choice(HOSPITALS)).t("\n")
    c.date(b, when, style="cn", time=False)
    return b


def _imaging(c: _Corpus, p: Patient, when: datetime) -> _Builder:
    rng = c.rng
    title = rng.choice(("超声检查报告", "CT检查报告单", "MRI检查报告", "DR检查报告"))
    b = _Builder().x(INSTITUTION, rng.choice(HOSPITALS)).t(f"\n{title}\n姓名：").x(NAME, p.name)
    b.t(f"    性别：{p.sex}    年龄：{when.year - p.birth.year}岁\n")
    b.t("检查号：").x(HOSPITAL_NO, c.hospital_number("检查号")).t("    ")
    b.t(rng.choice(("住院号：", "病案号："))).x(HOSPITAL_NO, p.inpatient_no).t(
        f"    床号：{rng.randrange(1, 50)}\n"
    )
    b.t("检查日期：")
    c.date(b, when, style=rng.choice(("dot", "iso", "slash")), time=rng.random() < 0.5)
    b.t("\n检查所见：")
    b.t(rng.choice(("肝脏大小形态正常，包膜光整，实质回声均匀。", "右肺上叶见磨玻璃结节，大小约8mm。")))
    b.t("胆囊壁毛糙，厚约4mm。\n诊断意见：").t(rng.choice(DIAGNOSES)).t("，建议随访。\n")
    b.t("报告医师：").x(NAME, c.doctor()).t("    审核医师：").x(NAME, c.doctor()).t("\n报告日期：")
    c.date(b, when + timedelta(hours=2), time=False)
    return b


def _consent(c: _Corpus, p: Patient, when: datetime) -> _Builder:
    b = _Builder().t("手术知情同意书\n患者姓名：").x(NAME, p.name).t(f"  性别：{p.sex}  住院号：")
    b.x(HOSPITAL_NO, p.inpatient_no).t("\n身份证号码：").x(ID, p.resident_id)
    b.t("\n拟行手术：腹腔镜胆囊切除术。手术风险：出血、感染、胆漏、转开腹等。")
    c.clinical(b, 1)
    b.t("\n患者或被委托人签字：").x(NAME, p.relative).t(f"  与患者关系：{p.relation[0]}  联系电话：")
    b.x(PHONE, p.mobile).t("\n谈话医师：").x(NAME, c.doctor()).t("  日期：")
    c.date(b, when, style="cn", time=True)
    b.t("\n见证人：").x(NAME, c.doctor())
    return b


def _death_or_transfer(c: _Corpus, p: Patient, when: datetime) -> _Builder:
    rng = c.rng
    admit = when - timedelta(days=rng.randrange(3, 25), hours=rng.randrange(0, 12))
    if rng.random() < 0.5:
        b = _Builder().t("死亡记录\n姓名：").x(NAME, p.name).t("  住院号：").x(HOSPITAL_NO, p.inpatient_no)
        b.t("\n入院时间：")
        c.date(b, admit, style="iso", time=True)
        b.t("  死亡时间：")
        c.date(b, when, style="iso", time=True)
        b.t("\n入院情况：")
        c.clinical(b, 2)
        b.t("\n诊疗经过：入院后予积极治疗，")
        b.x(DATE, f"{when.month}月{when.day}日").t("凌晨突发呼吸心跳骤停，经抢救无效死亡。")
        b.t("死亡原因：").t(rng.choice(DIAGNOSES)).t("。\n家属").x(NAME, p.relative).t("已知晓。主治医师：")
        b.x(NAME, c.doctor())
    else:
        b = _Builder().t("转科记录\n患者").x(NAME, p.name).t(f"，{p.sex}，因{rng.choice(DIAGNOSES)}于")
        c.date(b, admit, style="cn", time=False)
        b.t(f"收入{rng.choice(DEPARTMENTS)}，")
        c.clinical(b, 2)
        b.t("经").x(NAME, c.doctor()).t("主任同意，于").x(DATE, f"{when.month}月{when.day}日")
        b.t(f"转入{rng.choice(DEPARTMENTS)}继续治疗。工作单位：").x(INSTITUTION, p.employer)
        b.t("。\n转出医师：").x(NAME, c.doctor()).t(" 转入医师：").x(NAME, c.doctor())
    return b


def _follow_up(c: _Corpus, p: Patient, when: datetime) -> _Builder:
    rng = c.rng
    b = _Builder().t("电话随访记录\n随访日期：")
    c.date(b, when, style="cn", time=rng.random() < 0.5)
    b.t("\n随访对象：")
    if rng.random() < 0.5:
        b.x(NAME, p.name).t("（患者本人）")
    else:
        b.x(NAME, p.relative).t("（患者").x(NAME, p.name).t(
            f"之{'子' if p.relation[0] == '儿子' else '家属'}）"
        )
    b.t("\n联系电话：").x(PHONE, p.mobile if rng.random() < 0.7 else p.landline).t("\n随访内容：患者于")
    c.date(b, when - timedelta(days=rng.randrange(7, 60)), style="cn", time=False)
    b.t("出院，目前")
    c.clinical(b, 1)
    b.t("嘱于").x(DATE, f"{(when + timedelta(days=14)).month}月{(when + timedelta(days=14)).day}日")
    b.t("至").x(INSTITUTION, c.institution()).t("复查。现住")
    c.address_text(b, p)
    b.t("。\n随访人：").x(NAME, c.doctor())
    return b


def _certificate(c: _Corpus, p: Patient, when: datetime) -> _Builder:
    rng = c.rng
    start = when - timedelta(days=rng.randrange(5, 20))
    b = (
        _Builder()
        .t("诊断证明书\n    兹证明")
        .x(NAME, p.name)
        .t(f"，{p.sex}，{when.year - p.birth.year}岁，身份证号")
    )
    b.x(ID, p.resident_id).t("，工作单位").x(INSTITUTION, p.employer).t("，于")
    c.date(b, start, style="cn", time=False)
    b.t("至").x(DATE, f"{when.month}月{when.day}日").t("在").x(INSTITUTION, rng.choice(HOSPITALS)).t(
        "住院治疗，"
    )
    b.t("住院号").x(HOSPITAL_NO, p.inpatient_no).t(f"。诊断：{rng.choice(DIAGNOSES)}。")
    b.t(f"建议休息{rng.randrange(1, 4)}周。\n医师：").x(NAME, c.doctor()).t("\n")
    if rng.random() < 0.5:
        b.x(DATE, f"{when.year}年{when.month}月").t("\n")
    c.date(b, when, style="cn", time=False)
    return b


def _history(c: _Corpus, p: Patient, when: datetime) -> _Builder:
    """An admission history written by an intern, with the identity block in prose."""
    rng = c.rng
    b = _Builder().t("入院记录\n    患者").x(NAME, p.name).t(f"，{p.sex}，出生日期：")
    c.date(b, datetime(p.birth.year, p.birth.month, p.birth.day), style=rng.choice(("cn", "iso")), time=False)
    b.t("，" + ("旧身份证号：" if p.old_id else "身份证：")).x(ID, p.resident_id).t("，家住")
    c.address_text(b, p)
    b.t("，手机").x(PHONE, p.mobile).t("，家庭电话").x(PHONE, p.landline).t("。")
    b.t(f"{rng.choice(DIAGNOSES)}病史").x(
        DATE, f"{when.year - rng.randrange(1, 6)}年{rng.randrange(1, 13)}月"
    )
    b.t("起，曾于").x(INSTITUTION, c.institution()).t("住院。")
    c.clinical(b, 2)
    b.t("家属").x(NAME, p.relative).t(f"（{p.relation[0]}）陪同入院，")
    b.t("病史由患者本人及家属提供，可靠。\n住院医师：").x(NAME, c.doctor()).t("  主治医师：").x(
        NAME, c.doctor()
    )
    return b


def _case_discussion(c: _Corpus, p: Patient, when: datetime) -> _Builder:
    """A difficult-case discussion: participants listed after one word, opinions quoted by name."""
    rng = c.rng
    b = _Builder().t("疑难病例讨论记录\n讨论时间：")
    c.date(b, when, style="cn", time=True)
    b.t(f"\n讨论地点：{rng.choice(DEPARTMENTS)}示教室\n主持人：").x(NAME, c.doctor()).t(
        "主任医师\n参加人员："
    )
    for i in range(rng.randrange(2, 5)):
        if i:
            b.t("、")
        b.x(NAME, c.doctor())
    b.t("\n病例摘要：患者").x(NAME, p.name).t(f"，{p.sex}，{when.year - p.birth.year}岁，")
    b.t("病案号/住院号：").x(HOSPITAL_NO, p.inpatient_no).t("，")
    c.clinical(b, 2)
    b.t("\n讨论意见：").x(NAME, c.doctor()).t("主治医师：").t("考虑感染可能性大。")
    b.x(NAME, c.doctor()).t("副主任医师：同意上述意见，")
    c.clinical(b, 1)
    b.t("由").x(NAME, c.doctor()).t("医生负责向患者").t(p.relation[0]).x(NAME, p.relative).t("交代病情，")
    b.t("其联系方式：").x(PHONE, p.mobile).t("。\n记录者：").x(NAME, c.doctor())
    return b


TEMPLATES = {
    "outpatient": _outpatient,
    "nursing": _nursing,
    "consultation": _consultation,
    "referral": _referral,
    "imaging": _imaging,
    "consent": _consent,
    "death_or_transfer": _death_or_transfer,
    "follow_up": _follow_up,
    "certificate": _certificate,
    "admission_history": _history,
    "case_discussion": _case_discussion,
}


def build_corpus(notes: int = 600, seed: int = 20240905) -> list[LabelledNote]:
    """A labelled corpus of ``notes`` notes, about three per patient, identical for the same seed."""
    corpus = _Corpus(seed)
    out: list[LabelledNote] = []
    patients: list[Patient] = []
    names = list(TEMPLATES)
    while len(out) < notes:
        if not patients or corpus.rng.random() < 0.35:
            patients.append(corpus.patient(len(patients)))
        p = corpus.rng.choice(patients[-3:])
        when = datetime(2019, 1, 1, 8) + timedelta(minutes=corpus.rng.randrange(0, 6 * 365 * 24 * 60))
        template = names[len(out) % len(names)]
        b = TEMPLATES[template](corpus, p, when)
        out.append(
            LabelledNote(
                note_id=f"N{len(out):05d}",
                template=template,
                person_key=p.key,
                text=b.text(),
                spans=tuple(b.spans),
                known={NAME: [p.name]},
            )
        )
    return out


@dataclass
class KindScore:
    """Span-level counts for one kind of identifier."""

    gold: int = 0
    found: int = 0  # gold spans fully covered by predicted spans of the same kind
    predicted: int = 0
    correct: int = 0  # predicted spans overlapping a gold span of the same kind

    @property
    def recall(self) -> float:
        return self.found / self.gold if self.gold else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 1.0


def score(
    gold: list[tuple[str, int, int]], predicted: list[tuple[str, int, int]], scores: dict[str, KindScore]
) -> list[tuple[str, str, int, int]]:
    """Add one note's counts to ``scores``; return its misses as (miss type, kind, start, end).

    A gold span is found when the predicted spans of its kind together cover every character of it (strict:
    half a name left in the text is a miss). A predicted span is correct when it overlaps a gold span of its
    kind (lenient on the edges: 家住上海市 tagged from 上 rather than 家 still removed the address).
    """
    misses: list[tuple[str, str, int, int]] = []
    for kind, start, end in gold:
        s = scores.setdefault(kind, KindScore())
        s.gold += 1
        covered = set()
        for pk, ps, pe in predicted:
            if pk == kind and ps < end and start < pe:
                covered.update(range(max(ps, start), min(pe, end)))
        if len(covered) == end - start:
            s.found += 1
        else:
            misses.append(("missed", kind, start, end))
    for kind, start, end in predicted:
        s = scores.setdefault(kind, KindScore())
        s.predicted += 1
        if any(gk == kind and gs < end and start < ge for gk, gs, ge in gold):
            s.correct += 1
        else:
            misses.append(("spurious", kind, start, end))
    return misses


def table(scores: dict[str, KindScore]) -> str:
    """The per-kind recall and precision as a plain-text table."""
    lines = [f"{'kind':<12}{'gold':>7}{'found':>7}{'recall':>8}{'pred':>7}{'correct':>8}{'precision':>10}"]
    for kind in KINDS:
        s = scores.get(kind, KindScore())
        lines.append(
            f"{kind:<12}{s.gold:>7}{s.found:>7}{s.recall:>8.4f}{s.predicted:>7}{s.correct:>8}{s.precision:>10.4f}"
        )
    return "\n".join(lines)
