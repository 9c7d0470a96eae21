"""Seeded synthetic rule sets and carts for the benchmark. The same seed gives the same files, byte for byte.

Three shapes (SHAPES), each about 200 categories and ten regions:

- `one-region`, the original shape, which the candidate index was tuned to: 80% of promotions require
  exactly one region (`region equal_to JP`), one category or a few SKUs or brands, ~20% code-gated,
  ~10% exclusive, ~10% for one sales channel, minimum spends on half, every reward type;
- `region-sets`, as marketers write rules when a promotion runs in several markets: region sets of
  1-4 (`any` of `equal_to` leaves) on 85%, customer tier sets ("gold or platinum") on 30%, include
  sets of 1-5 categories with exclusions, minimum spends on half, 25% code-gated, 10% exclusive;
- `mixed`, region-sets plus customer segment conditions (`shares_at_least_one_element_with`,
  `contains_all`), sales channel sets, combination classes (`stacking.class`, exclusives that
  `combines_with` shipping or a class) and several benefits per promotion (an item or order benefit
  with a shipping one).

`ruleset_docs` can add promotions that no benchmark cart can get (OUT_OF_SCOPE): for other region
sets (same categories), for tiers no benchmark account has, or past campaigns (windows ended).
"""
from __future__ import annotations

import random

import yaml

REGIONS = ("JP", "US", "KW", "GB", "DE", "FR", "KR", "AU", "CA", "BR")
OTHER_REGIONS = ("MX", "IN", "ID", "TH", "VN", "PH", "MY", "SG", "NZ", "ZA")
CATEGORIES = tuple(f"cat-{i:03d}" for i in range(200))
OTHER_CATEGORIES = tuple(f"other-{i:03d}" for i in range(200))
BRANDS = tuple(f"brand-{i:03d}" for i in range(400))
SKU_COUNT = 20_000
CHANNELS = ("web", "app", "store")
TIERS = ("standard", "silver", "gold", "platinum")
OTHER_TIERS = ("diamond", "staff-only", "partner")
SEGMENTS = ("vip", "student", "staff", "newsletter", "b2b")
CLASSES = ("catalogue", "member", "clearance")
SHAPES = ("one-region", "region-sets", "mixed")
OUT_OF_SCOPE = ("other region sets", "other tiers", "ended windows")
NOW = "2026-11-21T10:00:00+09:00"
SETTINGS = b"currencies: [JPY]\nrounding: half_up\n"


def _yen(rnd: random.Random, low: int, high: int, step: int = 100) -> str:
    return str(rnd.randrange(low, high, step))


def _reward(rnd: random.Random) -> dict:
    kind = rnd.choices(["percent_off", "amount_off", "fixed_price", "buy_x_get_y", "tiered", "free_shipping",
                        "shipping_amount_off", "shipping_percent_off"], [35, 20, 5, 10, 10, 8, 6, 6])[0]
    if kind == "percent_off":
        reward = {"type": kind, "percent": rnd.choice([5, 10, 15, 20, 25, "12.5"])}
        if rnd.random() < 0.3:
            reward["max_discount"] = _yen(rnd, 500, 5000)
        return reward
    if kind == "amount_off":
        return {"type": kind, "scope": rnd.choice(["per_unit", "per_line", "per_order"]), "amount": _yen(rnd, 100, 2000)}
    if kind == "fixed_price":
        return {"type": kind, "quantity": rnd.randint(2, 4), "price": _yen(rnd, 1000, 10000), "max_sets": 3}
    if kind == "buy_x_get_y":
        return {"type": kind, "buy": rnd.randint(1, 3), "get": 1, "percent": rnd.choice([50, 100]),
                "discounted_units": rnd.choice(["cheapest", "most_expensive"])}
    if kind == "tiered":
        if rnd.random() < 0.5:
            return {"type": kind, "basis": "eligible_quantity",
                    "tiers": [{"at": 2, "percent": 5}, {"at": 5, "percent": 10}, {"at": 10, "amount": "3000"}]}
        return {"type": kind, "basis": "eligible_subtotal",
                "tiers": [{"at": "5000", "percent": 5}, {"at": "20000", "percent": 10}, {"at": "50000", "amount": "8000"}]}
    if kind == "shipping_amount_off":
        return {"type": kind, "amount": _yen(rnd, 100, 500)}
    if kind == "shipping_percent_off":
        return {"type": kind, "percent": rnd.choice([50, 100])}
    return {"type": kind}


