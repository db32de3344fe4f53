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
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from exchange.errors import BadUserInput
from exchange.money import POINT_VALUE_SCALE, decimal_places, parse_decimal

COALITION_FILE = "coalition.toml"
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class LadderLevel(_Strict):
    level: Annotated[int, Field(ge=0, strict=True)]
    name: Annotated[str, Field(min_length=1, max_length=40)]


class CoalitionDeclaration(_Strict):
    """``coalition.toml``: what every program in the coalition shares."""

    settlement_currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    currency_minor_units: Annotated[int, Field(ge=0, le=4, strict=True)]
    ladder: Annotated[list[LadderLevel], Field(min_length=1)]

    @field_validator("ladder")
    @classmethod
    def _levels_are_0_to_n(cls, ladder: list[LadderLevel]) -> list[LadderLevel]:
        levels = [entry.level for entry in ladder]
        if levels != list(range(len(ladder))):
            raise ValueError(
                f"levels must be 0..{len(ladder) - 1} in order, found {levels}"
            )
        names = [entry.name for entry in ladder]
        if len(set(names)) != len(names):
            raise ValueError(f"level names must be unique, found {names}")
        return ladder

    @property
    def top_level(self) -> int:
        return self.ladder[-1].level


class TierDeclaration(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=60)]
    level: Annotated[int, Field(strict=True)]


class LimitsDeclaration(_Strict):
    """Conversion limits on points leaving the program, and its issuing budget."""

    minimum_points: PositiveInt = 1
    increment: PositiveInt = 1
    member_daily_cap: PositiveInt | None = None
    member_monthly_cap: PositiveInt | None = None
    member_yearly_cap: PositiveInt | None = None
    monthly_issue_budget: PositiveInt | None = Field(
        default=None,
        description="Points the program is willing to issue through the exchange a month.",
    )

    @model_validator(mode="after")
    def _minimum_is_a_step(self) -> LimitsDeclaration:
        if self.minimum_points % self.increment:
            raise ValueError(
                f"minimum_points {self.minimum_points} is not a multiple of "
                f"increment {self.increment}"
            )
        return self


class OAuthClientDeclaration(_Strict):
    """How the exchange authenticates to the partner's points system."""

    token_url: Annotated[str, Field(pattern=r"^https?://")]
    client_id: Annotated[str, Field(min_length=1)]
    client_secret: str | None = Field(
        default=None, description="Inline secret; only for sandbox partners."
    )
    client_secret_env: str | None = Field(
        default=None, description="Environment variable holding the secret."
    )
    scope: str | None = None

    @model_validator(mode="after")
    def _one_secret_source(self) -> OAuthClientDeclaration:
        if (self.client_secret is None) == (self.client_secret_env is None):
            raise ValueError("give exactly one of client_secret or client_secret_env")
        return self


class ConnectorDeclaration(_Strict):
    kind: Literal["rest", "graphql"]
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    timeout_seconds: Annotated[ExactDecimal, Field(gt=0, le=60)] = Decimal("2")
    oauth: OAuthClientDeclaration


class ProgramDeclaration(_Strict):
    """One ``<program-id>.toml``."""

    id: str
    name: Annotated[str, Field(min_length=1, max_length=80)]
    category: Literal["wallet", "coalition-card", "supermarket", "bank-card", "music", "airline", "hotel"]
    point_name: Annotated[str, Field(min_length=1, max_length=40)]
    point_value: ExactDecimal
    tiers: Annotated[list[TierDeclaration], Field(min_length=1)]
    limits: LimitsDeclaration = LimitsDeclaration()
    connector: ConnectorDeclaration

    @field_validator("id")
    @classmethod
    def _id_is_a_slug(cls, value: str) -> str:
        if not PROGRAM_ID_PATTERN.match(value):
            raise ValueError(
                "must be lowercase letters, digits and inner hyphens (at most 64)"
            )
        return value

    @field_validator("point_value")
    @classmethod
    def _point_value_is_positive_and_exact(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError(f"must be greater than 0, got {value}")
        if decimal_places(value) > POINT_VALUE_SCALE:
            raise ValueError(f"has more than {POINT_VALUE_SCALE} decimal places: {value}")
        return value

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


def _format_location(location: Iterable[int | str]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _reason(error: dict[str, Any]) -> str:
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
        raise DeclarationError(
            path, _format_location(first["loc"]) or None, _reason(first)
        ) from None


def _check_tiers_against_ladder(
    path: Path, program: ProgramDeclaration, coalition: CoalitionDeclaration
) -> None:
    for index, tier in enumerate(program.tiers):
        if not 0 <= tier.level <= coalition.top_level:
            raise DeclarationError(
                path,
                f"tiers[{index}].level",
                f"{tier.level} is outside the coalition ladder (levels 0..{coalition.top_level})",
            )


def read_partners_directory(directory: Path) -> PartnersDirectory:
    """Read and validate ``coalition.toml`` and every program file in ``directory``."""
    if not directory.is_dir():
        raise DeclarationError(directory, None, "is not a directory")
    coalition_path = directory / COALITION_FILE
    if not coalition_path.exists():
        raise DeclarationError(
            coalition_path, None, "is missing (it declares the currency and tier ladder)"
        )
    coalition: CoalitionDeclaration = _parse(coalition_path, CoalitionDeclaration)

    programs: list[ProgramDeclaration] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.toml")):
        if path.name == COALITION_FILE:
            continue
        program: ProgramDeclaration = _parse(path, ProgramDeclaration)
        _check_tiers_against_ladder(path, program, coalition)
        if program.id in seen:
            raise DeclarationError(path, "id", f"duplicate id {program.id!r} (also in {seen[program.id]})")
        seen[program.id] = path
        programs.append(program)
    if not programs:
        raise DeclarationError(directory, None, "declares no programs (*.toml)")
    return PartnersDirectory(coalition=coalition, programs=tuple(programs))
