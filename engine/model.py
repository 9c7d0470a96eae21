"""The engine's value types: promotions, rule sets, carts and accounts. All frozen; built only by
`ruleset.load_ruleset()` and `inputs.parse_cart()` / `parse_account()`, which validate first."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Mapping

from typing import TYPE_CHECKING

from .conditions import Condition

if TYPE_CHECKING:   # the index is built beside the rule set (ruleset.py), never by it
    from .index import CandidateIndex


class Stage(str, Enum):
    """Stages run in this order; a later stage sees what earlier ones took off."""

    ITEM = "item"
    ORDER = "order"
    SHIPPING = "shipping"
    GRANT = "grant"          # balance for later orders: measured after every discount, takes nothing off


STAGE_ORDER = (Stage.ITEM, Stage.ORDER, Stage.SHIPPING, Stage.GRANT)


@dataclass(frozen=True)
class Targets:
    include_all: bool
    categories: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()
    exclude_skus: frozenset[str] = frozenset()
    exclude_brands: frozenset[str] = frozenset()
    exclude_sellers: frozenset[str] = frozenset()
    exclude_product_types: frozenset[str] = frozenset()

    @property
    def everything(self) -> bool:
        """Every line of any cart: all included, nothing excluded."""
        return self.include_all and not (self.exclude_categories or self.exclude_skus or self.exclude_brands
                                         or self.exclude_sellers or self.exclude_product_types)

    def matches(self, line: "Line") -> bool:
        included = self.include_all or line.category in self.categories or line.sku in self.skus \
            or (line.brand is not None and line.brand in self.brands)
        return included and not self.excludes(line)

    def excludes(self, line: "Line") -> bool:
        return (line.category in self.exclude_categories or line.sku in self.exclude_skus
                or (line.brand is not None and line.brand in self.exclude_brands)
                or line.seller in self.exclude_sellers or line.product_type in self.exclude_product_types)


@dataclass(frozen=True)
class Tier:
    at: Decimal                    # inclusive threshold on the reward's basis
    percent: Decimal | None = None
    amount: Decimal | None = None


@dataclass(frozen=True)
class Units:
    """Which of a benefit's targeted units it discounts (None: no limit). `max_per_line` counts per
    line, `max_total` across the selection, `group_size` keeps only complete groups of that many
    units; when units must be left out, `choose` says which are kept."""

    max_per_line: int | None = None
    max_total: int | None = None
    group_size: int | None = None
    choose: str = "cheapest"             # cheapest | most_expensive


@dataclass(frozen=True)
class Benefit:
    """One thing a promotion gives. Which fields are set depends on `type` (engine/benefits.py's
    KINDS table says which, and in which stage each kind runs); the loader guarantees the combination."""

    type: str
    stage: Stage
    index: int = 0                           # its place in the promotion's `benefits` list
    percent: Decimal | None = None
    amount: Decimal | None = None
    scope: str | None = None                 # amount_off / percent_off: per_unit | per_line | per_order
    max_discount: Decimal | None = None      # percent_off
    quantity: int | None = None              # fixed_price: units per set
    price: Decimal | None = None             # fixed_price: price of a set; shipping_fixed_price: the price
    buy: int | None = None                   # buy_x_get_y
    get: int | None = None
    discounted_units: str = "cheapest"       # buy_x_get_y: cheapest | most_expensive | equal_or_lesser
    max_sets: int | None = None
    basis: str | None = None                 # tiered: eligible_subtotal | eligible_quantity
    tiers: tuple[Tier, ...] = ()
    expires_after_days: int | None = None    # grant_promotional_balance: the lot's expiry, one of these two
    expires_at: datetime | None = None
    pays_for: "PaysFor | None" = None        # grant_promotional_balance: what the granted lot pays for
    targets: "Targets | None" = None         # the lines it discounts; None: the promotion's targets
    units: Units | None = None
    shipping_methods: frozenset[str] | None = None   # shipping benefits: only these methods (None: all)


@dataclass(frozen=True)
class Limits:
    max_discount: Decimal | None = None
    total_uses: int | None = None
    uses_per_customer: int | None = None
    budget: Decimal | None = None
    return_usage_on_cancel: bool = False   # a cancelled order gives its use back (the ledger acts on it)
    budget_overrun: str | None = None      # cap | refuse; None: the rule set's policy


# The money policies a rule set declares in _settings.yaml; each key's first value is the default.
POLICY_CHOICES: dict[str, tuple[str, ...]] = {
    "rounding_point": ("promotion", "line", "unit"),
    "leftover": ("largest_remainder", "first_line", "last_line"),
    "stacking_base": ("compounding", "original"),
    "budget_overrun": ("cap", "refuse"),
}


@dataclass(frozen=True)
class Policies:
    """Where rounding happens (each benefit's exact amount once, each line's, or each unit's before
    multiplying by its quantity), where the minor units left over by a split go (largest remainder,
    or as many as they can take to the first or the last lines in cart order), what a later promotion
    works on (what earlier ones left, or the original prices with each line clamped at zero), and
    what a budget does when a discount would overrun it (cap the discount, or refuse it)."""

    rounding_point: str = "promotion"
    leftover: str = "largest_remainder"
    stacking_base: str = "compounding"
    budget_overrun: str = "cap"


POOL_TOKEN_PREFIX = "POOL:"


def pool_token(promotion_id: str) -> str:
    """The code evaluate() sees for a promotion redeemed with single-use codes. Customers never type it:
    the ledger resolves an entered pool code to it (`Ledger.resolve_codes`), and `Ledger.reserve` holds
    the pool code itself, so typing the token gets no discount at checkout."""
    return POOL_TOKEN_PREFIX + promotion_id.upper()


@dataclass(frozen=True)
class Promotion:
    id: str
    name: str
    status: str
    currency: str | None
    starts: datetime | None
    ends: datetime | None
    code: str | None          # normalised: trimmed, upper case
    condition: Condition
    targets: Targets          # what eligibility measures (eligible_subtotal, ...) and, by default, what benefits discount
    benefits: tuple[Benefit, ...]   # at least one, at most one per stage, in stage order
    priority: int
    exclusive: bool
    limits: Limits
    source: str               # the rule file, for messages
    code_pool: bool = False   # redeemed with the ledger's single-use codes; `code` is then pool_token(id)
    # Its combination class (None: the stage of its first benefit) and, for an exclusive promotion, the
    # classes it still combines with (see `combines`).
    stacking_class: str | None = None
    combines_with: tuple[str, ...] = ()   # as the file lists them
    # What the customer view says when it applies, per language: (language, text) pairs, sorted, so that a
    # Promotion stays hashable. Empty: the customer view shows the name.
    customer_message: tuple[tuple[str, str], ...] = ()
    # Derived once from the fields above (evaluate() reads them for every promotion it considers):
    stage: Stage = field(init=False, repr=False, compare=False)
    order: tuple = field(init=False, repr=False, compare=False)   # evaluation order: stage, priority, id

    def __post_init__(self) -> None:
        stage = self.benefits[0].stage
        object.__setattr__(self, "stage", stage)
        object.__setattr__(self, "order", (STAGE_ORDER.index(stage), -self.priority, self.id))
        if self.stacking_class is None:
            object.__setattr__(self, "stacking_class", stage.value)

    def combines(self, other: "Promotion") -> bool:
        """Whether the two may apply to the same order. Two non-exclusive promotions always may; an
        exclusive one only with promotions whose class it lists, and two exclusive ones only when
        each lists the other's class."""
        if not self.exclusive and not other.exclusive:
            return True
        return (not self.exclusive or other.stacking_class in self.combines_with) and \
            (not other.exclusive or self.stacking_class in other.combines_with)


