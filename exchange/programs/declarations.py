"""Reading and validating program declarations: ``partners/*.toml``.

A partners directory holds one ``coalition.toml`` (the settlement currency and the coalition
tier ladder) and one file per program, by convention ``<program-id>.toml``. Everything is validated before
anything is loaded; the first problem found is raised as a :class:`DeclarationError` whose
text is one line: ``<path>: <field>: <reason>``.

This module is pure: it reads files and returns frozen values, and knows nothing of the
database.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from exchange.addresses import Fault, read_address
from exchange.db.types import MAX_INTEGER
from exchange.errors import BadUserInput
from exchange.money import MAX_MONEY_INTEGER_DIGITS, PERCENT_SCALE, POINT_VALUE_SCALE, decimal_places, parse_decimal
from exchange.programs.secrets import SecretUnavailable, read_secret_file
from exchange.ratio import Ratio
from exchange.text import counted

COALITION_FILE = "coalition.toml"
#: How long a held conversion or redemption waits for staff before it ends on its own, unless
#: the program declares otherwise (``[risk] hold_expires_after_seconds``): a week spans a weekend
#: and a holiday. (The risk gates, ``exchange.risk``, read the declared value; they build on this
#: package, not the other way round.)
HOLD_EXPIRES_AFTER = timedelta(days=7)
#: Digits a point value may have before its point (its column is NUMERIC(18, 6)).
POINT_VALUE_INTEGER_DIGITS = 18 - POINT_VALUE_SCALE
#: Digits a fixed fee or a budget may have before and after its point (NUMERIC(18, 4) columns).
AMOUNT_DIGITS = (14, 4)
PROGRAM_ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class DeclarationError(BadUserInput):
    """A declaration file is wrong; ``str()`` is ``<path>: <field>: <reason>``."""

    def __init__(self, path: Path | str, field: str | None, reason: str) -> None:
        location = f"{path}: {field}" if field else str(path)
        super().__init__(f"{location}: {reason}", field=field)
        self.path = str(path)
        self.reason = reason


def _exact_decimal(value: object) -> Decimal:
    return parse_decimal(value)


ExactDecimal = Annotated[Decimal, BeforeValidator(_exact_decimal)]

# Every number a declaration gives is bounded as the API's inputs for the same setting are, and
# as the column that keeps it: a file is refused naming its key, never loaded half-way into an
# overflowing column (PostgreSQL) or stored past what the API could show (SQLite).

#: A count of points or of times (a cap, a minimum, a step, a budget in points): 1 to GraphQL's Int.
Count = Annotated[int, Field(ge=1, le=MAX_INTEGER, strict=True)]
#: A level of the coalition ladder: 0 to GraphQL's Int (and, checked on loading, on the ladder).
Level = Annotated[int, Field(ge=0, le=MAX_INTEGER, strict=True)]


def _digits(before: int, after: int) -> AfterValidator:
    """At most ``before`` digits before the point and ``after`` after it (trailing zeros aside)."""

    def check(value: Decimal) -> Decimal:
        if (value and value.adjusted() >= before) or decimal_places(value.normalize()) > after:
            raise ValueError(f"must have at most {before} digits before the point and {after} after it, got {value}")
        return value

    return AfterValidator(check)


def _partner_address(*, query: bool) -> AfterValidator:
    """An http(s) address at the partner: a host (and a port that is one), no credentials (the
    exchange authenticates with ``[connector.oauth]``, and an address is written to logs and
    errors), no fragment, and no query unless the exchange adds its parameters to the address
    (``query``). The address itself is not repeated in the refusal, lest it hold a secret."""

    def check(value: str) -> str:
        parts, faults = read_address(value)
        if parts is None:
            raise ValueError("cannot be read as an address: its port must be a number from 0 to 65535")
        if parts.scheme not in ("http", "https") or Fault.NOT_ABSOLUTE in faults:
            raise ValueError("must be an http:// or https:// address with a host")
        if faults & {Fault.SPACE, Fault.CONTROL}:
            raise ValueError("must not hold spaces or control characters")
        if Fault.CREDENTIALS in faults:
            raise ValueError("must not hold a user name or password: give the secret in [connector.oauth]")
        if Fault.FRAGMENT in faults:
            raise ValueError("must not end with a #fragment")
        if Fault.QUERY in faults and not query:
            raise ValueError("must not hold a ?query")
        return value

    return AfterValidator(check)


#: The partner's API or token endpoint: calls add their own paths.
PartnerAPIAddress = Annotated[str, _partner_address(query=False)]
#: The partner's sign-in page: the portal adds ``state`` and ``redirect_uri`` to its query.
PartnerPageAddress = Annotated[str, _partner_address(query=True)]


def plural_point_name(point_name: str, declared: str | None) -> str:
    """What several points are called: ``declared`` (``point_name_plural``), or else
    ``point_name`` made plural by the regular English rules (``Mile`` → ``Miles``, ``Coalition
    Point`` → ``Coalition Points``, ``Pass`` → ``Passes``, ``Penny`` → ``Pennies``). A program
    whose name is irregular (``Sheep``, ``Mice``) declares its plural."""
    if declared is not None:
        return declared
    word = point_name.rsplit(" ", 1)[-1]
    if word.lower().endswith(("s", "x", "z", "ch", "sh")):
        return point_name + "es"
    if len(word) > 1 and word.endswith("y") and word[-2].lower() not in "aeiou":
        return point_name[:-1] + "ies"
    return point_name + "s"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, populate_by_name=True)


class _PointsProgram(_Strict):
    """What every points program declares, a partner's or the coalition point: its id, its
    name, what its points are called and what one is worth."""

    id: str
    name: Annotated[str, Field(min_length=1, max_length=80)]
    point_name: Annotated[str, Field(min_length=1, max_length=40)]
    point_name_plural: Annotated[str, Field(min_length=1, max_length=40)] | None = Field(
        default=None, description="What several points are called; by default `point_name` made plural."
    )
    point_value: ExactDecimal

    @field_validator("id")
    @classmethod
    def _id_is_a_slug(cls, value: str) -> str:
        if not PROGRAM_ID_PATTERN.match(value):
            raise ValueError("must be lowercase letters, digits and inner hyphens (at most 64)")
        return value

    @field_validator("point_value")
    @classmethod
    def _point_value_is_positive_and_exact(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError(f"must be greater than 0, got {value}")
        if decimal_places(value) > POINT_VALUE_SCALE:
            raise ValueError(f"has more than {POINT_VALUE_SCALE} decimal places: {value}")
        if value.adjusted() >= POINT_VALUE_INTEGER_DIGITS:
            raise ValueError(f"must have at most {POINT_VALUE_INTEGER_DIGITS} digits before the point, got {value}")
        return value


class LadderLevel(_Strict):
    level: Level
    name: Annotated[str, Field(min_length=1, max_length=40)]


Percent = Annotated[ExactDecimal, Field(ge=0, le=1000), _digits(4, PERCENT_SCALE)]
Money = Annotated[ExactDecimal, Field(ge=0), _digits(*AMOUNT_DIGITS)]


class PricingDeclaration(_Strict):
    """Coalition-wide pricing: the exchange's fee and the tier bonus by coalition level."""

    fee_percent: Percent = Decimal(0)
    fee_fixed: Money = Decimal(0)
    tier_bonus_percent: list[Percent] = Field(
        default_factory=list,
        description="Extra points, as a percent of base points, by coalition level (index = level).",
    )