def _targets(rnd: random.Random, categories: tuple[str, ...], by_category_only: bool = False) -> dict:
    roll = rnd.random() * (0.75 if by_category_only else 1)
    if roll < 0.60:
        include: object = {"categories": [rnd.choice(categories)]}
    elif roll < 0.75:
        include = {"categories": rnd.sample(categories, rnd.randint(2, 3))}
    elif roll < 0.87:
        include = {"skus": [f"SKU-{rnd.randrange(SKU_COUNT):05d}" for _ in range(5)]}
    elif roll < 0.95:
        include = {"brands": rnd.sample(BRANDS, 2)}
    else:
        include = "all"
    targets: dict = {"include": include}
    if rnd.random() < 0.3:
        targets["exclude"] = rnd.choice([{"sellers": ["third_party"]}, {"product_types": ["digital", "gift_card"]}])
    return targets


def promotion(rnd: random.Random, index: int, regions: tuple[str, ...], categories: tuple[str, ...],
              prefix: str = "p", elsewhere: bool = False, ended: bool = False) -> dict:
    """One promotion; `elsewhere` ones always require one of `regions` and target only `categories`."""
    pid = f"{prefix}{index:05d}"
    doc: dict = {"id": pid, "name": f"Promotion {pid}", "status": "active" if rnd.random() < 0.95 else "paused",
                 "currency": "JPY"}
    if rnd.random() < 0.20:
        doc["code"] = f"C{pid.upper()}"
    roll = rnd.random()
    if ended:   # a past campaign, kept in the catalogue: one of 120 month-long windows before NOW
        month = rnd.randrange(120)
        year, month = 2016 + month // 12, month % 12 + 1
        doc["window"] = {"starts": f"{year}-{month:02d}-01T00:00:00+09:00",
                         "ends": f"{year}-{month:02d}-28T00:00:00+09:00"}
    elif roll < 0.25:
        doc["window"] = {"starts": "2026-11-01T00:00:00+09:00", "ends": "2026-12-01T00:00:00+09:00"}
    elif roll < 0.30:
        doc["window"] = {"starts": "2026-10-01T00:00:00+09:00", "ends": "2026-11-01T00:00:00+09:00"}
    terms = []
    if elsewhere or rnd.random() < 0.80:  # most promotions are for one market
        terms.append({"name": "region", "operator": "equal_to", "value": rnd.choice(regions)})
    if rnd.random() < 0.10:
        terms.append({"name": "sales_channel", "operator": "equal_to", "value": rnd.choice(CHANNELS)})
    if rnd.random() < 0.50:
        terms.append({"name": "eligible_subtotal", "operator": "greater_than_or_equal_to",
                      "value": _yen(rnd, 1000, 30000, 500)})
    if rnd.random() < 0.10:
        terms.append({"any": [{"name": "customer_tier", "operator": "equal_to", "value": "prime"},
                              {"name": "customer_segments", "operator": "shares_at_least_one_element_with",
                               "value": ["vip", "staff"]}]})
    if terms:
        doc["eligibility"] = {"all": terms}
    doc["targets"] = _targets(rnd, categories, by_category_only=elsewhere)
    doc["benefits"] = [_reward(rnd)]
    doc["stacking"] = {"priority": rnd.randint(0, 100), "exclusive": rnd.random() < 0.10}
    if rnd.random() < 0.2:
        doc["limits"] = {"max_discount": _yen(rnd, 1000, 10000), "total_uses": 100000}
    return doc


def _one_of(rnd: random.Random, name: str, values: tuple[str, ...], low: int, high: int) -> dict:
    chosen = rnd.sample(values, rnd.randint(low, min(high, len(values))))
    return {"any": [{"name": name, "operator": "equal_to", "value": v} for v in chosen]}


def _line_benefit(rnd: random.Random) -> dict:
    kind = rnd.choices(["percent_off", "amount_off", "tiered", "buy_x_get_y"], [50, 30, 12, 8])[0]
    while True:
        reward = _reward(rnd)
        if reward["type"] == kind:
            return reward


