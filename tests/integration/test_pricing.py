"""Rate versions, promotions, quotes and limits, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from exchange.db.database import Database
from exchange.errors import BadUserInput, IdempotencyConflict, NotFound
from exchange.loading import load_directory
from exchange.pricing import limits, promotions, quotes, rates
from exchange.pricing.errors import (
    LimitExceeded,
    ManagedByOperator,
    QuoteExpired,
    QuoteNotFound,
)
from exchange.pricing.rates import Origin, PairOverride
from exchange.programs import service as programs
from exchange.programs.declarations import read_partners_directory
from exchange.ratio import Ratio
from tests.conftest import SAMPLE_PARTNERS

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
POLICY = quotes.QuotePolicy(ttl=timedelta(seconds=60), timezone=ZoneInfo("Asia/Taipei"))


async def load(db: Database, directory: Path = SAMPLE_PARTNERS, at: datetime = T0) -> int:
    async with db.transaction() as session:
        return (await load_directory(session, read_partners_directory(directory), at)).rate_versions_started


def edited(tmp_path: Path, file: str, old: str, new: str) -> Path:
    directory = tmp_path / "partners"
    if not directory.exists():
        shutil.copytree(SAMPLE_PARTNERS, directory)
    path = directory / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    return directory


def quote_request(
    points: int, source: str = "happy-card", target: str = "fresh-mart", member: str = "m1", level: int = 0
) -> quotes.QuoteRequest:
    return quotes.QuoteRequest(member_id=member, member_level=level, source=source, target=target, points=points)


async def test_every_pair_gets_a_version_and_reloading_adds_none(db: Database) -> None:
    assert await load(db) == 42  # 7 × 6 ordered pairs: six partners' programs and the coalition point
    assert await load(db, at=T0 + timedelta(hours=1)) == 0
    async with db.transaction() as session:
        declared = await rates.version_at(session, "harbor-bank", "formosa-air", T0)
        derived = await rates.version_at(session, "wallet-pay", "fresh-mart", T0)
    assert (declared.origin, declared.bands, declared.bonus_every, declared.bonus_points) == (
        Origin.DECLARED,
        [[1, 10, 1]],
        60000,
        1000,
    )
    assert (derived.origin, derived.bands, derived.fee_percent) == (Origin.DERIVED, [], Decimal(2))
    assert (derived.source_point_value, derived.target_point_value) == (Decimal(1), Decimal("0.1"))


async def test_a_point_value_change_supersedes_every_pair_of_that_program(db: Database, tmp_path: Path) -> None:
    await load(db)
    async with db.transaction() as session:
        old_quote = await quotes.create_quote(session, quote_request(1000), policy=POLICY, now=T0)
    later = T0 + timedelta(days=3)
    directory = edited(tmp_path, "fresh-mart.toml", 'point_value = "0.1"', 'point_value = "0.125"')
    # 6 pairs out of fresh-mart and 6 into it: the other five partners and the coalition point
    assert await load(db, directory, later) == 12
    async with db.transaction() as session:
        history = await rates.history(session, "happy-card", "fresh-mart")
        new_quote = await quotes.create_quote(session, quote_request(1000), policy=POLICY, now=later)
    assert [(v.version, v.effective_from, v.effective_to) for v in history] == [(2, later, None), (1, T0, later)]
    assert old_quote.rate_version_id == history[1].id and old_quote.points_out == 2450
    assert new_quote.rate_version_id == history[0].id and new_quote.points_out == 1960  # 245 / 0.125


async def test_a_partner_sets_and_clears_its_own_override(db: Database) -> None:
    await load(db)
    later = T0 + timedelta(hours=2)
    async with db.transaction() as session:
        version = await rates.set_partner_override(
            session,
            target="fresh-mart",
            source="wallet-pay",
            override=PairOverride.fixed(Ratio(1, 10)),
            actor="client:fresh-mart",
            now=later,
        )
        quote = await quotes.create_quote(session, quote_request(100, "wallet-pay"), policy=POLICY, now=later)
    assert (version.version, version.origin, version.created_by) == (2, Origin.PARTNER, "client:fresh-mart")
    assert quote.points_out == 1000  # 1:10, the fee borne by fresh-mart (the derived rate pays 980)
    assert await load(db, at=later + timedelta(hours=1)) == 0  # the operator's reload keeps it
    async with db.transaction() as session:
        cleared = await rates.set_partner_override(
            session,
            target="fresh-mart",
            source="wallet-pay",
            override=PairOverride(),
            actor="client:fresh-mart",
            now=later + timedelta(hours=2),
        )
    assert (cleared.version, cleared.origin, cleared.bands) == (3, Origin.DERIVED, [])


async def test_a_declared_pair_is_the_operators_alone(db: Database) -> None:
    await load(db)
    with pytest.raises(ManagedByOperator) as caught:
        async with db.transaction() as session:
            await rates.set_partner_override(
                session,
                target="formosa-air",
                source="harbor-bank",
                override=PairOverride.fixed(Ratio(1, 1)),
                actor="client:formosa-air",
                now=T0,
            )
    assert caught.value.extensions()["code"] == "FORBIDDEN"


async def test_quotes_fix_the_breakdown(db: Database, tmp_path: Path) -> None:
    # Without a coalition point, so that the declared pair itself prices the quote.
    coalition = (SAMPLE_PARTNERS / "coalition.toml").read_text()
    await load(db, edited(tmp_path, "coalition.toml", coalition[coalition.index("[point]") :], ""))
    async with db.transaction() as session:
        quote = await quotes.create_quote(
            session, quote_request(60000, "harbor-bank", "formosa-air", level=4), policy=POLICY, now=T0
        )
    assert (quote.points_in, quote.base_points, quote.step_bonus_points, quote.tier_bonus_points) == (
        60000,
        6000,
        1000,
        300,
    )
    assert quote.points_out == 7300
    assert quote.value_cap_points == 0  # 7,300 miles are worth less than the 7,500 that 3,000.00 buy
    assert (quote.money_value_minor, quote.fee_minor, quote.currency) == (300000, 6000, "TWD")
    assert quote.expires_at == T0 + timedelta(seconds=60)


async def test_a_declared_rate_the_coalition_point_beats_is_routed_through_it(db: Database) -> None:
    await load(db)  # harbor-bank → formosa-air is declared 10:1 (6,000 + 1,000 bonus for 60,000)
    async with db.transaction() as session:
        quote = await quotes.create_quote(
            session, quote_request(60000, "harbor-bank", "formosa-air", level=4), policy=POLICY, now=T0
        )
    # 3,000.00 less 60.00 is 2,940 coalition points + 5% (147), cut to the 3,000 points that
    # 3,000.00 are worth; those are 3,000.00, less 60.00: 7,350 miles + 5% (367) cut to the 7,500
    # miles 3,000.00 buy, the last leg's breakdown. Directly: 6,000 + 1,000 bonus.
    assert [
        (leg["to_program"], leg["points_in"], leg["points_out"], leg["fee_minor"]) for leg in quote.route or []
    ] == [
        ("coalition", 60000, 3000, 6000),
        ("formosa-air", 3000, 7500, 6000),
    ]
    assert (quote.points_out, quote.base_points, quote.step_bonus_points, quote.tier_bonus_points) == (
        7500,
        7350,
        0,
        150,
    )
    assert quote.value_cap_points == 7350 + 367 - 7500, "the cut is named, the parts still add up to points out"
    assert (quote.money_value_minor, quote.fee_minor) == (300000, 6000 + 6000)


async def test_promotions_apply_in_their_window_and_to_their_sources(db: Database) -> None:
    await load(db)
    during = datetime(2026, 12, 20, tzinfo=UTC)
    async with db.transaction() as session:
        promoted = await quotes.create_quote(
            session, quote_request(3000, "fresh-mart", "formosa-air"), policy=POLICY, now=during
        )
        other_source = await quotes.create_quote(
            session, quote_request(1000, "wallet-pay", "formosa-air"), policy=POLICY, now=during
        )
        before = await quotes.create_quote(
            session, quote_request(3000, "fresh-mart", "formosa-air"), policy=POLICY, now=T0
        )
    assert promoted.promotions == [{"id": "formosa-air-year-end-2026", "bonus_percent": "10"}]
    # 3,000 fresh-mart points are 300.00, less 6.00: 735 miles, + 10% (73) cut to the 750 miles
    # 300.00 buy: a promotion on a derived rate gives back at most the fee.
    assert (promoted.base_points, promoted.promotion_bonus_points, promoted.points_out) == (735, 15, 750)
    assert promoted.value_cap_points == 735 + 73 - 750
    assert before.value_cap_points == 0
    assert before.points_out == 735
    assert other_source.promotions == [] and before.promotions == []


async def test_partner_promotions_are_idempotent_and_end_early(db: Database) -> None:
    await load(db)
    terms = promotions.PromotionTerms(
        id="fm-weekend",
        program_id="fresh-mart",
        bonus_percent=Decimal("20"),
        starts_at=T0,
        ends_at=T0 + timedelta(days=2),
    )
    async with db.transaction() as session:
        first = await promotions.create_promotion(session, terms, actor="client:fresh-mart", now=T0)
        again = await promotions.create_promotion(session, terms, actor="client:fresh-mart", now=T0)
        assert again.created_at == first.created_at
        with pytest.raises(IdempotencyConflict):
            await promotions.create_promotion(
                session, replace(terms, bonus_percent=Decimal(30)), actor="client:fresh-mart", now=T0
            )
        with pytest.raises(NotFound):
            await promotions.end_promotion(session, program_id="wallet-pay", promotion_id="fm-weekend", now=T0)
        ended = await promotions.end_promotion(
            session, program_id="fresh-mart", promotion_id="fm-weekend", now=T0 + timedelta(hours=1)
        )
        assert ended.ends_at == T0 + timedelta(hours=1)
        active = await promotions.active_promotions(
            session, source="wallet-pay", target="fresh-mart", at=T0 + timedelta(hours=2)
        )
    assert active == ()


async def test_a_promotion_repeated_after_its_time_answers_it_and_new_terms_ending_then_are_refused(
    db: Database,
) -> None:
    await load(db)
    terms = promotions.PromotionTerms(
        id="fm-short",
        program_id="fresh-mart",
        bonus_percent=Decimal("20"),
        starts_at=T0,
        ends_at=T0 + timedelta(days=1),
    )
    later = T0 + timedelta(days=3)
    async with db.transaction() as session:
        made = await promotions.create_promotion(session, terms, actor="client:fresh-mart", now=T0)
        again = await promotions.create_promotion(session, terms, actor="client:fresh-mart", now=later)
        assert (again.created_at, again.ends_at) == (made.created_at, terms.ends_at)
        with pytest.raises(BadUserInput) as refused:
            await promotions.create_promotion(
                session, replace(terms, id="fm-late"), actor="client:fresh-mart", now=later
            )
    assert refused.value.field == "endsAt"


async def test_expired_and_foreign_quotes(db: Database) -> None:
    await load(db)
    async with db.transaction() as session:
        quote = await quotes.create_quote(session, quote_request(1000), policy=POLICY, now=T0)
        mine = await quotes.member_quote(session, quote.id, "m1")
        quotes.ensure_open(mine, T0 + timedelta(seconds=59))
        with pytest.raises(QuoteExpired) as caught:
            quotes.ensure_open(mine, T0 + timedelta(seconds=60))
        assert caught.value.extensions() == {"code": "QUOTE_EXPIRED", "field": "quoteId"}
        for other in (("m2", quote.id), ("m1", "not-a-uuid")):
            with pytest.raises(QuoteNotFound):
                await quotes.member_quote(session, other[1], other[0])


@pytest.mark.parametrize(
    ("points", "source", "target", "limit"),
    [
        (3500, "formosa-air", "wallet-pay", "increment"),
        (2000, "formosa-air", "wallet-pay", "minimum_points"),
        (9000, "harbor-bank", "formosa-air", "minimum_points"),  # the pair's minimum is 10,000
        (15000, "harbor-bank", "formosa-air", "increment"),  # ... in steps of 10,000
    ],
)
async def test_amount_rules_name_the_limit(db: Database, points: int, source: str, target: str, limit: str) -> None:
    await load(db)
    with pytest.raises(LimitExceeded) as caught:
        async with db.transaction() as session:
            await quotes.create_quote(session, quote_request(points, source, target), policy=POLICY, now=T0)
    assert caught.value.extensions()["limit"] == limit


@pytest.mark.parametrize("points", [0, -5, limits.MAX_POINTS + 1])
async def test_non_positive_and_oversized_amounts_are_bad_input(db: Database, points: int) -> None:
    await load(db)
    with pytest.raises(BadUserInput) as caught:
        async with db.transaction() as session:
            await quotes.create_quote(session, quote_request(points), policy=POLICY, now=T0)
    assert caught.value.field == "points"


async def usages_for(db: Database, request: quotes.QuoteRequest, at: datetime) -> list[limits.Usage]:
    async with db.transaction() as session:
        quote = await quotes.create_quote(session, request, policy=POLICY, now=at)
        source = await programs.get_program(session, request.source)
        target = await programs.get_program(session, request.target)
        version = await rates.version_at(session, request.source, request.target, at)
    return limits.conversion_usages(
        member_id=request.member_id,
        source=source,
        target=target,
        version=version,
        points_in=quote.points_in,
        points_out=quote.points_out,
        at=at,
        timezone=POLICY.timezone,
    )


async def test_daily_caps_count_per_member_and_report_the_room_left(db: Database) -> None:
    await load(db)  # wallet-pay: 20,000 a member a day
    usages = await usages_for(db, quote_request(15000, "wallet-pay"), T0)
    async with db.transaction() as session:
        await limits.reserve(session, usages)
    with pytest.raises(LimitExceeded) as caught:
        async with db.transaction() as session:
            await quotes.create_quote(session, quote_request(6000, "wallet-pay"), policy=POLICY, now=T0)
    assert (caught.value.limit, caught.value.remaining) == ("member_daily_cap", 5000)
    async with db.transaction() as session:  # another member, and the next day in Taipei, have room
        await quotes.create_quote(session, quote_request(6000, "wallet-pay", member="m2"), policy=POLICY, now=T0)
        await quotes.create_quote(session, quote_request(6000, "wallet-pay"), policy=POLICY, now=T0 + timedelta(days=1))
    async with db.transaction() as session:
        await limits.release(session, usages)
        await quotes.create_quote(session, quote_request(20000, "wallet-pay"), policy=POLICY, now=T0)


async def test_a_pair_cap_applies_on_top_of_the_programs(db: Database) -> None:
    await load(db)  # tune-stream → wallet-pay: at most 20,000 a member a month
    for day in (0, 1):  # 8,000 a day fits tune-stream's own 10,000 daily cap
        usages = await usages_for(db, quote_request(8000, "tune-stream", "wallet-pay"), T0 + timedelta(days=day))
        assert "pair_member_monthly_cap" in {usage.name for usage in usages}
        async with db.transaction() as session:
            await limits.reserve(session, usages)
    with pytest.raises(LimitExceeded) as caught:
        async with db.transaction() as session:
            await quotes.create_quote(
                session, quote_request(5000, "tune-stream", "wallet-pay"), policy=POLICY, now=T0 + timedelta(days=2)
            )
    assert (caught.value.limit, caught.value.remaining) == ("pair_member_monthly_cap", 4000)


async def test_the_target_programs_monthly_budget(db: Database, tmp_path: Path) -> None:
    directory = edited(tmp_path, "fresh-mart.toml", "monthly_issue_budget = 50000000", "monthly_issue_budget = 3000")
    await load(db, directory)
    with pytest.raises(LimitExceeded) as caught:
        async with db.transaction() as session:
            await quotes.create_quote(session, quote_request(1300), policy=POLICY, now=T0)  # 3185 points out
    assert (caught.value.limit, caught.value.remaining) == ("monthly_issue_budget", 3000)


async def test_parallel_reservations_never_overshoot_a_cap(pg_db: Database) -> None:
    await load(pg_db)
    usages = await usages_for(pg_db, quote_request(6000, "wallet-pay"), T0)  # 20,000 a day: room for 3

    async def reserve() -> bool:
        try:
            async with pg_db.transaction() as session:
                await limits.reserve(session, usages)
        except LimitExceeded:
            return False
        return True

    results = await asyncio.gather(*(reserve() for _ in range(10)))
    assert results.count(True) == 3


async def test_a_reservation_without_room_names_its_limit_and_counts_nothing(db: Database) -> None:
    roomy = limits.Usage("a:roomy", "roomy_cap", 100, 10)
    full = limits.Usage("b:full", "full_cap", 100, 60)
    async with db.transaction() as session:
        await limits.reserve(session, [full])
    with pytest.raises(LimitExceeded) as caught:
        async with db.transaction() as session:
            await limits.reserve(session, [full, roomy])  # a:roomy is counted first, then rolled back
    assert (caught.value.limit, caught.value.remaining) == ("full_cap", 40)
    async with db.transaction() as session:
        assert await limits.used(session, ["a:roomy", "b:full"]) == {"b:full": 60}
