"""Templates of new rule files, one per benefit kind (`promo new KIND ID`, engine/new_cli.py): the one
table of what a new file of each kind says, every line commented for the marketer who fills it in.

A template is valid as written (tests/test_new.py loads every kind with the real loader and previews
it on an example cart) and always a `draft`, so that a file nobody has finished never goes live.
`render` fills in the id, the shop's currency and region, the window and amounts of the currency's
size (¥500, $5); nothing else about the shop is guessed.
"""
from __future__ import annotations

from datetime import date

from .money import minor_unit

# What each kind gives, as the `benefits:` list of the file (indented two spaces). {small}, {price},
# {threshold} and {big} are amounts in the file's currency.
BENEFITS: dict[str, str] = {
    "percent_off": """\
  - type: percent_off         # a percentage off the targeted lines
    percent: 10                 # percent off each targeted line: 10 is 10%, "12.5" is 12.5% (not 0.10)
    max_discount: "{big}"       # optional: the most it takes off one order, quoted; delete for no cap
    # scope: per_order          # optional: one order discount on what is left after item discounts
""",
    "amount_off": """\
  - type: amount_off          # an amount off the targeted lines
    amount: "{small}"           # the amount off, quoted, in the file's currency
    scope: per_order            # per_order: once, spread over the targeted lines; per_line: off each
                                #   targeted line; per_unit: off every unit of every targeted line
""",
    "fixed_price": """\
  - type: fixed_price         # a bundle price: so many units for one price
    quantity: 3                 # how many targeted units make one set ("3 for ...")
    price: "{price}"            # what one set costs, quoted
    # max_sets: 2               # optional: the most sets one order gets at that price
""",
    "buy_x_get_y": """\
  - type: buy_x_get_y         # buy some units, get more free or cheaper
    buy: 1                      # units the customer pays for in each set
    get: 1                      # units given at `percent` off in each set
    percent: 100                # 100: the given units are free; 50: half price
    discounted_units: cheapest  # which units are given: cheapest | most_expensive | equal_or_lesser
    # max_sets: 1               # optional: the most sets one order gets
""",
    "tiered": """\
  - type: tiered              # spend (or buy) more, save more
    basis: eligible_subtotal    # what the tiers measure: eligible_subtotal (spend) or eligible_quantity (units)
    tiers:                      # lowest first; the highest tier reached applies, below the first nothing
      - {{at: "{threshold}", percent: 5}}     # from this spend (quoted), 5% off
      - {{at: "{big}", percent: 10}}    # from this spend, 10% off; `amount: "..."` instead gives an amount
""",
    "free_shipping": """\
  - type: free_shipping         # shipping costs nothing
    # shipping_methods: [ground]  # optional: only shipments by these methods (all when omitted)
""",
    "shipping_amount_off": """\
  - type: shipping_amount_off # an amount off shipping
    amount: "{small}"           # taken off shipping once per order, quoted; never more than shipping costs
    # shipping_methods: [ground]  # optional: only shipments by these methods (all when omitted)
""",
    "shipping_percent_off": """\
  - type: shipping_percent_off  # a percentage off shipping
    percent: 50                 # percent off each shipment: 50 is half price
    # shipping_methods: [ground]  # optional: only shipments by these methods (all when omitted)
""",
    "shipping_fixed_price": """\
  - type: shipping_fixed_price  # shipping costs at most a price
    price: "{ship}"             # each shipment costs at most this, quoted; a cheaper one is left as it is
    # shipping_methods: [ground]  # optional: only shipments by these methods (all when omitted)
""",
    "grant_promotional_balance": """\
  - type: grant_promotional_balance   # balance for LATER orders: takes nothing off this one
    amount: "{small}"           # the balance given, quoted
    expires: {{after_days: 30}} # whole days after the order; or {{at: "2027-01-31T23:59:59+00:00"}}
    # pays_for: {{categories: [books], shipping: false}}  # optional: what the balance may pay for
""",
}