def promotion_with_sets(rnd: random.Random, index: int, shape: str, regions: tuple[str, ...] = REGIONS,
                        tiers: tuple[str, ...] = TIERS, prefix: str = "p", ended: bool = False,
                        tier_required: bool = False) -> dict:
    """One promotion of the `region-sets` or `mixed` shape."""
    mixed = shape == "mixed"
    pid = f"{prefix}{index:05d}"
    doc: dict = {"id": pid, "name": f"Promotion {pid}", "status": "active" if rnd.random() < 0.95 else "paused",
                 "currency": "JPY"}
    if rnd.random() < 0.25:
        doc["code"] = f"C{pid.upper()}"
    if ended:
        month = rnd.randrange(120)
        year, month = 2016 + month // 12, month % 12 + 1
        doc["window"] = {"starts": f"{year}-{month:02d}-01T00:00:00+09:00",
                         "ends": f"{year}-{month:02d}-28T00:00:00+09:00"}
    elif rnd.random() < 0.3:
        doc["window"] = {"starts": "2026-11-01T00:00:00+09:00", "ends": "2026-12-01T00:00:00+09:00"}
    terms: list = []
    if prefix != "p" and not ended and not tier_required or rnd.random() < 0.85:
        terms.append(_one_of(rnd, "region", regions, 1, 4))
    if tier_required or rnd.random() < 0.30:
        terms.append(_one_of(rnd, "customer_tier", tiers[1:] if tiers is TIERS else tiers, 1, 2))
    if mixed and rnd.random() < 0.20:
        operator = rnd.choice(["shares_at_least_one_element_with", "contains_all"])
        terms.append({"name": "customer_segments", "operator": operator,
                      "value": rnd.sample(SEGMENTS, 1 if operator == "contains_all" else rnd.randint(1, 3))})
    if mixed and rnd.random() < 0.25:
        terms.append(_one_of(rnd, "sales_channel", CHANNELS, 1, 2))
    if rnd.random() < 0.50:
        terms.append({"name": "eligible_subtotal", "operator": "greater_than_or_equal_to",
                      "value": _yen(rnd, 1000, 30000, 500)})
    if terms:
        doc["eligibility"] = {"all": terms}
    targets: dict = {"include": {"categories": rnd.sample(CATEGORIES, rnd.randint(1, 5))}}
    if rnd.random() < 0.4:
        targets["exclude"] = rnd.choice([{"sellers": ["third_party"]}, {"product_types": ["digital", "gift_card"]},
                                         {"brands": rnd.sample(BRANDS, 3)}])
    doc["targets"] = targets
    first = _line_benefit(rnd)
    doc["benefits"] = [first]
    if mixed and rnd.random() < 0.3:
        doc["benefits"].append(rnd.choice([{"type": "free_shipping"},
                                           {"type": "shipping_amount_off", "amount": _yen(rnd, 100, 500)}]))
    exclusive = rnd.random() < 0.10
    stacking: dict = {"priority": rnd.randint(0, 100), "exclusive": exclusive}
    if mixed and rnd.random() < 0.4:
        stacking["class"] = rnd.choice(CLASSES)
    if mixed and exclusive and rnd.random() < 0.6:
        stacking["combines_with"] = rnd.choice([["shipping"], ["order"], ["shipping", "item"]])
    doc["stacking"] = stacking
    if rnd.random() < 0.2:
        doc["limits"] = {"max_discount": _yen(rnd, 1000, 10000), "total_uses": 100000}
    return doc


def shape_docs(shape: str, count: int, seed: int, added: str | None = None, extra: int = 0) -> list[dict]:
    """`count` promotions of `shape`, then `extra` that no benchmark cart can get, of the kind `added`
    (one of OUT_OF_SCOPE). The first `count` do not depend on the rest."""
    if shape == "one-region":
        kind = {None: {}, "other region sets": {"out_of_scope": extra}, "ended windows": {"ended": extra},
                "other tiers": {"other_tiers": extra}}[added]
        return ruleset_docs(count, seed, **kind)
    rnd = random.Random(seed)
    docs = [promotion_with_sets(rnd, i, shape) for i in range(count)]
    other = random.Random(seed + 1)
    if added == "other region sets":
        docs += [promotion_with_sets(other, i, shape, regions=OTHER_REGIONS, prefix="x") for i in range(extra)]
    elif added == "other tiers":
        docs += [promotion_with_sets(other, i, shape, tiers=OTHER_TIERS, prefix="t", tier_required=True)
                 for i in range(extra)]
    elif added == "ended windows":
        docs += [promotion_with_sets(other, i, shape, prefix="e", ended=True) for i in range(extra)]
    return docs


