#!/usr/bin/python3
"""gen_demo.py - writes Dovetail's bundled demo data set, the same bytes on every run.

    /usr/bin/python3 scripts/gen_demo.py --out DIR [--seed N] [--achievements N] [--demands N]

Writes into DIR:
  achievements.jsonl  one achievement record per line (DESIGN section 1): abstracts of university,
                      institute and innovation-centre results
  demands.jsonl       one demand record per line: SME problem statements
  clusters.tsv        named region clusters, `cluster<TAB>region_prefix`, after a '#' header line
  qrels.tsv           `demand_id<TAB>achievement_id<TAB>grade`, no header: grade 2 = same topic,
                      grade 1 = same field, other topic; same tenant only; open records only
and prints a one-line summary.

Every record is drawn from one technology topic of scripts/demo_vocab.json (a demand sometimes from
two). Records are Chinese (65%), English (25%) or Chinese with English technical terms (10%); a record
uses its own language's form of each term, so Chinese and English records of one topic share few
tokens, as in real data. About 15% of the records belong to the tenant "suzhou-park".

What this is not: real data. Institutions and companies are invented, figures are random draws inside
plausible ranges, and region codes are real administrative codes with invented occupants.
Standard library only.
"""

import argparse
import json
import math
import os
import random
import sys

SEED = 20250601
N_ACHIEVEMENTS = 4000
N_DEMANDS = 3000
LANG_SHARES = (("zh", 0.65), ("en", 0.25), ("mix", 0.10))
SECOND_TENANT = "suzhou-park"
SECOND_TENANT_SHARE = 0.15
T_FIRST = 1672531200  # 2023-01-01T00:00:00Z
T_END = 1767225600    # 2026-01-01T00:00:00Z (exclusive)
TITLE_MIN, TITLE_MAX = 8, 40
TEXT_MIN, TEXT_MAX = 80, 600

MODES = ("transfer", "license", "open_license", "joint_rd", "equity", "consulting")
MODE_NAMES = {
    "transfer": ("技术转让", "technology transfer"),
    "license": ("专利许可", "licensing"),
    "open_license": ("开放许可", "open licensing"),
    "joint_rd": ("合作开发", "joint R&D"),
    "equity": ("作价入股", "equity investment"),
    "consulting": ("技术咨询", "consulting"),
}

CLUSTERS = (
    ("yrd", ("CN.31", "CN.32", "CN.33", "CN.34")),
    ("gba", ("CN.44.01", "CN.44.03", "CN.44.04", "CN.44.06", "CN.44.07", "CN.44.12", "CN.44.13",
             "CN.44.19", "CN.44.20", "CN.81", "CN.82")),
    ("jjj", ("CN.11", "CN.12", "CN.13")),
    ("ccy", ("CN.50", "CN.51")),
)

# Topic weight multipliers of the second tenant (an industrial park strong in chips, biomedicine, software).
SECOND_TENANT_FIELD_BOOST = {"semi": 2.5, "pharma": 2.0, "soft": 2.0, "inorg": 1.5, "robot": 1.5,
                             "equip": 1.2, "battery": 1.0, "power": 0.8, "chem": 0.8, "env": 0.5,
                             "agri": 0.15}

# How much a record borrows from related topics: weights of borrowing 0, 1, 2, 3 terms; chance that
# the second problem, the second app and the second metric come from a related topic.
BORROW_TERMS = (10, 30, 35, 25)
BORROW_PROBLEM = 0.5
BORROW_APP = 0.25
BORROW_METRIC = 0.5
# Share of achievement abstracts that open with the problem they solve.
ACH_NAMES_PROBLEM = 0.45
# Share of demands that name no technique: products, symptoms and target figures only.
VAGUE_DEMANDS = 0.35

# Per kind of result: [zh title words], [en title words], [zh method words], [en method words],
# stages (zh lab, zh pilot, zh production), (en ...).
KINDS = {
    "material": (["制备技术", "及其制备方法", "材料", "改性技术"], ["material", "preparation", "technology"],
                 ["材料体系", "制备技术", "改性技术"], ["material", "preparation route", "modification technology"],
                 ("实验室样品", "百公斤级中试", "吨级生产线"),
                 ("laboratory samples", "100-kg pilot production", "a tonne-scale production line")),
    "process": (["工艺", "技术", "成套工艺"], ["process", "technology"],
                ["工艺", "成套工艺", "技术路线"], ["process", "process package", "technology"],
                ("小试工艺", "中试线", "生产线"),
                ("a bench-scale process", "a pilot line", "a production line")),
    "device": (["器件", "芯片", "关键工艺"], ["device", "chip", "process"],
               ["器件结构", "器件工艺", "芯片设计"], ["device structure", "device process", "chip design"],
               ("工程样片", "中试流片", "量产线"),
               ("engineering samples", "a pilot wafer run", "a volume production line")),
    "equipment": (["装备", "成套装备", "系统"], ["system", "equipment"],
                  ["装备", "成套装备", "系统"], ["system", "machine", "system"],
                  ("原理样机", "工程样机", "批量生产"),
                  ("a prototype", "an engineering prototype", "series production")),
    "software": (["平台", "系统", "软件"], ["platform", "system", "software"],
                 ["平台", "软件系统", "算法平台"], ["platform", "software system", "toolchain"],
                 ("原型系统", "试点部署", "商业化版本"),
                 ("a prototype system", "a pilot deployment", "a commercial release")),
    "bio": (["技术", "工艺平台", "制备技术"], ["technology", "platform", "process"],
            ["工艺平台", "制备技术", "技术"], ["process platform", "formulation technology", "technology"],
            ("实验室工艺", "中试批次", "商业化生产"),
            ("a laboratory process", "pilot batches", "commercial production")),
    "agri": (["技术", "技术模式", "集成技术"], ["technology", "practice", "package"],
             ["技术", "技术模式", "集成技术"], ["technology package", "cultivation model", "integrated technology"],
             ("小区试验", "多点示范", "大面积推广"),
             ("plot trials", "multi-site demonstrations", "large-area rollout")),
}

TAG_SENTENCES = {
    "first_set": ("相关装备已入选首台（套）重大技术装备推广应用指导目录。",
                  "The machine is listed in the catalogue of first-of-a-kind major technical equipment."),
    "first_batch": ("该材料已入选重点新材料首批次应用示范指导目录。",
                    "The material is listed in the first-batch application catalogue of key new materials."),
    "first_version": ("该软件已入选首版次软件产品名单。",
                      "The software is listed among first-version software products."),
}