class TierDeclaration(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=60)]
    level: Annotated[int, Field(strict=True)]


class LimitsDeclaration(_Strict):
    """Conversion limits on points leaving the program, and its issuing budget."""

    minimum_points: Count = 1
    increment: Count = 1
    member_daily_cap: Count | None = None
    member_monthly_cap: Count | None = None
    member_yearly_cap: Count | None = None
    monthly_issue_budget: Count | None = Field(
        default=None,
        description="Points the program is willing to issue through the exchange a month.",
    )

    @model_validator(mode="after")
    def _minimum_is_a_step(self) -> LimitsDeclaration:
        if self.minimum_points % self.increment:
            raise ValueError(f"minimum_points {self.minimum_points} is not a multiple of increment {self.increment}")
        return self


class BudgetDeclaration(_Strict):
    """What the partner's finance team plans to spend on issuing points: alerts, never a refusal
    (``limits.monthly_issue_budget`` is the cap that refuses conversions)."""

    monthly_issue: Annotated[ExactDecimal, Field(gt=0), _digits(*AMOUNT_DIGITS)] = Field(
        description="Value (settlement currency) of the points the program plans to issue "
        "through the exchange a calendar month; the books warn at 80 % and 100 % of it."
    )


def _ratio(value: object) -> Ratio:
    if isinstance(value, Ratio):
        return value
    if not isinstance(value, str):
        raise ValueError('must be a ratio string like "3:1"')
    return Ratio.parse(value)


