"""Seeded synthetic rule sets and carts for the benchmark. The same seed gives the same files, byte for byte.

A rule set has about 200 categories, ten regions, about 20% code-gated and 10% exclusive promotions,
minimum-spend conditions and every reward type. `ruleset_docs` can add promotions that no benchmark
cart can get: for other regions and other categories, or past campaigns in the same markets.
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


def ruleset_docs(count: int, seed: int, out_of_scope: int = 0, ended: int = 0) -> list[dict]:
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


def account(rnd: random.Random) -> dict:
    return {"id": f"acct-{rnd.randrange(10**6)}", "region": rnd.choice(REGIONS),
            "tier": rnd.choice(["standard", "standard", "prime"]), "segments": rnd.sample(["vip", "student", "staff"], 1),
            "order_count": rnd.randint(0, 20), "time_zone": "Asia/Tokyo"}


def codes_for(rnd: random.Random, docs: list[dict]) -> list[str]:
    """One entered code, taken from the rule set half of the time, made up otherwise."""
    codes = sorted(doc["code"] for doc in docs if "code" in doc)
    if codes and rnd.random() < 0.5:
        return [rnd.choice(codes)]
    return ["NOSUCHCODE"]