DEFAULT_MAX_DISCOUNT_PERCENT = Decimal(70)
DEFAULT_ACTIVATION_LEAD_TIME = timedelta(hours=4)


@dataclass(frozen=True)
class LintSettings:
    """What `promo lint` holds a rule set to (`lint:` in _settings.yaml): the largest discount a line may
    get from everything that combines, as a percent of its price, and how long before its start a window
    must be saved so that caches, feeds and reviews have caught up (as large marketplaces require)."""

    max_discount_percent: Decimal = DEFAULT_MAX_DISCOUNT_PERCENT
    activation_lead_time: timedelta = DEFAULT_ACTIVATION_LEAD_TIME


@dataclass(frozen=True)
class RuleSet:
    promotions: Mapping[str, Promotion]
    currencies: frozenset[str]
    rounding: str
    locale: str
    version: str              # sha256 over the rule files' names and bytes
    policies: Policies = field(default_factory=Policies)
    codes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # normalised code -> promotion ids
    exclusive_resolution: str = "best_for_customer"   # the policy choosing among exclusive outcomes (decide.py)
    best_per_line: frozenset[str] = frozenset()        # classes whose item discounts do not compound on a line
    lint: LintSettings = field(default_factory=LintSettings)   # read only by `promo lint` (engine/lint.py)
    # Built beside the rule set from `promotions` by ruleset.build_ruleset, the only place a RuleSet is made.
    index: "CandidateIndex | None" = field(default=None, repr=False, compare=False)
    # The rule files' names and bytes the set was built from (what `version` hashes), so that the ledger
    # can keep every rule set it priced orders with and build it again after a reload or a restart.
    sources: Mapping[str, bytes] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Line:
    id: str
    sku: str
    name: str
    category: str
    brand: str | None
    seller: str
    product_type: str
    unit_price: Decimal
    quantity: int

    @property
    def subtotal(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class Shipping:
    method: str
    price: Decimal


@dataclass(frozen=True)
class Shipment:
    """One of a cart's shipments: its own method and price, and the lines it carries (recorded and
    checked, not priced: the price is the shipment's, whatever it carries)."""

    id: str
    method: str
    price: Decimal
    lines: tuple[str, ...] = ()


LEGACY_SHIPMENT_ID = ""   # the one shipment of a cart written with `shipping`, which has no id


@dataclass(frozen=True)
class Cart:
    id: str | None
    currency: str
    channel: str
    lines: tuple[Line, ...]
    shipping: Shipping | None
    # The list form (`shipments` in the cart file); None when the cart says `shipping` or nothing.
    # A cart has one form or the other, never both (parse_cart refuses a cart that gives both).
    shipments: tuple[Shipment, ...] | None = None

    @property
    def all_shipments(self) -> tuple[Shipment, ...]:
        """Every shipping charge, whichever form the cart used: `shipping` is one shipment with id ""."""
        if self.shipments is not None:
            return self.shipments
        if self.shipping is not None:
            return (Shipment(LEGACY_SHIPMENT_ID, self.shipping.method, self.shipping.price),)
        return ()


# What a promotional balance lot may be kept from paying for: each name is a seller or a product type.
EXCLUSIONS: dict[str, tuple[str, str]] = {
    "third_party": ("seller", "third_party"),
    "digital": ("product_type", "digital"),
    "subscription": ("product_type", "subscription"),
    "gift_card": ("product_type", "gift_card"),
}
DEFAULT_EXCLUSIONS = frozenset(EXCLUSIONS)   # a lot that says nothing excludes all four


@dataclass(frozen=True)
class PaysFor:
    """What a promotional balance lot may pay for: lines of these categories (None: any), minus the
    exclusions, and shipping only when it says so."""

    categories: frozenset[str] | None = None
    excludes: frozenset[str] = DEFAULT_EXCLUSIONS
    shipping: bool = False

    @staticmethod
    def from_doc(doc: Mapping) -> "PaysFor":
        """From a schema-checked `pays_for` mapping (an account's lot or a grant reward): omitted means
        every category, all four exclusions, no shipping."""
        return PaysFor(categories=frozenset(doc["categories"]) if "categories" in doc else None,
                       excludes=frozenset(doc.get("excludes", DEFAULT_EXCLUSIONS)), shipping=doc.get("shipping", False))

    def covers(self, line: "Line") -> bool:
        if self.categories is not None and line.category not in self.categories:
            return False
        return not any(getattr(line, field) == value
                       for field, value in (EXCLUSIONS[name] for name in self.excludes))


@dataclass(frozen=True)
class Lot:
    """One grant of promotional balance: usable from `granted_at` (inclusive) until `expires_at` (exclusive)."""

    id: str
    amount: Decimal
    currency: str
    granted_at: datetime
    expires_at: datetime | None
    pays_for: PaysFor

    def order_key(self) -> tuple:
        """The waterfall's order: earliest expiry first, lots without expiry last, ties by id."""
        # Aware datetimes compare as instants, exactly (a float timestamp could merge microseconds).
        return (self.expires_at is None, self.expires_at or self.granted_at, self.id)


@dataclass(frozen=True)
class GiftCard:
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Points:
    balance: int               # points held
    value: Decimal             # money value of one point, in `currency`, within its minor unit
    currency: str
    use: int | None            # points the customer chose to use; None: as many as needed


@dataclass(frozen=True)
class Account:
    id: str
    region: str
    tier: str
    segments: tuple[str, ...]
    order_count: int
    time_zone: str
    lots: tuple[Lot, ...] = ()
    gift_card: GiftCard | None = None
    points: Points | None = None


@dataclass(frozen=True)
class Usage:
    """What a promotion has used so far, as the ledger reports it."""

    total_uses: int = 0
    customer_uses: int = 0
    budget_spent: Decimal = Decimal(0)