RatioText = Annotated[Ratio, BeforeValidator(_ratio)]


class BandDeclaration(_Strict):
    from_points: Annotated[Count, Field(alias="from")]
    ratio: RatioText


class StepBonusDeclaration(_Strict):
    every: Count
    points: Count


class PairLimitsDeclaration(_Strict):
    """Limits of one pair; each, when given, applies on top of the source program's own."""

    minimum_points: Count | None = None
    increment: Count | None = None
    member_daily_cap: Count | None = None
    member_monthly_cap: Count | None = None
    member_yearly_cap: Count | None = None


class RateDeclaration(PairLimitsDeclaration):
    """A pair override for conversions from program ``from`` into the declaring program."""

    source: Annotated[str, Field(alias="from")]
    ratio: RatioText | None = None
    bands: list[BandDeclaration] | None = None
    bonus: StepBonusDeclaration | None = None
    fee_percent: Percent | None = None
    fee_fixed: Money | None = None

    @model_validator(mode="after")
    def _one_way_to_convert(self) -> RateDeclaration:
        if self.ratio is not None and self.bands is not None:
            raise ValueError("give either ratio or bands, not both")
        if self.bands is not None:
            starts = [band.from_points for band in self.bands]
            if not starts or starts != sorted(set(starts)):
                raise ValueError(f"bands must rise by their 'from', found {starts}")
        return self


class PromotionDeclaration(_Strict):
    """A time-limited bonus on conversions into the declaring program."""

    id: Annotated[str, Field(pattern=PROGRAM_ID_PATTERN.pattern)]
    bonus_percent: Annotated[Percent, Field(gt=0)]
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    sources: list[str] | None = Field(default=None, alias="from")

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> PromotionDeclaration:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class PointExpiry(StrEnum):
    """When a lot of coalition points lapses, counted from the instant it was earned."""

    #: At the end of the calendar year after the one it was earned in, in the point's time zone.
    END_OF_NEXT_YEAR = "end-of-next-year"


class BreakageKeeper(StrEnum):
    """Who keeps the value of coalition points that expire unspent."""

    #: The exchange's operator, who issued them (``coalition-breakage`` account).
    OPERATOR = "operator"
    #: The partner whose program funded each expired lot gets its value back.
    FUNDING_PARTNERS = "funding-partners"


class PointDeclaration(_PointsProgram):
    """``[point]`` of ``coalition.toml``: the coalition point, a program the exchange itself
    keeps (its balances live in the exchange's database, in lots that expire).

    ``rates`` declare pair overrides into the point, like a program file's ``[[rates]]``;
    rates out of it are declared in the target program's file (``from = "<point id>"``).
    """

    expiry: PointExpiry = PointExpiry.END_OF_NEXT_YEAR
    timezone: str = Field(description="The zone whose calendar the expiry follows (the settlement time zone).")
    breakage: BreakageKeeper = BreakageKeeper.OPERATOR
    rates: list[RateDeclaration] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone") from None
        return value