class Vocab:
    """The parsed vocabulary file plus lookup tables built from it."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        self.provinces = d["provinces"]
        self.regions = d["regions"]
        self.universities = d["universities"]
        self.brand_chars = d["brand_chars"]
        self.generic = d["generic"]
        self.fields = d["fields"]
        self.topics = []
        for fi, fld in enumerate(self.fields):
            for t in fld["topics"]:
                t["field"] = fi
                self.topics.append(t)
        self.region_by_code = {r[0]: r for r in self.regions}
        self.topic_by_key = {t["key"]: t for t in self.topics}
        self.check()

    def check(self):
        for fld in self.fields:
            for t in fld["topics"]:
                code = t["code"]
                if code != fld["code"] and not code.startswith(fld["code"] + "."):
                    raise SystemExit("demo_vocab.json: topic %s code %s is not under field %s"
                                     % (t["key"], code, fld["code"]))
                if any(k not in self.topic_by_key or k == t["key"] for k in t["near"]):
                    raise SystemExit("demo_vocab.json: topic %s: bad near list %s" % (t["key"], t["near"]))
                if t["kind"] not in KINDS:
                    raise SystemExit("demo_vocab.json: topic %s has unknown kind %s" % (t["key"], t["kind"]))
                if (len(split_terms(t)[0]) < 5 or len(t["terms"]) < 8 or len(t["metrics"]) < 2
                        or min(len(t[k]) for k in ("problems", "apps", "products")) < 2):
                    raise SystemExit("demo_vocab.json: topic %s needs >= 8 terms (5 not props), 2 metrics "
                                     "and 2 each of problems, apps, products" % t["key"])
        for u in self.universities:
            if u[2] not in self.region_by_code and u[2] not in ("CN.81", "CN.82"):
                raise SystemExit("demo_vocab.json: university %s has unknown region %s" % (u[0], u[2]))


# ---------------------------------------------------------------------------------------------------
# small helpers


def exact_labels(rng, n, shares):
    """n labels with the given shares rounded to exact counts (remainder to the first), shuffled."""
    counts = [int(round(n * s)) for _, s in shares]
    counts[0] += n - sum(counts)
    out = []
    for (label, _), c in zip(shares, counts):
        out.extend([label] * c)
    rng.shuffle(out)
    return out


def wchoice(rng, items, weights):
    return rng.choices(items, weights=weights, k=1)[0]


def weighted_sample(rng, items, weights, k):
    """k distinct items, drawn without replacement with the given weights (order = draw order)."""
    items = list(items)
    weights = list(weights)
    out = []
    for _ in range(min(k, len(items))):
        i = rng.choices(range(len(items)), weights=weights, k=1)[0]
        out.append(items.pop(i))
        weights.pop(i)
    return out


def plural(n, noun, one, many):
    """'1 patent has' / '3 patents have'."""
    return "%d %s %s" % (n, noun, one) if n == 1 else "%d %ss %s" % (n, noun, many)


def cap(s):
    """Upper-cases the first letter of s when its first word is all lower case, so that words such
    as eVTOL, pH or micro-LED-like mixed forms are left alone."""
    if not s:
        return s
    first = s.split(" ", 1)[0]
    if first[:1].islower() and first[1:] == first[1:].lower():
        return s[0].upper() + s[1:]
    return s


def article(word):
    """'a' or 'an' before word, by spelling (acronyms such as SOC, LNP, MES read letter by letter)."""
    w = word.lstrip("(")
    if not w:
        return "a"
    if w[0] in "aeiouAEIOU":
        return "an"
    if len(w) > 1 and w[:2].isupper() and w[0] in "FHLMNRSX":
        return "an"
    return "a"


def fmt_num(v, dec):
    return ("%." + str(dec) + "f") % v if dec > 0 else str(int(round(v)))


def fmt_unit(v, unit, lang):
    if not unit:
        return v
    if lang != "en" or unit in ("%", "x", "‰"):
        return v + unit
    return v + " " + unit


def fmt_wan_million(wan):
    """A price in units of 10,000 CNY as CNY millions ('0.5', '1.25', '12')."""
    s = "%.2f" % (wan / 100.0)
    return s.rstrip("0").rstrip(".")


def nice_round(x):
    """Rounds a price in 10,000 CNY to what a person would write."""
    if x < 20:
        step = 1
    elif x < 100:
        step = 5
    elif x < 500:
        step = 10
    elif x < 2000:
        step = 50
    else:
        step = 100
    return max(step, int(round(x / step)) * step)


def join_zh(items):
    if len(items) == 1:
        return items[0]
    return "、".join(items[:-1]) + "或" + items[-1]


def join_en(items):
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]


# ---------------------------------------------------------------------------------------------------
# one record's words


def split_terms(topic):
    """(things, props): the topic's terms naming something one builds or applies, and those naming a
    property or phenomenon (listed in the topic's "props"), each in vocabulary order."""
    props = set(topic.get("props", []))
    return ([p for p in topic["terms"] if p[0] not in props], [p for p in topic["terms"] if p[0] in props])


class Words:
    """The words one record uses: a topic's terms in the record's language, its problems, apps, metrics.

    t[0], the main problem p[0], the products and the first metric are always the topic's own; later
    terms, the second problem, the second app and the second metric may be borrowed from a related
    topic (the topic's "near" list), as real records mention neighbouring techniques. t_own lists the
    terms of t that are the topic's own (at least two), g terms from the cross-field generic pool.
    Mixed-language records render each technical term in English with probability 0.55 (decided once
    per term, so a record is consistent with itself); everything else stays Chinese."""

    def __init__(self, rng, vocab, topic, lang, n_own, borrow):
        self.rng = rng
        self.lang = lang
        self.topic = topic
        self.field = vocab.fields[topic["field"]]
        self.mix_choice = {}
        things, props = split_terms(topic)
        near = [vocab.topic_by_key[k] for k in topic["near"]] if borrow else []
        weights = [1.0 / math.sqrt(i + 1) for i in range(len(things))]
        picked = weighted_sample(rng, things, weights, max(2, n_own))
        if near:
            for _ in range(wchoice(rng, range(len(BORROW_TERMS)), BORROW_TERMS)):
                term = rng.choice(split_terms(rng.choice(near))[0][:8])
                if term not in picked:
                    picked.insert(rng.randint(1, len(picked)), term)
        for pair in things:
            if len(picked) >= 4:
                break
            if pair not in picked:
                picked.append(pair)
        self.t = [self.render(p) for p in picked]
        self.t_own = [self.render(p) for p in picked if p in things]
        self.g = [self.render(p) for p in rng.sample(vocab.generic, wchoice(rng, [0, 1, 2], [20, 50, 30]))]
        self.q = [self.render(p) for p in rng.sample(props, min(len(props), rng.randint(0, 2)))]
        self.f = [self.render_plain(p) for p in rng.sample(self.field["terms"], 2)]

        def own_then_near(key, p_near):
            pair = rng.sample(topic[key], 2)
            if near and rng.random() < p_near:
                other = rng.choice(rng.choice(near)[key])
                if other != pair[0]:
                    pair[1] = other
            return [self.render_plain(p) for p in pair]

        self.p = own_then_near("problems", BORROW_PROBLEM)
        self.a = own_then_near("apps", BORROW_APP)
        self.prod = own_then_near("products", 0.0)
        self.metrics = rng.sample(topic["metrics"], len(topic["metrics"]))
        if near and rng.random() < BORROW_METRIC:
            self.metrics[1] = rng.choice(rng.choice(near)["metrics"])

    def render(self, pair):
        if self.lang == "zh":
            return pair[0]
        if self.lang == "en":
            return pair[1]
        key = pair[0]
        if key not in self.mix_choice:
            self.mix_choice[key] = pair[1] if self.rng.random() < 0.55 else pair[0]
        return self.mix_choice[key]

    def render_plain(self, pair):
        return pair[1] if self.lang == "en" else pair[0]

    def term(self, i):
        return self.t[i % len(self.t)]

    def slots(self):
        """(t0, t1, t2, t3) for the sentence templates: t0 and t1 are the topic's own terms (the
        sentence saying what is developed or wanted names only those); t2 and t3 are the next terms
        of t, borrowed ones included."""
        t0, t1 = self.t_own[0], self.t_own[1]
        rest = [x for x in self.t if x not in (t0, t1)] or [t0, t1]
        return t0, t1, rest[0], rest[1 % len(rest)]

    def metric_value(self, m, demand):
        lo, hi, dec = m[4], m[5], m[6]
        if demand:
            mid = (lo + hi) / 2.0
            lo, hi = (lo, mid) if m[7] in ("up", "gain") else (mid, hi)
        return fmt_num(self.rng.uniform(lo, hi), dec)

    def metric_state(self, m):
        """Achievement side: 'X达到12.5mS/cm' / 'a X of 12.5 mS/cm'."""
        v = self.metric_value(m, False)
        if self.lang == "en":
            val = fmt_unit(v, m[3], "en")
            if m[7] == "gain":
                val = "about " + val
            return "%s %s of %s" % (article(m[1]), m[1], val)
        val = fmt_unit(v, m[2], "zh")
        verb = {"up": "达到", "down": "降至", "gain": "约"}[m[7]]
        if m[7] == "down" and self.rng.random() < 0.5:
            verb = "仅为"
        return m[0] + verb + val

    def metric_requirement(self, m):
        """Demand side: 'X不低于12.5mS/cm' / 'X of at least 12.5 mS/cm'."""
        v = self.metric_value(m, True)
        if self.lang == "en":
            word = "at most" if m[7] == "down" else "at least"
            return "%s of %s %s" % (m[1], word, fmt_unit(v, m[3], "en"))
        word = {"up": "不低于", "down": "不高于", "gain": "不少于"}[m[7]]
        return m[0] + word + fmt_unit(v, m[2], "zh")


def fit_text(parts, sep):
    """Joins sentences; parts are (text, drop_order) with drop_order 0 = never dropped. Drops the
    optional ones, highest drop_order first, until the text fits TEXT_MAX."""
    parts = [p for p in parts if p[0]]
    while True:
        text = sep.join(p[0] for p in parts)
        if len(text) <= TEXT_MAX:
            return text
        worst = max(range(len(parts)), key=lambda i: (parts[i][1], i))
        if parts[worst][1] == 0:
            return text[:TEXT_MAX - 1].rstrip() + ("…" if sep == "" else ".")
        parts.pop(worst)


def fit_title(make, terms):
    """A title of TITLE_MIN..TITLE_MAX characters: make(term) draws one title form around a term;
    terms[0] is tried first, then the other terms from the shortest up."""
    best = None
    for term in [terms[0]] + sorted(terms[1:], key=len):
        for _ in range(12):
            t = make(term)
            if TITLE_MIN <= len(t) <= TITLE_MAX:
                return t
            if best is None or len(t) < len(best):
                best = t
    if len(best) > TITLE_MAX:
        best = best[:TITLE_MAX - 1].rstrip() + "…"
    while len(best) < TITLE_MIN:
        best += "技术" if any(ord(c) > 0x2e80 for c in best) else " solution"
    return best


# ---------------------------------------------------------------------------------------------------
# organisations and places


class Orgs:
    """Invented universities, institutes, centres and companies, each with a region code."""

    def __init__(self, rng, vocab):
        self.rng = rng
        self.v = vocab
        self.sme_pool = {}  # (tenant, field key, first company word) -> [(zh, en, region)]

    def region(self, tenant):
        rng = self.rng
        if tenant == SECOND_TENANT:
            if rng.random() < 0.8:
                return "CN.32.05"
            yrd = [r for r in self.v.regions if r[0].startswith(("CN.31", "CN.32", "CN.33", "CN.34"))]
            return wchoice(rng, [r[0] for r in yrd], [r[3] for r in yrd])
        return wchoice(rng, [r[0] for r in self.v.regions], [r[3] for r in self.v.regions])

    def city(self, region):
        r = self.v.region_by_code[region]
        return r[1], r[2]

    def province(self, region):
        return self.v.provinces[region.split(".")[1]]

    def institution(self, tenant, field):
        """(zh name, en name, region) of the holder of an achievement."""
        rng = self.rng
        u = rng.random()
        if u < 0.55:
            unis = self.v.universities
            weights = [x[3] for x in unis]
            if tenant == SECOND_TENANT:
                yrd = ("CN.31", "CN.32", "CN.33", "CN.34")
                weights = [w * (12 if x[2] == "CN.32.05" else 1 if x[2][:5] in yrd else 0.1)
                           for x, w in zip(unis, weights)]
            uni = wchoice(rng, unis, weights)
            dept = rng.choice(field["depts"])
            return uni[0] + dept[0], "%s, %s" % (dept[1], uni[1]), uni[2]
        region = self.region(tenant)
        if u < 0.80:
            inst = rng.choice(field["institutes"])
            czh, cen = self.city(region)
            return czh + inst[0], "%s %s" % (cen, inst[1]), region
        pzh, pen = self.province(region)
        return pzh + field["centre"][0], "%s %s" % (pen, field["centre"][1]), region

    def company(self, tenant, field, topic):
        """(zh name, en name, region) of an SME; sometimes one that already posted a demand."""
        rng = self.rng
        words = topic.get("sme", field["sme"])
        key = (tenant, field["key"], words[0][0])
        pool = self.sme_pool.setdefault(key, [])
        if pool and rng.random() < 0.25:
            return rng.choice(pool)
        region = self.region(tenant)
        czh, cen = self.city(region)
        a, b = rng.sample(self.v.brand_chars, 2)
        word = rng.choice(words)
        if rng.random() < 0.8:
            zh_sfx, en_sfx = "有限公司", "Co., Ltd."
        else:
            zh_sfx, en_sfx = "股份有限公司", "Co., Ltd."
        org = (czh + a[0] + b[0] + word[0] + zh_sfx,
               "%s %s%s %s %s" % (cen, a[1], b[1].lower(), word[1], en_sfx), region)
        pool.append(org)
        return org


# ---------------------------------------------------------------------------------------------------
# achievements


def achievement_trl(rng):
    return wchoice(rng, range(1, 10), [1, 3, 8, 14, 18, 20, 16, 12, 8])


def achievement_modes(rng, trl):
    if trl <= 4:
        w = {"joint_rd": 50, "consulting": 25, "license": 15, "transfer": 10}
    elif trl <= 6:
        w = {"license": 30, "transfer": 25, "joint_rd": 30, "equity": 10, "consulting": 5}
    else:
        w = {"transfer": 35, "license": 30, "equity": 20, "joint_rd": 10, "consulting": 5}
    k = wchoice(rng, [1, 2, 3], [45, 40, 15])
    chosen = weighted_sample(rng, list(w), list(w.values()), k)
    if rng.random() < 0.07:
        chosen.append("open_license")
    return [m for m in MODES if m in chosen]


def achievement_price(rng, trl):
    """(min, max) in 10,000 CNY; either may be None."""
    lo_hi = {1: (3, 30), 2: (3, 30), 3: (5, 50), 4: (10, 100), 5: (20, 200), 6: (30, 300),
             7: (50, 500), 8: (100, 1000), 9: (200, 2000)}[trl]
    base = nice_round(math.exp(rng.uniform(math.log(lo_hi[0]), math.log(lo_hi[1]))))
    top = nice_round(base * rng.uniform(1.2, 3.0))
    if top <= base:
        top = base
    u = rng.random()
    if u < 0.30:
        return None, None
    if u < 0.35:
        return base, None
    if u < 0.40:
        return None, top
    return base, top


def achievement_tags(rng, kind, trl):
    if trl < 7:
        return []
    if kind == "equipment" and rng.random() < 0.25:
        return ["first_set"]
    if kind == "material" and rng.random() < 0.2:
        return ["first_batch"]
    if kind == "software" and rng.random() < 0.25:
        return ["first_version"]
    return []


def verbosity(rng):
    """0 terse, 1 usual, 2 detailed: how many optional sentences a text gets."""
    return wchoice(rng, [0, 1, 2], [30, 45, 25])


def assemble(parts, sep):
    """parts: (text, drop_order, keep); keeps the parts whose keep is true, adds left-out ones (most
    important first) while the text is shorter than TEXT_MIN, then fits TEXT_MAX."""
    keep = [bool(k and t) for t, _, k in parts]
    spare = sorted((d, i) for i, (t, d, k) in enumerate(parts) if t and not keep[i])
    while spare and len(sep.join(t for (t, _, _), k in zip(parts, keep) if k)) < TEXT_MIN:
        keep[spare.pop(0)[1]] = True
    return fit_text([(t, d) for (t, d, _), k in zip(parts, keep) if k], sep)


def ach_title(rng, w):
    kind = KINDS[w.topic["kind"]]
    t1, a0 = w.t_own[1], w.a[0]
    if w.lang == "en":
        kw = rng.choice(kind[1])
        forms = [lambda t0: "%s %s" % (cap(t0), kw), lambda t0: "%s based on %s" % (cap(t0), t1),
                 lambda t0: "High-performance %s %s" % (t0, kw), lambda t0: "%s for %s" % (cap(t0), a0),
                 lambda t0: "Low-cost %s %s" % (t0, kw), lambda t0: "Scalable %s %s" % (t0, kw),
                 lambda t0: "Integrating %s with %s" % (t0, t1), lambda t0: "Novel %s %s" % (t0, kw),
                 lambda t0: "%s %s with %s" % (cap(t0), kw, t1), lambda t0: "%s %s for %s" % (cap(t0), kw, a0),
                 lambda t0: "Next-generation %s" % t0, lambda t0: "Reliable %s %s" % (t0, kw)]
    else:
        kw = rng.choice(kind[0])
        forms = [lambda t0: t0 + kw, lambda t0: "基于%s的%s%s" % (t1, t0, kw), lambda t0: "高性能%s%s" % (t0, kw),
                 lambda t0: t0 + "关键技术及产业化", lambda t0: "一种%s%s" % (t0, kw),
                 lambda t0: "%s用%s%s" % (a0, t0, kw), lambda t0: "%s与%s集成技术" % (t0, t1),
                 lambda t0: "低成本%s%s" % (t0, kw), lambda t0: "新型%s%s" % (t0, kw),
                 lambda t0: "面向%s的%s%s" % (a0, t0, kw), lambda t0: "%s%s及应用" % (t0, kw),
                 lambda t0: "%s辅助的%s%s" % (t1, t0, kw), lambda t0: "高可靠%s%s" % (t0, kw),
                 lambda t0: "%s在%s中的应用" % (t0, a0)]
    terms = [w.t_own[0]] + [x for x in w.t_own[2:]]
    return fit_title(lambda t0: rng.choice(forms)(t0), terms)


def ach_text_zh(rng, w, trl, modes, price, tags, is_breeding):
    kind = KINDS[w.topic["kind"]]
    verb = verbosity(rng)
    t = w.t
    t0, t1, t2, t3 = w.slots()
    kw = rng.choice(kind[2])
    p0, p1 = w.p
    a0, a1 = w.a
    method = rng.choice([
        "提出了一种基于%s的%s%s" % (t1, t0, kw),
        "开发了%s与%s协同优化的%s" % (t0, t1, kw),
        "研制出具有自主知识产权的%s%s" % (t0, kw),
        "构建了以%s为核心的%s%s" % (t1, t0, kw),
        "将%s与%s相结合，形成了新型%s%s" % (t1, t2, t0, kw),
    ])
    opening = rng.choice([
        "本成果针对%s领域%s的问题，%s。" % (a0, p0, method),
        "针对%s这一行业共性难题，本项目%s。" % (p0, method),
        "%s是%s领域的关键技术，但目前普遍存在%s等问题。为此，本成果%s。" % (t0, a0, p0, method),
        "本成果%s，主要解决%s中%s的问题。" % (method, a0, p0),
    ] if rng.random() < ACH_NAMES_PROBLEM else [
        "面向%s和%s对高性能%s的迫切需求，研究团队%s。" % (a0, a1, t0, method),
        "项目组经过%d年攻关，%s。" % (rng.randint(3, 12), method),
        "本项目面向%s应用，%s。" % (a0, method),
        "本成果%s。" % method,
    ])
    background = rng.choice([
        "%s是%s领域的重要发展方向。" % (w.topic["name"][0], w.field["name"][0]),
        "近年来，随着%s产业快速发展，市场对%s的需求持续增长。" % (a0, t0),
        "%s相关核心技术长期依赖国外，国产化需求迫切。" % t0,
    ])
    team = "项目团队由%d名教授（研究员）领衔，长期从事%s研究，承担国家及省部级项目%d项。" % (
        rng.randint(2, 6), w.topic["name"][0], rng.randint(3, 20))
    details = [
        "该技术采用%s，结合%s，有效解决了%s的问题。" % (t2, t3, p1),
        "核心创新在于%s与%s的一体化设计，在%s方面具有明显优势。" % (t2, t3, w.f[0]),
        "重点突破了%s、%s等关键技术。" % (t2, t3),
        "研究团队系统研究了%s的作用机制，并据此优化了%s。" % (t2, t3),
        "通过%s和%s，兼顾了性能与成本。" % (t2, t3),
    ]
    if w.q:
        details.append("研究团队系统研究了%s对%s的影响规律，并据此优化了%s。" % (t2, w.q[0], t3))
        details.append("通过优化%s，显著改善了%s。" % (t3, w.q[-1]))
    if len(t) > 4:
        details.append("同时配套开发了%s，形成了完整的技术方案。" % t[4])
    for gt in w.g:
        details.append(rng.choice(["并引入%s手段，提高了工艺稳定性。" % gt, "借助%s，缩短了研发周期。" % gt,
                                   "项目融合%s与%s，实现了关键参数的精确调控。" % (gt, t2)]))
    rng.shuffle(details)
    m0 = w.metrics[0]
    ms = [w.metric_state(m) for m in w.metrics]
    pct = rng.randint(10, 60)
    metric_forms = ["经第三方检测，%s，%s。" % (ms[0], ms[1]), "关键指标：%s；%s。" % (ms[0], ms[1]),
                    "性能达到国际先进水平，其中%s。" % ms[0],
                    "与进口同类产品相比，成本降低约%d%%，%s。" % (pct, ms[0])]
    if m0[7] != "gain":
        metric_forms.append("%s，较现有技术%s%d%%以上。" % (ms[0], "提升" if m0[7] == "up" else "降低", pct))
    metrics = rng.choice(metric_forms)
    metric3 = "此外，%s。" % ms[2] if len(ms) > 2 else ""

    ip = ""
    if rng.random() < 0.85:
        n, m = rng.randint(1, 12), rng.randint(1, 8)
        if w.topic["kind"] == "software":
            ip = "已取得软件著作权%d项" % n + rng.choice(["", "、授权发明专利%d项" % m]) + "。"
        elif is_breeding:
            ip = "已获植物新品种权%d项，审定品种%d个。" % (rng.randint(1, 4), rng.randint(1, 5))
        else:
            ip = "已获授权发明专利%d项" % n + rng.choice(
                ["", "、实用新型专利%d项" % m, "，另有%d项发明专利进入实审" % m, "，申请PCT国际专利%d项" % m]) + "。"
        if trl <= 3 and rng.random() < 0.5:
            ip = "发表SCI论文%d篇，" % rng.randint(3, 20) + ip
    lab, pilot, prod = kind[4]
    stage = {
        1: "目前处于原理验证阶段。", 2: "已完成技术方案论证和原理验证。",
        3: "已完成实验室验证，形成%s。" % lab, 4: "已完成%s验证，关键性能得到确认。" % lab,
        5: "已完成%s及模拟环境验证，正在开展%s。" % (lab, pilot), 6: "已完成%s验证，具备工程化条件。" % pilot,
        7: "已在%d家企业开展示范应用，运行稳定。" % rng.randint(2, 12),
        8: "已实现%s，开始小批量供货。" % prod,
        9: "已实现规模化应用，累计实现销售收入%d万元。" % nice_round(rng.uniform(500, 20000)),
    }[trl]
    benefit = "经测算，该技术可使企业生产成本降低%d%%以上，预计年新增产值%d万元。" % (
        rng.randint(8, 35), nice_round(rng.uniform(200, 8000)))
    award = "成果获省部级科学技术进步奖%s等奖。" % rng.choice("一二三")
    app = rng.choice(["可应用于%s、%s等领域。" % (a0, a1), "成果适用于%s，也可推广至%s。" % (a0, a1),
                      "主要面向%s和%s市场。" % (a0, a1)])
    mode_words = join_zh([MODE_NAMES[m][0] for m in modes])
    lo, hi = price
    if lo is not None and hi is not None:
        price_s = rng.choice(["，意向价格%d-%d万元" % (lo, hi), "，参考价格%d万元至%d万元" % (lo, hi)])
    elif lo is not None:
        price_s = "，价格%d万元起" % lo
    elif hi is not None:
        price_s = "，价格不超过%d万元" % hi
    else:
        price_s = rng.choice(["", "，价格面议"])
    coop = rng.choice(["拟以%s方式进行转化%s。" % (mode_words, price_s),
                       "欢迎相关企业以%s等方式开展合作%s。" % (mode_words, price_s)])
    extra = ""
    if "open_license" in modes and rng.random() < 0.6:
        extra = "相关专利已纳入开放许可，许可使用费标准公开。"
    tag_s = "".join(TAG_SENTENCES[x][0] for x in tags)
    n_details = [0, rng.randint(0, 1), rng.randint(1, 3)][verb]
    ip_stage = [(ip, 3, verb >= 1 or rng.random() < 0.4), (stage, 1, True)]
    if rng.random() < 0.3:
        ip_stage.reverse()
    parts = ([(background, 4, verb == 2 or (verb == 1 and rng.random() < 0.3)), (opening, 0, True),
              (team, 8, verb == 2 and rng.random() < 0.6)]
             + [(d, 5 + i, True) for i, d in enumerate(details[:n_details])]
             + [(metrics, 2, True), (metric3, 3, verb == 2 and rng.random() < 0.7)] + ip_stage
             + [(benefit, 8, verb == 2 and rng.random() < 0.5), (award, 9, verb == 2 and rng.random() < 0.3),
                (app, 4, verb >= 1 and rng.random() < 0.75), (coop, 6, verb >= 1 or rng.random() < 0.5),
                (extra, 7, True), (tag_s, 1, True)])
    return assemble(parts, "")


def ach_text_en(rng, w, trl, modes, price, tags, is_breeding):
    kind = KINDS[w.topic["kind"]]
    verb = verbosity(rng)
    t = w.t
    t0, t1, t2, t3 = w.slots()
    kw = rng.choice(kind[3])
    p0, p1 = w.p
    a0, a1 = w.a
    method = rng.choice([
        "We developed %s %s %s based on %s." % (article(t0), t0, kw, t1),
        "The team proposes a new %s %s that combines %s with %s." % (t0, kw, t1, t2),
        "A proprietary %s %s built around %s has been developed." % (t0, kw, t1),
        "By combining %s and %s, we obtained a novel %s %s." % (t1, t2, t0, kw),
    ])
    opening = rng.choice([
        "This work addresses %s in %s. %s" % (p0, a0, method),
        "In %s, the industry struggles with %s. %s" % (a0, p0, method),
        "Targeting %s and %s, this project tackles %s. %s" % (a0, a1, p0, method),
    ] if rng.random() < ACH_NAMES_PROBLEM else [
        method,
        "This project targets %s and %s. %s" % (a0, a1, method),
        "After %d years of work, %s" % (rng.randint(3, 12), method[0].lower() + method[1:]
                                        if method.startswith(("We ", "The ", "By ")) else method),
    ])
    background = rng.choice([
        "%s is a key direction in %s." % (cap(w.topic["name"][1]), w.field["name"][1]),
        "Demand for %s is growing quickly with the expansion of %s." % (t0, a0),
        "Core %s technology has long been imported, and domestic alternatives are urgently needed." % t0,
    ])
    team = "The team of %d senior researchers has worked on %s for over %d years." % (
        rng.randint(2, 6), w.topic["name"][1], rng.randint(5, 20))
    details = [
        "It uses %s together with %s, which resolves %s." % (t2, t3, p1),
        "Key innovations include %s and %s." % (t2, t3),
        "The mechanism of %s was studied systematically and used to optimise %s." % (t2, t3),
        "Combining %s and %s balances performance and cost." % (t2, t3),
    ]
    if w.q:
        details.append("The effect of %s on %s was studied systematically and used to optimise %s."
                       % (t2, w.q[0], t3))
        details.append("Optimising %s markedly improves %s." % (t3, w.q[-1]))
    if len(t) > 4:
        details.append("A matching %s completes the solution." % t[4])
    for gt in w.g:
        details.append(rng.choice(["%s improves process stability." % cap(gt),
                                   "%s shortens the development cycle." % cap(gt),
                                   "Combining %s with %s gives precise control of key parameters." % (gt, t2)]))
    rng.shuffle(details)
    m0 = w.metrics[0]
    ms = [w.metric_state(m) for m in w.metrics]
    pct = rng.randint(10, 60)
    metric_forms = ["Third-party tests show %s and %s." % (ms[0], ms[1]),
                    "Key figures: %s; %s." % (ms[0], ms[1]),
                    "Compared with imported products, cost is about %d%% lower, with %s." % (pct, ms[0])]
    if m0[7] != "gain":
        metric_forms.append("It achieves %s, %d%% better than current practice." % (ms[0], pct))
    metrics = rng.choice(metric_forms)
    metric3 = "Tests also show %s." % ms[2] if len(ms) > 2 else ""
    ip = ""
    if rng.random() < 0.85:
        n, m = rng.randint(1, 12), rng.randint(1, 8)
        if w.topic["kind"] == "software":
            ip = "%s been registered." % plural(n, "software copyright", "has", "have")
        elif is_breeding:
            ip = "%s been granted." % plural(rng.randint(1, 4), "plant variety right", "has", "have")
        else:
            ip = ("%s been granted" % plural(n, "Chinese invention patent", "has", "have")
                  + rng.choice(["", " and %d PCT applications filed" % m, ", with %d more under examination" % m])
                  + ".")
    lab, pilot, prod = kind[5]
    stage = {
        1: "The work is at proof-of-concept stage.", 2: "The concept has been validated in principle.",
        3: "Laboratory validation is complete, with %s." % lab,
        4: "Validation with %s is complete and key properties are confirmed." % lab,
        5: "Validation with %s in a simulated environment is complete; %s is under way." % (lab, pilot),
        6: "%s has been completed and the technology is ready for engineering." % cap(pilot),
        7: "Demonstrations are running at %d companies." % rng.randint(2, 12),
        8: "The technology has reached %s, with first deliveries to customers." % prod,
        9: "The technology is in large-scale use, with cumulative sales of CNY %s million."
           % fmt_wan_million(nice_round(rng.uniform(500, 20000))),
    }[trl]
    benefit = "Estimated savings exceed %d%% of production cost." % rng.randint(8, 35)
    award = "The work received a provincial science and technology award."
    app = rng.choice(["Applications include %s and %s." % (a0, a1),
                      "It is suited to %s and can be extended to %s." % (a0, a1)])
    mode_words = join_en([MODE_NAMES[m][1] for m in modes])
    lo, hi = price
    if lo is not None and hi is not None:
        price_s = "; indicative price CNY %s-%s million" % (fmt_wan_million(lo), fmt_wan_million(hi))
    elif lo is not None:
        price_s = "; price from CNY %s million" % fmt_wan_million(lo)
    elif hi is not None:
        price_s = "; price up to CNY %s million" % fmt_wan_million(hi)
    else:
        price_s = rng.choice(["", "; price negotiable"])
    coop = rng.choice(["Available for %s%s." % (mode_words, price_s),
                       "We welcome industrial partners for %s%s." % (mode_words, price_s)])
    extra = ""
    if "open_license" in modes and rng.random() < 0.6:
        extra = "The patents are offered under an open licence with published fees."
    tag_s = " ".join(TAG_SENTENCES[x][1] for x in tags)
    n_details = [0, rng.randint(0, 1), rng.randint(1, 3)][verb]
    ip_stage = [(ip, 3, verb >= 1 or rng.random() < 0.4), (stage, 1, True)]
    if rng.random() < 0.3:
        ip_stage.reverse()
    parts = ([(background, 4, verb == 2 or (verb == 1 and rng.random() < 0.3)), (opening, 0, True),
              (team, 8, verb == 2 and rng.random() < 0.6)]
             + [(d, 5 + i, True) for i, d in enumerate(details[:n_details])]
             + [(metrics, 2, True), (metric3, 3, verb == 2 and rng.random() < 0.7)] + ip_stage
             + [(benefit, 8, verb == 2 and rng.random() < 0.5), (award, 9, verb == 2 and rng.random() < 0.3),
                (app, 4, verb >= 1 and rng.random() < 0.75), (coop, 6, verb >= 1 or rng.random() < 0.5),
                (extra, 7, True), (tag_s, 1, True)])
    return assemble(parts, " ")


# ---------------------------------------------------------------------------------------------------
# demands


def demand_trl(rng):
    return wchoice(rng, range(1, 10), [0, 1, 3, 8, 15, 22, 24, 17, 10])


def demand_modes(rng):
    w = {"joint_rd": 35, "transfer": 30, "license": 20, "consulting": 15, "equity": 3}
    k = wchoice(rng, [1, 2], [60, 40])
    chosen = weighted_sample(rng, list(w), list(w.values()), k)
    return [m for m in MODES if m in chosen]


def demand_price(rng):
    hi = nice_round(math.exp(rng.uniform(math.log(15), math.log(1000))))
    lo = nice_round(hi * rng.uniform(0.3, 0.7))
    if lo >= hi:
        lo = max(1, hi // 2)
    u = rng.random()
    if u < 0.25:
        return None, None
    if u < 0.35:
        return None, hi
    if u < 0.40:
        return lo, None
    return lo, hi


def demand_tags(rng):
    tags = []
    u = rng.random()
    if u < 0.04:
        tags = ["srdi", "little_giant"]
    elif u < 0.16:
        tags = ["srdi"]
    if rng.random() < 0.05:
        tags.append("challenge")
    return tags


def dem_title(rng, w, challenge, vague):
    prod, a0, t1 = w.prod[0], w.a[0], w.t_own[1]
    m = w.metrics[0]
    if vague and not challenge:
        if w.lang == "en":
            forms = [lambda p: "%s process upgrade" % cap(p), lambda p: "Cost reduction for %s" % p,
                     lambda p: "Quality upgrade for %s" % p, lambda p: "Technical support for %s" % p]
        else:
            forms = [lambda p: "%s生产工艺改进" % p, lambda p: "%s质量提升技术合作" % p,
                     lambda p: "%s降本增效技术需求" % p, lambda p: "%s用%s技术升级" % (a0, p)]
        return fit_title(lambda p: rng.choice(forms)(p), w.prod[:1] + w.t_own)
    if w.lang == "en":
        if challenge:
            forms = [lambda t0: "Open call: %s" % t0, lambda t0: "Challenge: %s breakthrough" % t0]
        else:
            forms = [lambda t0: "Seeking %s technology" % t0, lambda t0: "Need %s for %s" % (t0, prod),
                     lambda t0: "%s process improvement" % cap(t0), lambda t0: "Call for %s solutions" % t0,
                     lambda t0: "Partner wanted: %s" % t0, lambda t0: "%s for %s" % (cap(t0), a0),
                     lambda t0: "Licensing %s patents" % t0, lambda t0: "%s retrofit for %s" % (cap(t0), prod),
                     lambda t0: "Co-development of %s" % t0, lambda t0: "%s and %s support" % (cap(t0), t1)]
            if m[7] != "gain":
                forms.append(lambda t0: "%s %s for %s" % ("Better" if m[7] == "up" else "Lower", m[1], prod))
    else:
        if challenge:
            forms = [lambda t0: "揭榜挂帅：%s关键技术攻关" % t0, lambda t0: "揭榜挂帅：%s技术难题" % t0,
                     lambda t0: "%s“揭榜挂帅”项目" % t0]
        else:
            forms = [lambda t0: "寻求%s技术" % t0, lambda t0: "%s工艺优化合作" % t0,
                     lambda t0: "征集%s解决方案" % t0, lambda t0: "关于%s的技术合作需求" % t0,
                     lambda t0: "%s生产中%s技术难题" % (prod, t0), lambda t0: "%s技术引进" % t0,
                     lambda t0: "%s用%s技术需求" % (a0, t0), lambda t0: "%s%s升级改造" % (prod, t0),
                     lambda t0: "%s国产化替代需求" % t0, lambda t0: "%s与%s技术合作" % (t0, t1),
                     lambda t0: "求购%s相关专利" % t0, lambda t0: "%s联合攻关需求" % t0]
            if m[7] != "gain":
                forms.append(lambda t0: "%s%s%s技术需求" % (prod, m[0], "提升" if m[7] == "up" else "降低"))
    return fit_title(lambda t0: rng.choice(forms)(t0), w.t_own)


def dem_text_zh(rng, w, w2, trl, modes, price, tags, region, vocab, vague):
    verb = verbosity(rng)
    t0, t1, t2, t3 = w.slots()
    p0 = w.p[0]
    a0, a1 = w.a
    prod0, prod1 = w.prod
    m0, m1 = w.metrics[0], w.metrics[1]
    if "little_giant" in tags:
        intro = "本企业为国家级专精特新“小巨人”企业，主要产品为%s和%s。" % (prod0, prod1)
    elif "srdi" in tags:
        intro = "公司系省级专精特新中小企业，主要从事%s的研发与生产。" % prod0
    else:
        intro = rng.choice([
            "我公司主要生产%s和%s，产品主要应用于%s领域。" % (prod0, prod1, a0),
            "我司是一家专注于%s研发与生产的高新技术企业，年产值约%s亿元。" % (prod0, fmt_num(rng.uniform(0.3, 20), 1)),
            "公司成立于%d年，主营%s，现有员工%d人。" % (rng.randint(1995, 2021), prod0, rng.randint(30, 1500)),
            "我们是一家%s生产企业，主要客户来自%s行业。" % (prod0, a0),
        ])
    background = "近年来，%s市场竞争加剧，客户对产品质量和成本的要求越来越高。" % a0
    problem = rng.choice([
        "目前在%s生产中存在%s的问题，" % (prod0, p0),
        "现有产线存在%s的问题，" % p0,
        ("随着%s领域客户要求不断提高，现有方案已难以满足，" % a0 if vague else
         "随着%s领域客户对%s的要求不断提高，现有%s方案已难以满足，" % (a0, m0[0], t0)),
        "目前公司产品面临%s，" % p0,
    ])
    impact = rng.choice([
        "产品良品率仅%d%%左右。" % rng.randint(70, 93),
        "单位产品能耗偏高，成本压力大。",
        "每年因此造成直接损失约%d万元。" % nice_round(rng.uniform(30, 800)),
        "制约了产品进入%s市场。" % a1,
        "客户投诉较多。",
    ])
    tried = rng.choice(["公司曾尝试通过调整工艺参数、更换原材料等方式改进，但效果有限。",
                        "公司已引入%s，但未能从根本上解决问题。" % (w.g[0] if w.g else "自动化设备"),
                        "公司已自行开展过%d轮试验，未能从根本上解决问题。" % rng.randint(2, 8)])
    want = rng.choice([
        "希望寻求%s相关技术合作。" % t1,
        "拟引进成熟的%s技术或成套工艺。" % t1,
        "希望与高校或科研院所联合开发%s技术，解决上述问题。" % t1,
        "现面向社会征集基于%s的解决方案。" % t1,
        "希望找到可在现有产线上改造实施的%s方案。" % t1,
    ])
    if vague:
        want = rng.choice(["希望寻求能够解决上述问题的技术或合作团队。", "欢迎高校、科研院所提供成熟的解决方案。",
                           "希望与相关领域专家团队合作，共同攻关。", "希望引进成熟技术，对现有产线进行升级改造。"])
    r0, r1 = w.metric_requirement(m0), w.metric_requirement(m1)
    req = rng.choice(["技术指标要求：%s。" % r0, "要求%s，%s。" % (r0, r1)])
    if vague:
        req = "目标：良品率提升至%d%%以上，单位成本下降%d%%。" % (rng.randint(93, 99), rng.randint(10, 30))
    prefer = "优先考虑采用%s或%s的方案。" % (t2, t3) if rng.random() < 0.5 and not vague else ""
    if w.g and rng.random() < 0.5:
        prefer += "欢迎结合%s的创新方案。" % w.g[-1]
    if w.q and rng.random() < 0.5:
        prefer += "需重点改善%s。" % "和".join(w.q)
    trl_s = ("可接受实验室阶段成果，双方共同推进中试。" if trl <= 3 else
             "技术至少完成小试验证。" if trl == 4 else
             "技术需完成小试并具备放大条件。" if trl == 5 else
             "技术需已完成中试验证。" if trl == 6 else
             "要求有工程化示范应用案例。" if trl == 7 else
             "要求技术成熟、已有产业化应用。")
    outcome = rng.choice(["希望在%d个月内完成技术验证并导入量产。" % rng.randint(6, 24),
                          "期望合作后产品综合成本下降%d%%以上。" % rng.randint(10, 30)])
    conditions = rng.choice(["公司可提供中试场地、试验设备及配套资金。",
                             "公司设有省级企业技术中心，可安排%d名工程师参与联合攻关。" % rng.randint(3, 15)])
    lo, hi = price
    if lo is not None and hi is not None:
        budget = rng.choice(["预算%d-%d万元。" % (lo, hi), "项目预算%d万至%d万元。" % (lo, hi)])
    elif hi is not None:
        budget = "预算不超过%d万元。" % hi
    elif lo is not None:
        budget = "预算%d万元起，可根据效果追加。" % lo
    else:
        budget = rng.choice(["费用面议。", "预算视技术成熟度面议。", ""])
    mode_words = join_zh([MODE_NAMES[m][0] for m in modes])
    mode_s = rng.choice(["合作方式：%s。" % mode_words, "可接受%s等合作方式。" % mode_words])
    second = ""
    if w2 is not None:
        s0, s1 = w2.term(0), w2.term(1)
        second = rng.choice(["此外，公司在%s方面也有技术需求，希望一并对接。" % s0,
                             "项目同时涉及%s与%s，欢迎具备相关经验的团队联系。" % (s0, s1)])
    challenge = ""
    if "challenge" in tags:
        challenge = "本需求列入%d年度%s“揭榜挂帅”技术攻关榜单。" % (rng.randint(2023, 2025),
                                                                   vocab.provinces[region.split(".")[1]][0])
    parts = [(challenge, 0, True), (intro, 5, True), (background, 8, verb == 2 and rng.random() < 0.5),
             (problem + impact, 0, True), (tried, 8, verb == 2 and rng.random() < 0.6), (want, 0, True),
             (second, 0, True), (req, 3, verb >= 1 and rng.random() < 0.8), (prefer, 6, verb >= 1),
             (trl_s, 4, verb >= 1 and rng.random() < 0.7), (outcome, 7, verb == 2 and rng.random() < 0.6),
             (conditions, 7, verb == 2 and rng.random() < 0.5), (budget, 2, True),
             (mode_s, 7, verb >= 1 or rng.random() < 0.5)]
    return assemble(parts, "")


def dem_text_en(rng, w, w2, trl, modes, price, tags, region, vocab, vague):
    verb = verbosity(rng)
    t0, t1, t2, t3 = w.slots()
    p0 = w.p[0]
    a0, a1 = w.a
    prod0, prod1 = w.prod
    m0, m1 = w.metrics[0], w.metrics[1]
    if "little_giant" in tags:
        intro = "We are a national 'Little Giant' specialised SME producing %s and %s." % (prod0, prod1)
    elif "srdi" in tags:
        intro = "We are a provincial specialised and innovative SME producing %s." % prod0
    else:
        intro = rng.choice([
            "We manufacture %s and %s, mainly for customers in %s." % (prod0, prod1, a0),
            "We are a high-tech company specialising in %s, with annual sales of about CNY %d million."
            % (prod0, rng.randint(30, 2000)),
            "Founded in %d, our company makes %s and employs %d people."
            % (rng.randint(1995, 2021), prod0, rng.randint(30, 1500)),
        ])
    background = "Competition in %s is pushing customers to demand better quality at lower cost." % a0
    problem = rng.choice([
        "Our %s production suffers from %s" % (prod0, p0),
        "Our current line suffers from %s" % p0,
        ("As customers in %s raise their requirements, our current solution falls short" % a0 if vague else
         "As customers in %s ask for a better %s, our current %s solution falls short" % (a0, m0[1], t0)),
        "We are facing %s" % p0,
    ])
    impact = rng.choice([
        ", and yield is only about %d%%." % rng.randint(70, 93),
        ", which keeps energy use and cost high.",
        ", costing us about CNY %s million a year." % fmt_wan_million(nice_round(rng.uniform(30, 800))),
        ", which keeps us out of the %s market." % a1,
        ".",
    ])
    tried = rng.choice(["Adjusting process parameters and raw materials has had limited effect.",
                        "We have introduced %s, but the root cause remains." % (w.g[0] if w.g else "automation"),
                        "%d rounds of in-house trials have not solved the problem." % rng.randint(2, 8)])
    want = rng.choice([
        "We are looking for %s technology." % t1,
        "We would like to license a proven %s process." % t1,
        "We seek a university or institute partner to co-develop %s technology." % t1,
        "We invite proposals based on %s." % t1,
        "We need %s %s solution that can be retrofitted to existing lines." % (article(t1), t1),
    ])
    if vague:
        want = rng.choice(["We are looking for a technology or team that can solve this.",
                           "Universities and institutes with proven solutions are welcome to contact us.",
                           "We would like to work with experts in the field on this problem.",
                           "We want to upgrade our existing line with a proven technology."])
    r0, r1 = w.metric_requirement(m0), w.metric_requirement(m1)
    req = rng.choice(["Requirement: %s." % r0, "Requirements: %s; %s." % (r0, r1)])
    if vague:
        req = "Target: yield above %d%% and unit cost down %d%%." % (rng.randint(93, 99), rng.randint(10, 30))
    prefer = "Solutions using %s or %s are preferred." % (t2, t3) if rng.random() < 0.5 and not vague else ""
    if w.g and rng.random() < 0.5:
        prefer = (prefer + " " if prefer else "") + "Ideas that use %s are welcome." % w.g[-1]
    if w.q and rng.random() < 0.5:
        prefer = (prefer + " " if prefer else "") + "%s must improve." % cap(" and ".join(w.q))
    trl_s = ("Laboratory-stage results are acceptable; we will co-fund the pilot." if trl <= 3 else
             "The technology should be validated at bench scale." if trl == 4 else
             "Bench-scale validation and a clear scale-up path are required." if trl == 5 else
             "Pilot-scale validation is required." if trl == 6 else
             "A working industrial demonstration is required." if trl == 7 else
             "We need a mature technology already in industrial use.")
    outcome = rng.choice(["We hope to complete validation within %d months." % rng.randint(6, 24),
                          "We expect overall product cost to fall by at least %d%%." % rng.randint(10, 30)])
    conditions = rng.choice(["We can provide a pilot site, test equipment and matching funds.",
                             "Our enterprise technology centre can assign %d engineers to the project."
                             % rng.randint(3, 15)])
    lo, hi = price
    if lo is not None and hi is not None:
        budget = "Budget: CNY %s-%s million." % (fmt_wan_million(lo), fmt_wan_million(hi))
    elif hi is not None:
        budget = "Budget up to CNY %s million." % fmt_wan_million(hi)
    elif lo is not None:
        budget = "Budget from CNY %s million, more if results are good." % fmt_wan_million(lo)
    else:
        budget = rng.choice(["Budget negotiable.", ""])
    mode_s = "Preferred cooperation: %s." % join_en([MODE_NAMES[m][1] for m in modes])
    second = ""
    if w2 is not None:
        s0, s1 = w2.term(0), w2.term(1)
        second = rng.choice(["We also need support on %s." % s0,
                             "The project also involves %s and %s." % (s0, s1)])
    challenge = ""
    if "challenge" in tags:
        challenge = "This is an open-call ('unveiling the list') challenge of %s for %d." % (
            vocab.provinces[region.split(".")[1]][1], rng.randint(2023, 2025))
    parts = [(challenge, 0, True), (intro, 5, True), (background, 8, verb == 2 and rng.random() < 0.5),
             (cap(problem) + impact, 0, True), (tried, 8, verb == 2 and rng.random() < 0.6), (want, 0, True),
             (second, 0, True), (req, 3, verb >= 1 and rng.random() < 0.8), (prefer, 6, verb >= 1),
             (trl_s, 4, verb >= 1 and rng.random() < 0.7), (outcome, 7, verb == 2 and rng.random() < 0.6),
             (conditions, 7, verb == 2 and rng.random() < 0.5), (budget, 2, True),
             (mode_s, 7, verb >= 1 or rng.random() < 0.5)]
    return assemble(parts, " ")


# ---------------------------------------------------------------------------------------------------
# assembly


def keywords(rng, w, lo, hi):
    if rng.random() < 0.04:
        return []
    k = rng.randint(lo, hi)
    out = []
    for term in w.t[:k] + w.q[:1] + w.g[:1] + w.f[:1]:
        if term not in out:
            out.append(term)
    return out[:max(lo, k)]


def topic_weights(rng, vocab):
    base = [rng.uniform(0.6, 1.4) for _ in vocab.topics]
    second = [b * SECOND_TENANT_FIELD_BOOST.get(vocab.fields[t["field"]]["key"], 1.0)
              for b, t in zip(base, vocab.topics)]
    return {"public": base, SECOND_TENANT: second}


def make_record(rid, side, tenant, title, text, kw, org, field_code, region, trl, modes, price, tags,
                status, updated_at):
    r = {"id": rid, "side": side, "tenant": tenant, "title": title, "text": text, "keywords": kw,
         "org": org, "field": field_code, "region": region, "trl": trl, "modes": modes}
    if price[0] is not None:
        r["price_min"] = price[0] * 10000
    if price[1] is not None:
        r["price_max"] = price[1] * 10000
    if tags:
        r["tags"] = tags
    r["status"] = status
    r["updated_at"] = updated_at
    return r


def generate(seed, n_ach, n_dem, vocab):
    rng = random.Random(seed)
    orgs = Orgs(rng, vocab)
    tw = topic_weights(rng, vocab)
    topic_idx = list(range(len(vocab.topics)))

    achievements, ach_meta = [], []
    langs = exact_labels(rng, n_ach, LANG_SHARES)
    tenant_shares = (("public", 1 - SECOND_TENANT_SHARE), (SECOND_TENANT, SECOND_TENANT_SHARE))
    tenants = exact_labels(rng, n_ach, tenant_shares)
    seq = {"public": 0, SECOND_TENANT: 0}
    for i in range(n_ach):
        lang, tenant = langs[i], tenants[i]
        ti = wchoice(rng, topic_idx, tw[tenant])
        topic = vocab.topics[ti]
        field = vocab.fields[topic["field"]]
        w = Words(rng, vocab, topic, lang, rng.randint(2, 4), True)
        trl = achievement_trl(rng)
        modes = achievement_modes(rng, trl)
        price = achievement_price(rng, trl)
        tags = achievement_tags(rng, topic["kind"], trl)
        org_zh, org_en, region = orgs.institution(tenant, field)
        breeding = topic["key"] == "ag_br"
        title = ach_title(rng, w)
        if lang == "en":
            text = ach_text_en(rng, w, trl, modes, price, tags, breeding)
        else:
            text = ach_text_zh(rng, w, trl, modes, price, tags, breeding)
        seq[tenant] += 1
        rid = ("ach-%05d" % seq[tenant]) if tenant == "public" else ("szp-ach-%04d" % seq[tenant])
        status = "closed" if rng.random() < 0.08 else "open"
        rec = make_record(rid, "achievement", tenant, title, text, keywords(rng, w, 3, 8),
                          org_en if lang == "en" else org_zh, topic["code"], region, trl, modes, price, tags,
                          status, rng.randrange(T_FIRST, T_END))
        achievements.append(rec)
        ach_meta.append({"lang": lang, "topic": ti, "field": topic["field"]})

    demands, dem_meta = [], []
    langs = exact_labels(rng, n_dem, LANG_SHARES)
    tenants = exact_labels(rng, n_dem, tenant_shares)
    seq = {"public": 0, SECOND_TENANT: 0}
    for i in range(n_dem):
        lang, tenant = langs[i], tenants[i]
        ti = wchoice(rng, topic_idx, tw[tenant])
        topic = vocab.topics[ti]
        field = vocab.fields[topic["field"]]
        w = Words(rng, vocab, topic, lang, rng.randint(1, 3), True)
        w2, t2i = None, None
        if rng.random() < 0.2:
            if rng.random() < 0.5:
                cands = [vocab.topics.index(t) for t in field["topics"] if t is not topic]
            else:
                cands = [j for j in topic_idx if vocab.topics[j]["field"] != topic["field"]]
            t2i = rng.choice(cands)
            w2 = Words(rng, vocab, vocab.topics[t2i], lang, 2, False)
        trl = demand_trl(rng)
        modes = demand_modes(rng)
        price = demand_price(rng)
        tags = demand_tags(rng)
        org_zh, org_en, region = orgs.company(tenant, field, topic)
        vague = rng.random() < VAGUE_DEMANDS
        title = dem_title(rng, w, "challenge" in tags, vague)
        if lang == "en":
            text = dem_text_en(rng, w, w2, trl, modes, price, tags, region, vocab, vague)
        else:
            text = dem_text_zh(rng, w, w2, trl, modes, price, tags, region, vocab, vague)
        seq[tenant] += 1
        rid = ("dem-%05d" % seq[tenant]) if tenant == "public" else ("szp-dem-%04d" % seq[tenant])
        status = "closed" if rng.random() < 0.10 else "open"
        kw = keywords(rng, w, 2, 6)
        if vague:
            kw = [x for x in [w.prod[0], w.a[0]] + w.g[:1] if rng.random() < 0.8]
        if w2 is not None and kw:
            kw.append(w2.term(0))
        rec = make_record(rid, "demand", tenant, title, text, kw, org_en if lang == "en" else org_zh,
                          topic["code"], region, trl, modes, price, tags, status,
                          rng.randrange(T_FIRST, T_END))
        demands.append(rec)
        topics = [ti] if t2i is None else [ti, t2i]
        dem_meta.append({"lang": lang, "topics": topics, "vague": vague})
    return achievements, ach_meta, demands, dem_meta


def build_qrels(vocab, achievements, ach_meta, demands, dem_meta):
    """Lines 'demand<TAB>achievement<TAB>grade' for open demands x open achievements of one tenant."""
    by_topic, by_field = {}, {}
    for rec, meta in zip(achievements, ach_meta):
        if rec["status"] != "open":
            continue
        by_topic.setdefault((rec["tenant"], meta["topic"]), []).append(rec["id"])
        by_field.setdefault((rec["tenant"], meta["field"]), []).append((meta["topic"], rec["id"]))
    lines, n2, n1 = [], 0, 0
    for rec, meta in zip(demands, dem_meta):
        if rec["status"] != "open":
            continue
        tenant, topics = rec["tenant"], meta["topics"]
        grade2 = []
        for ti in topics:
            grade2.extend(by_topic.get((tenant, ti), []))
        grade2 = sorted(set(grade2))
        fields = []
        for ti in topics:
            fi = vocab.topics[ti]["field"]
            if fi not in fields:
                fields.append(fi)
        grade1 = sorted(set(aid for fi in fields for tj, aid in by_field.get((tenant, fi), [])
                            if tj not in topics))
        lines.extend("%s\t%s\t2\n" % (rec["id"], a) for a in grade2)
        lines.extend("%s\t%s\t1\n" % (rec["id"], a) for a in grade1)
        n2 += len(grade2)
        n1 += len(grade1)
    return lines, n2, n1


def check(vocab, achievements, demands):
    """Invariants of the output; raises SystemExit naming the record that breaks one."""
    seen = set()
    field_codes = [f["code"] for f in vocab.fields]
    for rec in achievements + demands:
        key = (rec["tenant"], rec["side"], rec["id"])
        if key in seen:
            raise SystemExit("gen_demo: duplicate id %s" % rec["id"])
        seen.add(key)
        if not any(rec["field"] == c or rec["field"].startswith(c + ".") for c in field_codes):
            raise SystemExit("gen_demo: %s: field %s outside the vocabulary" % (rec["id"], rec["field"]))
        if not TITLE_MIN <= len(rec["title"]) <= TITLE_MAX:
            raise SystemExit("gen_demo: %s: title of %d characters: %s"
                             % (rec["id"], len(rec["title"]), rec["title"]))
        if not TEXT_MIN <= len(rec["text"]) <= TEXT_MAX:
            raise SystemExit("gen_demo: %s: text length %d" % (rec["id"], len(rec["text"])))
        if "price_min" in rec and "price_max" in rec and rec["price_min"] > rec["price_max"]:
            raise SystemExit("gen_demo: %s: price_min > price_max" % rec["id"])
        if not 1 <= rec["trl"] <= 9 or not rec["modes"]:
            raise SystemExit("gen_demo: %s: bad trl or modes" % rec["id"])


def write_lines(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def main(argv):
    ap = argparse.ArgumentParser(description="Write the Dovetail demo data set (deterministic).")
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--seed", type=int, default=SEED, help="random seed (default %(default)s)")
    ap.add_argument("--achievements", type=int, default=N_ACHIEVEMENTS, help="default %(default)s")
    ap.add_argument("--demands", type=int, default=N_DEMANDS, help="default %(default)s")
    ap.add_argument("--no-qrels", action="store_true",
                    help="skip qrels.tsv (it grows with demands x achievements: for large benchmark sets)")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--vocab", default=os.path.join(here, "demo_vocab.json"),
                    help="vocabulary file (default: demo_vocab.json beside this script)")
    args = ap.parse_args(argv)
    if args.achievements < 1 or args.demands < 1:
        ap.error("--achievements and --demands must be at least 1")

    vocab = Vocab(args.vocab)
    achievements, ach_meta, demands, dem_meta = generate(args.seed, args.achievements, args.demands, vocab)
    check(vocab, achievements, demands)
    qrels, n2, n1 = ([], 0, 0) if args.no_qrels else build_qrels(vocab, achievements, ach_meta, demands, dem_meta)

    os.makedirs(args.out, exist_ok=True)

    def dump(recs):
        return [json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in recs]

    write_lines(os.path.join(args.out, "achievements.jsonl"), dump(achievements))
    write_lines(os.path.join(args.out, "demands.jsonl"), dump(demands))
    clusters = ["# cluster\tregion_prefix (a region is in a cluster when its code starts with the prefix)\n"]
    for name, prefixes in CLUSTERS:
        clusters.extend("%s\t%s\n" % (name, p) for p in prefixes)
    write_lines(os.path.join(args.out, "clusters.tsv"), clusters)
    if not args.no_qrels:
        write_lines(os.path.join(args.out, "qrels.tsv"), qrels)

    def lang_counts(meta):
        return "/".join("%s %d" % (l, sum(1 for m in meta if m["lang"] == l)) for l, _ in LANG_SHARES)

    n_second = sum(1 for r in achievements + demands if r["tenant"] == SECOND_TENANT)
    print("demo: %d achievements (%s), %d demands (%s), tenants public %d / %s %d, %d fields, %d topics, "
          "qrels %d (grade 2: %d, grade 1: %d) -> %s"
          % (len(achievements), lang_counts(ach_meta), len(demands), lang_counts(dem_meta),
             len(achievements) + len(demands) - n_second, SECOND_TENANT, n_second, len(vocab.fields),
             len(vocab.topics), n2 + n1, n2, n1, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