def ruleset_docs(count: int, seed: int, out_of_scope: int = 0, ended: int = 0, other_tiers: int = 0) -> list[dict]:
    """`count` promotions for the benchmark's markets, then `out_of_scope` for other markets and categories,
    then `ended` past campaigns for the benchmark's own markets and categories (windows ended before NOW).

    The first `count` are the same whatever the others are, so "1,000 in scope" and "1,000 in scope
    plus 9,000 out of scope" share their in-scope promotions exactly."""
    rnd = random.Random(seed)
    docs = [promotion(rnd, i, REGIONS, CATEGORIES) for i in range(count)]
    other = random.Random(seed + 1)
    docs += [promotion(other, i, OTHER_REGIONS, OTHER_CATEGORIES, prefix="x", elsewhere=True)
             for i in range(out_of_scope)]
    past = random.Random(seed + 2)
    docs += [promotion(past, i, REGIONS, CATEGORIES, prefix="e", ended=True) for i in range(ended)]
    tiered = random.Random(seed + 3)
    for i in range(other_tiers):   # the same markets and categories, for a tier no benchmark account has
        doc = promotion(tiered, i, REGIONS, CATEGORIES, prefix="t")
        tier = _one_of(tiered, "customer_tier", OTHER_TIERS, 1, 2)
        doc["eligibility"] = {"all": doc["eligibility"]["all"] + [tier]} if "eligibility" in doc else tier
        docs.append(doc)
    return docs


def files_of(docs: list[dict], folder: str = "rules") -> dict[str, bytes]:
    files = {f"{folder}/_settings.yaml": SETTINGS}
    for doc in docs:
        files[f"{folder}/{doc['id']}.yaml"] = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
    return files


def cart(rnd: random.Random, lines: int) -> dict:
    out = []
    for i in range(lines):
        line = {"id": f"L{i:03d}", "sku": f"SKU-{rnd.randrange(SKU_COUNT):05d}", "category": rnd.choice(CATEGORIES),
                "seller": "first_party" if rnd.random() < 0.85 else "third_party",
                "product_type": rnd.choices(["physical", "digital", "gift_card"], [90, 8, 2])[0],
                "unit_price": str(rnd.randrange(100, 20000, 10)), "quantity": rnd.randint(1, 3)}
        if rnd.random() < 0.8:
            line["brand"] = rnd.choice(BRANDS)
        out.append(line)
    return {"id": f"cart-{lines}", "currency": "JPY", "channel": rnd.choice(CHANNELS), "lines": out,
            "shipping": {"method": "standard", "price": "600"}}


def account(rnd: random.Random, shape: str = "one-region") -> dict:
    if shape == "one-region":
        return {"id": f"acct-{rnd.randrange(10**6)}", "region": rnd.choice(REGIONS),
                "tier": rnd.choice(["standard", "standard", "prime"]), "segments": rnd.sample(["vip", "student", "staff"], 1),
                "order_count": rnd.randint(0, 20), "time_zone": "Asia/Tokyo"}
    return {"id": f"acct-{rnd.randrange(10**6)}", "region": rnd.choice(REGIONS),
            "tier": rnd.choice(TIERS), "segments": rnd.sample(SEGMENTS, rnd.randint(0, 2)),
            "order_count": rnd.randint(0, 20), "time_zone": "Asia/Tokyo"}


def codes_for(rnd: random.Random, docs: list[dict]) -> list[str]:
    """One entered code, taken from the rule set half of the time, made up otherwise."""
    codes = sorted(doc["code"] for doc in docs if "code" in doc)
    if codes and rnd.random() < 0.5:
        return [rnd.choice(codes)]
    return ["NOSUCHCODE"]