class CoalitionDeclaration(_Strict):
    """``coalition.toml``: what every program in the coalition shares."""

    settlement_currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    currency_minor_units: Annotated[int, Field(ge=0, le=4, strict=True)]
    ladder: Annotated[list[LadderLevel], Field(min_length=1)]
    pricing: PricingDeclaration = PricingDeclaration()
    point: PointDeclaration | None = Field(
        default=None, description="The coalition point the exchange itself issues (docs/COALITION.md)."
    )

    @model_validator(mode="after")
    def _tier_bonus_per_level(self) -> CoalitionDeclaration:
        bonuses = self.pricing.tier_bonus_percent
        if bonuses and len(bonuses) != len(self.ladder):
            raise ValueError(
                f"pricing.tier_bonus_percent has {counted(len(bonuses), 'entry')} for "
                f"{counted(len(self.ladder), 'ladder level')}"
            )
        return self

    @field_validator("ladder")
    @classmethod
    def _levels_are_0_to_n(cls, ladder: list[LadderLevel]) -> list[LadderLevel]:
        levels = [entry.level for entry in ladder]
        if levels != list(range(len(ladder))):
            raise ValueError(f"levels must be 0..{len(ladder) - 1} in order, found {levels}")
        names = [entry.name for entry in ladder]
        if len(set(names)) != len(names):
            raise ValueError(f"level names must be unique, found {names}")
        return ladder

    @property
    def top_level(self) -> int:
        return self.ladder[-1].level


SECRET_SOURCES = ("client_secret", "client_secret_env", "client_secret_file")


class OAuthClientDeclaration(_Strict):
    """How the exchange authenticates to the partner's points system."""

    token_url: PartnerAPIAddress
    client_id: Annotated[str, Field(min_length=1)]
    client_secret: str | None = Field(
        default=None, description="Inline secret; only for sandbox partners (production refuses it)."
    )
    client_secret_env: str | None = Field(default=None, description="Environment variable holding the secret.")
    client_secret_file: str | None = Field(
        default=None, description="Absolute path of a file holding the secret (a mounted secret, say)."
    )
    scope: str | None = None

    @field_validator("client_secret_file")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        # Absolute, because the gateway reads it, from whatever directory it runs in.
        if value is not None and not Path(value).is_absolute():
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_secret_source(self) -> OAuthClientDeclaration:
        if sum(getattr(self, source) is not None for source in SECRET_SOURCES) != 1:
            raise ValueError("give exactly one of client_secret, client_secret_env or client_secret_file")
        return self


class ConnectorDeclaration(_Strict):
    kind: Literal["rest", "graphql"]
    mode: Literal["realtime", "async", "batch"] = Field(
        default="realtime",
        description="How the partner settles writes: at once (realtime, though it may still answer "
        "pending), later with a signed callback (async), or credits by a daily file (batch); "
        "partners/CONTRACT.md, 'Partners that answer later'.",
    )
    base_url: PartnerAPIAddress
    timeout_seconds: Annotated[ExactDecimal, Field(gt=0, le=60)] = Decimal("2")
    oauth: OAuthClientDeclaration
    sign_in_url: PartnerPageAddress | None = Field(
        default=None,
        description="The partner's member sign-in page, where the portal sends members to sign in "
        "(partners/CONTRACT.md); without it, members cannot sign in to the portal through this program.",
    )


class ChallengeDeclaration(_Strict):
    """What a matched member must do within the match's validity to keep the tier longer.

    Exactly one of ``points`` (points earned at the program) or ``activities`` (qualifying
    activities: flights, stays, purchases), as the partner reports them.
    """

    points: Count | None = None
    activities: Count | None = None
    extend_days: Annotated[int, Field(ge=1, le=730, strict=True)] = Field(
        description="How much longer the tier is kept, from the match's expiry, once the challenge is met."
    )

    @model_validator(mode="after")
    def _one_goal(self) -> ChallengeDeclaration:
        if (self.points is None) == (self.activities is None):
            raise ValueError("give exactly one of points or activities")
        return self