KIND_NAMES = {"percent_off": "10% off", "amount_off": "{small} off", "fixed_price": "3 for {price}",
              "buy_x_get_y": "Buy one, get one free", "tiered": "Spend more, save more",
              "free_shipping": "Free shipping", "shipping_amount_off": "{small} off shipping",
              "shipping_percent_off": "Half-price shipping", "shipping_fixed_price": "Shipping for {ship}",
              "grant_promotional_balance": "{small} balance for your next order"}

FRAME = """\
# yaml-language-server: $schema=../schemas/promotion.schema.json
# A new {kind} promotion, written by `promo new`. Change what the comments say, then check the file with
# `promo validate` and try it on a cart with `promo evaluate --preview {id} ...` before it goes live.
id: {id}{pad}# must stay equal to the file name ({id}.yaml)
name: "{name}"{pad_name}# shown to customers: say what they get
description: |                # notes for marketers, never shown to customers
  Who asked for it, why, and what to check before it goes live.
status: draft                 # draft never applies at checkout, so a new file cannot go live by
                              #   accident; set active when it is ready (paused stops it again)
currency: {currency}                 # every amount in this file is in this currency ({currency_note})
window:                       # when it runs, as dates and times with a UTC offset
  starts: "{starts}"   # the first moment it applies (inclusive)
  ends: "{ends}"     # the moment it is over (EXCLUSIVE)
# code: SAVE10                # uncomment to require a code; without one the promotion is automatic
{eligibility}targets:                      # which lines it is about (and what eligibility measures)
  include: all                # every line; or {{categories: [books], skus: [...], brands: [...]}}
  exclude:                    # lines never discounted; delete the two lines to exclude nothing
    product_types: [gift_card]  # also: categories, skus, brands, sellers: [third_party]
benefits:                     # what it gives (one benefit per stage; this is a {kind})
{benefit}stacking:                     # how it combines with other promotions
  priority: 50                # higher goes first within a stage (-1000 to 1000)
  exclusive: false            # true: combines with no other promotion (except combines_with classes)
# limits: {{uses_per_customer: 1, total_uses: 1000, budget: "{budget}"}}   # optional caps; uncomment to use
"""

ELIGIBILITY = """\
eligibility:                  # who qualifies; delete the whole block for everyone
  all:                        # every condition below must hold (any: at least one)
    - name: region            # the customer's country ({region_note})
      operator: equal_to      # is exactly
      value: "{region}"              # an ISO 3166 code, quoted (unquoted, NO would read as no)
"""


def _amounts(currency: str) -> dict[str, str]:
    """Amounts of the currency's size: ¥500 or $5 off, whole numbers valid in any currency."""
    scale = 100 if minor_unit(currency) == 0 else 1
    return {"small": str(5 * scale), "price": str(10 * scale), "threshold": str(30 * scale),
            "big": str(50 * scale), "ship": str(1 * scale), "budget": str(5000 * scale)}


def render(kind: str, promotion_id: str, currency: str, region: str | None, today: date,
           from_settings: bool = True) -> str:
    """The rule file `promo new` writes: a draft of `kind` that runs for the month after `today`."""
    amounts = _amounts(currency)
    starts = date(today.year + (today.month == 12), today.month % 12 + 1, 1)
    ends = date(starts.year + (starts.month == 12), starts.month % 12 + 1, 1)
    name = KIND_NAMES[kind].format(**{key: f"{value} {currency}" for key, value in amounts.items()})
    note = "from _settings.yaml" if from_settings else "no _settings.yaml: change it"
    eligibility = "" if region is None else ELIGIBILITY.format(region=region, region_note=note)
    return FRAME.format(
        kind=kind, id=promotion_id, pad=" " * max(1, 26 - len(promotion_id)), name=name,
        pad_name=" " * max(1, 22 - len(name)), currency=currency, currency_note=note,
        starts=f"{starts.isoformat()}T00:00:00+00:00", ends=f"{ends.isoformat()}T00:00:00+00:00",
        eligibility=eligibility, benefit=BENEFITS[kind].format(**amounts), budget=amounts["budget"])