class StatusMatchDeclaration(_Strict):
    """Whether (and how) the program recognises tiers members hold in other programs."""

    grants: bool
    max_level: Level | None = Field(
        default=None, description="The highest coalition level a match grants (required when granting)."
    )
    valid_days: Annotated[int, Field(ge=1, le=730, strict=True)] | None = Field(
        default=None, description="How long a matched tier lasts (required when granting)."
    )
    challenge: ChallengeDeclaration | None = None

    @model_validator(mode="after")
    def _complete_when_granting(self) -> StatusMatchDeclaration:
        given = [name for name in ("max_level", "valid_days", "challenge") if getattr(self, name) is not None]
        if not self.grants and given:
            raise ValueError(f"a program that grants no matches takes no {', '.join(given)}")
        if self.grants and (self.max_level is None or self.valid_days is None):
            raise ValueError("a program that grants matches needs max_level and valid_days")
        return self


class VelocityDeclaration(_Strict):
    """At most ``max_count`` conversions, or ``max_points`` points, out of the program within
    ``window_seconds``: per member (all their conversions, from any program) or per account
    (those debiting the member's account at this program)."""

    per: Literal["member", "account"]
    window_seconds: Annotated[int, Field(ge=60, le=366 * 86400, strict=True)]
    max_count: Count | None = None
    max_points: Count | None = None

    @model_validator(mode="after")
    def _some_limit(self) -> VelocityDeclaration:
        if self.max_count is None and self.max_points is None:
            raise ValueError("give max_count, max_points or both")
        return self


class RiskDeclaration(_Strict):
    """The program's risk gates on points leaving its members' accounts: conversions out of it and
    redemptions paid with its points (``exchange.risk``)."""

    velocity: list[VelocityDeclaration] = Field(default_factory=list)
    cooling_period_seconds: Annotated[int, Field(ge=0, le=90 * 86400, strict=True)] = Field(
        default=0, description="How long after an account is linked its points may first leave it."
    )
    refuse_name_mismatch: bool = Field(
        default=False,
        description="Linking needs the member's name, matching the partner's record; a conversion (or "
        "redemption) is refused when the names its two partners (the paying program and the target, or "
        "the reward's publisher) have for the member differ.",
    )
    hold_above_points: Count | None = Field(
        default=None,
        description="A conversion or redemption of more points waits for staff to approve it.",
    )
    hold_expires_after_seconds: Annotated[int, Field(ge=3600, le=90 * 86400, strict=True)] = Field(
        default=int(HOLD_EXPIRES_AFTER.total_seconds()),
        description="How long a held conversion or redemption waits for staff; then it ends FAILED (HOLD_EXPIRED), nothing moved.",
    )


class RewardDeclaration(_Strict):
    """A reward the program's partner publishes from the start (``exchange partners load``
    creates it once; from then on its stock is live and the partner manages it)."""

    id: Annotated[str, Field(pattern=PROGRAM_ID_PATTERN.pattern)]
    title: Annotated[str, Field(min_length=1, max_length=120)]
    description: Annotated[str, Field(max_length=1000)] = ""
    kind: Literal["direct", "lottery"] = "direct"
    price: Annotated[ExactDecimal, Field(gt=0), _digits(MAX_MONEY_INTEGER_DIGITS, 4)]
    stock: Annotated[int, Field(ge=0, le=1_000_000, strict=True)]
    per_member_limit: Count | None = None
    min_level: Level = 0
    available_from: AwareDatetime | None = None
    available_until: AwareDatetime | None = None


class ProgramDeclaration(_PointsProgram):
    """One ``<program-id>.toml``."""

    category: Literal["wallet", "coalition-card", "supermarket", "bank-card", "music", "airline", "hotel"]
    tiers: Annotated[list[TierDeclaration], Field(min_length=1)]
    limits: LimitsDeclaration = LimitsDeclaration()
    budget: BudgetDeclaration | None = None
    rates: list[RateDeclaration] = Field(default_factory=list)
    promotions: list[PromotionDeclaration] = Field(default_factory=list)
    status_match: StatusMatchDeclaration = StatusMatchDeclaration(grants=False)
    rewards: list[RewardDeclaration] = Field(default_factory=list)
    risk: RiskDeclaration | None = None
    connector: ConnectorDeclaration

    @field_validator("tiers")
    @classmethod
    def _tiers_rise(cls, tiers: list[TierDeclaration]) -> list[TierDeclaration]:
        names = [tier.name for tier in tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, found {names}")
        levels = [tier.level for tier in tiers]
        if levels != sorted(levels):
            raise ValueError(f"tiers must be listed lowest level first, found levels {levels}")
        return tiers


@dataclass(frozen=True, slots=True)
class PartnersDirectory:
    """A validated partners directory: the coalition and its programs, by id."""

    coalition: CoalitionDeclaration
    programs: tuple[ProgramDeclaration, ...]
    """The partners' programs (``kind: PARTNER``); the coalition point is ``coalition.point``."""

    @property
    def priced(self) -> tuple[ProgramDeclaration | PointDeclaration, ...]:
        """Every program that rates join: the partners' and, if declared, the coalition point."""
        point = self.coalition.point
        return self.programs if point is None else (*self.programs, point)


def _format_location(location: Iterable[int | str]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _reason(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required field is missing"
    return str(error["msg"]).removeprefix("Value error, ")


def _parse(path: Path, model: type[_Strict]) -> Any:
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise DeclarationError(path, None, f"invalid TOML: {exc}") from None
    except OSError as exc:
        raise DeclarationError(path, None, f"cannot be read: {exc.strerror}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DeclarationError(path, _format_location(first["loc"]) or None, _reason(first)) from None


def _check_tiers_against_ladder(path: Path, program: ProgramDeclaration, coalition: CoalitionDeclaration) -> None:
    for index, tier in enumerate(program.tiers):
        if not 0 <= tier.level <= coalition.top_level:
            raise DeclarationError(
                path,
                f"tiers[{index}].level",
                f"{tier.level} is outside the coalition ladder (levels 0..{coalition.top_level})",
            )


def _check_status_match(path: Path, program: ProgramDeclaration, coalition: CoalitionDeclaration) -> None:
    """Levels named by the status-match policy and by rewards lie on the ladder."""
    levels = [("status_match.max_level", program.status_match.max_level)] + [
        (f"rewards[{index}].min_level", reward.min_level) for index, reward in enumerate(program.rewards)
    ]
    for field, level in levels:
        if level is not None and level > coalition.top_level:
            raise DeclarationError(
                path, field, f"{level} is outside the coalition ladder (levels 0..{coalition.top_level})"
            )


def _check_budget(path: Path, program: ProgramDeclaration, coalition: CoalitionDeclaration) -> None:
    """A budget is an amount of the settlement currency: no finer than its minor unit."""
    if program.budget is not None and decimal_places(program.budget.monthly_issue) > coalition.currency_minor_units:
        raise DeclarationError(
            path,
            "budget.monthly_issue",
            f"{program.budget.monthly_issue} is finer than the minor unit of {coalition.settlement_currency}",
        )


def _check_secret_source(path: Path, program: ProgramDeclaration, *, allow_inline_secrets: bool) -> None:
    """No inline secret where they are not allowed; a secret file that is there and holds one."""
    oauth = program.connector.oauth
    if oauth.client_secret is not None and not allow_inline_secrets:
        raise DeclarationError(
            path,
            "connector.oauth.client_secret",
            "an inline secret is refused in production: name client_secret_env or client_secret_file",
        )
    if oauth.client_secret_file is not None:
        try:
            read_secret_file(Path(oauth.client_secret_file))
        except SecretUnavailable as unavailable:
            raise DeclarationError(path, "connector.oauth.client_secret_file", str(unavailable)) from None


def read_partners_directory(
    directory: Path, *, allow_inline_secrets: bool = True, named_by: str = "EXCHANGE_PARTNERS_DIR"
) -> PartnersDirectory:
    """Read and validate ``coalition.toml`` and every program file in ``directory``.

    Production passes ``allow_inline_secrets=False``: connector secrets then come from the
    environment or a file, never from the declaration itself. A declared secret file is read
    here too, so that a missing or empty one fails the load rather than the first call.
    ``named_by`` says how the caller's user names another directory (a command passes its
    option, and the variable where the command reads it), for the refusal of a missing one.
    """
    if not directory.is_dir():
        raise DeclarationError(
            directory,
            None,
            "is not a directory: the program declarations are read from it (run where it is, or name"
            f" another with {named_by})",
        )
    coalition_path = directory / COALITION_FILE
    if not coalition_path.exists():
        raise DeclarationError(coalition_path, None, "is missing (it declares the currency and tier ladder)")
    coalition: CoalitionDeclaration = _parse(coalition_path, CoalitionDeclaration)

    programs: list[ProgramDeclaration] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.toml")):
        if path.name == COALITION_FILE:
            continue
        program: ProgramDeclaration = _parse(path, ProgramDeclaration)
        _check_tiers_against_ladder(path, program, coalition)
        _check_status_match(path, program, coalition)
        _check_budget(path, program, coalition)
        _check_secret_source(path, program, allow_inline_secrets=allow_inline_secrets)
        if program.id in seen:
            raise DeclarationError(path, "id", f"duplicate id {program.id!r} (also in {seen[program.id]})")
        seen[program.id] = path
        programs.append(program)
    if not programs:
        raise DeclarationError(directory, None, "declares no programs (*.toml)")
    if coalition.point is not None:
        if coalition.point.id in seen:
            raise DeclarationError(
                coalition_path,
                "point.id",
                f"{coalition.point.id!r} is also a program's id ({seen[coalition.point.id]})",
            )
        seen[coalition.point.id] = coalition_path
    _check_references(seen, programs, coalition.point)
    return PartnersDirectory(coalition=coalition, programs=tuple(programs))


def _check_rates(paths: dict[str, Path], target: ProgramDeclaration | PointDeclaration, *, prefix: str = "") -> None:
    """``target``'s rates come from other declared programs (the coalition point counts), one each."""
    path = paths[target.id]
    sources: set[str] = set()
    for index, rate in enumerate(target.rates):
        field = f"{prefix}rates[{index}].from"
        if rate.source not in paths or rate.source == target.id:
            raise DeclarationError(path, field, f"{rate.source!r} is not another declared program")
        if rate.source in sources:
            raise DeclarationError(path, field, f"a second rate from {rate.source!r}")
        sources.add(rate.source)


def _check_references(
    paths: dict[str, Path], programs: list[ProgramDeclaration], point: PointDeclaration | None
) -> None:
    """Rates and promotions name programs that exist; reward ids are unique, promotion ids
    unique within their program (a promotion is named by its program and its id)."""
    if point is not None:
        _check_rates(paths, point, prefix="point.")
    reward_ids: dict[str, Path] = {}
    for program in programs:
        path = paths[program.id]
        _check_rates(paths, program)
        promotion_ids: set[str] = set()
        for index, promotion in enumerate(program.promotions):
            for source in promotion.sources or ():
                if source not in paths or source == program.id:
                    raise DeclarationError(
                        path, f"promotions[{index}].from", f"{source!r} is not another declared program"
                    )
            if promotion.id in promotion_ids:
                raise DeclarationError(path, f"promotions[{index}].id", f"duplicate promotion id {promotion.id!r}")
            promotion_ids.add(promotion.id)
        for index, reward in enumerate(program.rewards):
            if reward.id in reward_ids:
                raise DeclarationError(
                    path,
                    f"rewards[{index}].id",
                    f"duplicate reward id {reward.id!r} (also in {reward_ids[reward.id]})",
                )
            reward_ids[reward.id] = path
