"""Resolving many breaks at once: a selection by ids or filters, all or none, idempotent."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from exchange.errors import BadUserInput, IdempotencyConflict, NotFound
from exchange.ledger.models import LedgerTransaction
from exchange.ledger.verify import verify_ledger
from exchange.services.settlement import SettlementService
from exchange.settlement.break_kinds import BreakKind, Resolution
from exchange.settlement.breaks import BreakSelection, BulkResolveRequest, ResolveRequest, list_breaks, resolution_trail
from exchange.settlement.errors import BadAdjustment, CountedElsewhere, PartnerSignedOff
from exchange.settlement.models import BreakResolution, Reconciliation, ReconciliationBreak
from exchange.settlement.reconciliation import unresolved_breaks
from exchange.testing.clock import FrozenClock
from tests.integration.settlement.conftest import NOVEMBER, close, conversion, post, redemption, served
from tests.reads import rows_read

FILE = """reference,amount,counterparty,date
conversion:c1,-99.00,,2026-11-20
redemption:r1,24.00,wallet-pay,
conversion:zzz,50.00,formosa-air,2026-11-29
conversion:yyy,7.00,formosa-air,
conversion:c1,-100,,
"""


@pytest.fixture
async def closed(settlement: SettlementService, clock: FrozenClock) -> SettlementService:
    await post(
        settlement,
        [
            conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200),
            redemption("r1", "wallet-pay", "fresh-mart", 2_500, fee=25),
            conversion("c4", "fresh-mart", "tune-stream", 700),
        ],
    )
    await close(settlement, clock, "2026-11")
    return settlement


async def imported(service: SettlementService, text: str = FILE) -> Reconciliation:
    view = await service.import_records("fresh-mart", "2026-11", io.BytesIO(text.encode()), by="x")
    return view.reconciliation


def bulk(
    selection: BreakSelection, resolution: Resolution = Resolution.ACCEPT_LEDGER, **given: str
) -> BulkResolveRequest:
    return BulkResolveRequest(
        partner=given.pop("partner", "fresh-mart"),
        period=given.pop("period", "2026-11"),
        selection=selection,
        resolution=resolution,
        reason=given.pop("reason", "agreed with fresh-mart"),
        actor=given.pop("actor", "alice@settlement"),
        **given,
    )


async def ids_of(service: SettlementService, reconciliation: Reconciliation, kind: BreakKind) -> tuple[int, ...]:
    return tuple(view.row.id or 0 for view in await service.breaks(reconciliation, kind=kind))


async def test_a_filter_resolves_every_open_break_of_its_class_recording_who_and_why(closed: SettlementService) -> None:
    reconciliation = await imported(closed)
    done = await closed.resolve_many(bulk(BreakSelection(kind=BreakKind.MISSING_IN_LEDGER)))
    assert (done.resolved, done.unchanged, done.reconciliation.unresolved) == (2, 0, 4)
    views = await closed.breaks(reconciliation, kind=BreakKind.MISSING_IN_LEDGER)
    assert {
        (v.resolution.resolution, v.resolution.reason, v.resolution.resolved_by) for v in views if v.resolution
    } == {("ACCEPT_LEDGER", "agreed with fresh-mart", "alice@settlement")}
    again = await closed.resolve_many(bulk(BreakSelection(kind=BreakKind.MISSING_IN_LEDGER)))
    assert (again.resolved, again.reconciliation.unresolved) == (0, 4)


async def test_a_counterparty_filter_takes_only_the_lines_naming_it(closed: SettlementService) -> None:
    await imported(closed)
    done = await closed.resolve_many(bulk(BreakSelection(counterparty="formosa-air")))
    assert (done.resolved, done.reconciliation.unresolved) == (2, 4)


async def test_named_ids_repeat_idempotently_and_refuse_a_different_resolution(closed: SettlementService) -> None:
    reconciliation = await imported(closed)
    ids = await ids_of(closed, reconciliation, BreakKind.MISSING_IN_LEDGER)
    first = await closed.resolve_many(bulk(BreakSelection(ids=ids)))
    again = await closed.resolve_many(bulk(BreakSelection(ids=ids)))
    assert (first.resolved, first.unchanged, again.resolved, again.unchanged) == (2, 0, 0, 2)
    with pytest.raises(IdempotencyConflict) as refused:
        await closed.resolve_many(bulk(BreakSelection(ids=ids), reason="another reason"))
    assert refused.value.field == "selection.ids"


async def test_a_line_the_ledger_has_in_another_period_is_never_adjusted_alone_or_in_bulk(
    closed: SettlementService,
) -> None:
    """A late item: posted after November closed, the ledger has it in December; the partner's
    November file lists it. An adjustment would post it into December a second time."""
    await post(closed, [conversion("late", "fresh-mart", "formosa-air", 300, at=NOVEMBER)])
    reconciliation = await imported(closed, FILE + "conversion:late,-3.00,formosa-air,2026-11-30\n")
    [late] = [v.row for v in await closed.breaks(reconciliation) if v.row.reference == "conversion:late"]
    assert late.kind == BreakKind.MISSING_IN_LEDGER
    postings = await transactions(closed)

    with pytest.raises(CountedElsewhere) as alone:
        await closed.resolve(ResolveRequest(late.id or 0, Resolution.ADJUST, "as the file says", "bob"))
    assert (alone.value.field, alone.value.details["breaks"]) == ("resolution", [late.id])
    assert alone.value.message.startswith(
        f"break {late.id}: the ledger has 'conversion:late' in 2026-12, not in 2026-11; the partner's line "
        "belongs in that period's records"
    )
    by_class = bulk(BreakSelection(kind=BreakKind.MISSING_IN_LEDGER), Resolution.ADJUST)
    with pytest.raises(CountedElsewhere) as together:
        await closed.resolve_many(by_class)
    assert together.value.field == "selection" and together.value.message.startswith(
        "1 of the selected breaks are lines the ledger has in another period"
    )
    assert await transactions(closed) == postings
    assert all(view.resolution is None for view in await closed.breaks(reconciliation)), "nothing resolved"

    await closed.resolve(ResolveRequest(late.id or 0, Resolution.ACCEPT_LEDGER, "in December's records", "bob"))
    done = await closed.resolve_many(by_class)  # the others, once the late line is resolved
    assert (done.resolved, done.adjusted and done.adjusted.count) == (2, 2)


async def transactions(service: SettlementService) -> int:
    async with service.db.transaction() as session:
        return (await session.exec(select(func.count()).select_from(LedgerTransaction))).one()


async def test_a_bulk_adjustment_posts_each_breaks_default_in_the_next_period(
    closed: SettlementService, clock: FrozenClock
) -> None:
    reconciliation = await imported(closed)
    done = await closed.resolve_many(
        bulk(BreakSelection(kind=BreakKind.MISSING_IN_LEDGER), Resolution.ADJUST, reason="confirmed by formosa-air")
    )
    assert done.resolved == 2
    resolutions = [v.resolution for v in await closed.breaks(reconciliation, kind=BreakKind.MISSING_IN_LEDGER)]
    assert sorted((r.amount, r.counterparty) for r in resolutions if r) == [
        (700, "formosa-air"),
        (5_000, "formosa-air"),
    ]
    async with closed.db.transaction() as session:
        periods = (
            await session.exec(select(LedgerTransaction.period).where(col(LedgerTransaction.kind) == "adjustment"))
        ).all()
        assert (await verify_ledger(session)).ok
    assert periods == ["2026-12", "2026-12"]
    missing_there = await closed.resolve_many(
        bulk(BreakSelection(kind=BreakKind.MISSING_IN_PARTNER), Resolution.ADJUST)
    )
    assert missing_there.resolved == 1  # c4: the ledger's one counterparty, tune-stream
    await close(closed, clock, "2026-12")
    december = await served(closed, "fresh-mart", "2026-12")
    assert sorted((line.counterparty, line.amount) for line in december.lines) == [
        ("formosa-air", 700),
        ("formosa-air", 5_000),
        ("tune-stream", 700),
    ]


async def test_a_bulk_adjustment_is_refused_whole_when_a_break_has_nothing_to_adjust(
    closed: SettlementService,
) -> None:
    reconciliation = await imported(closed)
    with pytest.raises(BadAdjustment) as refused:
        await closed.resolve_many(bulk(BreakSelection(kind=BreakKind.DUPLICATE), Resolution.ADJUST))
    assert refused.value.field == "selection"
    with pytest.raises(BadAdjustment) as unnamed:
        # conversion:c1 names no counterparty, and its ledger side has wallet-pay and the exchange
        await closed.resolve_many(bulk(BreakSelection(kind=BreakKind.AMOUNT_MISMATCH), Resolution.ADJUST))
    assert unnamed.value.field == "adjustment.counterparty"
    async with closed.db.transaction() as session:
        assert (await session.exec(select(func.count()).select_from(BreakResolution))).one() == 0
        adjustments = select(func.count()).where(col(LedgerTransaction.kind) == "adjustment")
        assert (await session.exec(adjustments)).one() == 0
    named = await closed.resolve_many(
        bulk(BreakSelection(kind=BreakKind.AMOUNT_MISMATCH), Resolution.ADJUST, counterparty="wallet-pay")
    )
    assert (named.resolved, named.reconciliation.reconciliation.id) == (2, reconciliation.id)
    ids = await ids_of(closed, reconciliation, BreakKind.AMOUNT_MISMATCH)
    again = await closed.resolve_many(bulk(BreakSelection(ids=ids), Resolution.ADJUST, counterparty="wallet-pay"))
    assert (again.resolved, again.unchanged) == (0, 2)
    with pytest.raises(IdempotencyConflict):
        # Adjusted against wallet-pay, not formosa-air: another request, not a repeat.
        await closed.resolve_many(bulk(BreakSelection(ids=ids), Resolution.ADJUST, counterparty="formosa-air"))


async def test_refusals_name_the_field_and_change_nothing(closed: SettlementService) -> None:
    reconciliation = await imported(closed)
    ids = await ids_of(closed, reconciliation, BreakKind.DUPLICATE)
    cases: list[tuple[BulkResolveRequest, str]] = [
        (bulk(BreakSelection(ids=())), "selection.ids"),
        (bulk(BreakSelection(ids=ids, kind=BreakKind.DUPLICATE)), "selection.ids"),
        (bulk(BreakSelection(ids=(*ids, 999_999))), "selection.ids"),
        (bulk(BreakSelection(kind=BreakKind.MATCHED)), "selection.kind"),
        (bulk(BreakSelection(counterparty="formosa-ari")), "selection.counterparty"),
        (bulk(BreakSelection(ids=ids), reason="  "), "reason"),
        (bulk(BreakSelection(ids=ids), counterparty="wallet-pay"), "adjustment"),
        (bulk(BreakSelection(ids=ids), Resolution.ADJUST, counterparty="fresh-mart"), "adjustment.counterparty"),
        (bulk(BreakSelection(ids=ids), Resolution.ADJUST, counterparty="nobody"), "adjustment.counterparty"),
        (bulk(BreakSelection(ids=ids), period="2026-13"), "period"),
    ]
    for request, field in cases:
        with pytest.raises(BadUserInput) as refused:
            await closed.resolve_many(request)
        assert refused.value.field == field, request
    with pytest.raises(NotFound) as unknown:
        await closed.resolve_many(bulk(BreakSelection(ids=ids), partner="nobody"))
    assert unknown.value.field == "partnerId"
    assert (await closed.reconciliation("fresh-mart", "2026-11")).unresolved == 6


async def test_resolving_after_sign_off_is_refused_but_for_a_repeat(closed: SettlementService) -> None:
    reconciliation = await imported(closed)
    await closed.resolve_many(bulk(BreakSelection()))
    await closed.sign_off("fresh-mart", "2026-11", by="carol", note=None)
    repeated = await closed.resolve_many(bulk(BreakSelection()))
    assert (repeated.resolved, repeated.unchanged, repeated.reconciliation.unresolved) == (0, 0, 0)
    ids = await ids_of(closed, reconciliation, BreakKind.DUPLICATE)
    named = await closed.resolve_many(bulk(BreakSelection(ids=ids)))
    assert (named.resolved, named.unchanged) == (0, len(ids))
    for request in (
        bulk(BreakSelection(), reason="another reason"),
        bulk(BreakSelection(ids=ids), reason="another reason"),
        bulk(BreakSelection(ids=ids), Resolution.ADJUST),
    ):
        with pytest.raises(PartnerSignedOff):
            await closed.resolve_many(request)


async def test_a_single_resolution_and_a_bulk_one_meet_idempotently(closed: SettlementService) -> None:
    reconciliation = await imported(closed)
    (first, *_) = await ids_of(closed, reconciliation, BreakKind.MISSING_IN_LEDGER)
    await closed.resolve(ResolveRequest(first, Resolution.ACCEPT_LEDGER, "agreed with fresh-mart", "bob"))
    done = await closed.resolve_many(bulk(BreakSelection(kind=BreakKind.MISSING_IN_LEDGER)))
    assert (done.resolved, done.reconciliation.unresolved) == (1, 4)


async def test_many_thousand_breaks_resolve_in_one_call(pg_settlement: SettlementService, clock: FrozenClock) -> None:
    await post(pg_settlement, [conversion("c1", "fresh-mart", "wallet-pay", 10_000)])
    await close(pg_settlement, clock, "2026-11")
    lines = "conversion:c1,-100.00,wallet-pay\n" + "".join(f"unknown:{n},1.00,formosa-air\n" for n in range(12_000))
    other = "".join(f"other:{n},2.00,wallet-pay\n" for n in range(6_000))
    await imported(pg_settlement, "reference,amount,counterparty\n" + lines + other)
    adjusted = await pg_settlement.resolve_many(
        bulk(BreakSelection(counterparty="wallet-pay"), Resolution.ADJUST, reason="wallet-pay confirmed")
    )
    accepted = await pg_settlement.resolve_many(bulk(BreakSelection(kind=BreakKind.MISSING_IN_LEDGER)))
    assert (adjusted.resolved, accepted.resolved, accepted.reconciliation.unresolved) == (6_000, 12_000, 0)
    async with pg_settlement.db.transaction() as session:
        count = select(func.count()).where(col(LedgerTransaction.kind) == "adjustment")
        assert (await session.exec(count)).one() == 6_000
        assert (await verify_ledger(session)).ok
    await pg_settlement.sign_off("fresh-mart", "2026-11", by="carol", note="bulk")


async def test_the_trail_reads_its_latest_resolutions_not_every_break(
    pg_settlement: SettlementService, clock: FrozenClock
) -> None:
    await post(pg_settlement, [conversion("c1", "fresh-mart", "wallet-pay", 10_000)])
    await close(pg_settlement, clock, "2026-11")
    lines = "".join(f"unknown:{n},1.00,formosa-air\n" for n in range(2_000))
    reconciliation = await imported(pg_settlement, "reference,amount,counterparty\nconversion:c1,-99.00,\n" + lines)
    await pg_settlement.resolve_many(bulk(BreakSelection(kind=BreakKind.MISSING_IN_LEDGER)))
    clock.advance(minutes=1)
    (mismatch,) = await ids_of(pg_settlement, reconciliation, BreakKind.AMOUNT_MISMATCH)
    await pg_settlement.resolve(ResolveRequest(mismatch, Resolution.ACCEPT_LEDGER, "agreed with fresh-mart", "bob"))
    unknown = await ids_of_all(pg_settlement, reconciliation, BreakKind.MISSING_IN_LEDGER)
    async with pg_settlement.db.transaction() as session:
        trail, read = await rows_read(
            session,
            ["break_resolution", "reconciliation_break"],
            lambda: resolution_trail(session, reconciliation.id, first=5),
        )
    # The latest first; resolved at one moment, the highest break id first.
    assert [row.id for row, _ in trail] == [mismatch, *sorted(unknown, reverse=True)[:4]]
    assert [resolution.resolved_by for _, resolution in trail] == ["bob"] + ["alice@settlement"] * 4
    # The trail's five resolutions and their breaks, read by index: not the 2,001 of each.
    assert read == {"break_resolution": 5, "reconciliation_break": 5}


async def ids_of_all(service: SettlementService, reconciliation: Reconciliation, kind: BreakKind) -> list[int]:
    """Every break id of ``kind``, page after page."""
    ids: list[int] = []
    while page := await service.breaks(reconciliation, kind=kind, first=1000, after=ids[-1] if ids else None):
        ids.extend(view.row.id or 0 for view in page)
    return ids


#: 2,000 lines the ledger lacks naming formosa-air, then five naming wallet-pay, then the
#: ledger's c1 at another amount: the breaks a filter picks come last, after every other.
MANY = (
    "reference,amount,counterparty\n"
    + "".join(f"unknown:{n},1.00,formosa-air\n" for n in range(2_000))
    + "".join(f"other:{n},2.00,wallet-pay\n" for n in range(5))
    + "conversion:c1,-99.00,\n"
)


async def without_resolution(service: SettlementService, reconciliation: Reconciliation) -> set[int]:
    """The reconciliation's breaks that have no resolution, counted the long way."""
    async with service.db.transaction() as session:
        rows = await session.exec(
            select(ReconciliationBreak.id)
            .join(BreakResolution, col(BreakResolution.break_id) == col(ReconciliationBreak.id), isouter=True)
            .where(ReconciliationBreak.reconciliation_id == reconciliation.id, col(BreakResolution.break_id).is_(None))
        )
        return {break_id for break_id in rows if break_id is not None}


async def open_page_ids(service: SettlementService, reconciliation: Reconciliation) -> set[int]:
    return {view.row.id or 0 for view in await service.breaks(reconciliation, unresolved_only=True, first=1000)}


async def test_the_open_breaks_counted_and_listed_are_those_without_a_resolution(closed: SettlementService) -> None:
    reconciliation = await imported(closed)
    mismatch, other = await ids_of(closed, reconciliation, BreakKind.AMOUNT_MISMATCH)
    steps = [
        lambda: closed.resolve(
            ResolveRequest(mismatch, Resolution.ACCEPT_LEDGER, "agreed with fresh-mart", "alice@settlement")
        ),
        lambda: closed.resolve_many(bulk(BreakSelection(counterparty="formosa-air"))),
        lambda: closed.resolve_many(
            bulk(BreakSelection(ids=(other,)), Resolution.ADJUST, reason="wallet-pay confirmed")
        ),
        # Repeats change nothing and count nothing twice.
        lambda: closed.resolve_many(bulk(BreakSelection(counterparty="formosa-air"))),
        lambda: closed.resolve(
            ResolveRequest(mismatch, Resolution.ACCEPT_LEDGER, "agreed with fresh-mart", "alice@settlement")
        ),
    ]
    counted = [(await closed.reconciliation("fresh-mart", "2026-11")).unresolved]
    for step in steps:
        await step()
        open_breaks = await without_resolution(closed, reconciliation)
        assert await open_page_ids(closed, reconciliation) == open_breaks
        counted.append((await closed.reconciliation("fresh-mart", "2026-11")).unresolved)
        assert counted[-1] == len(open_breaks)
    assert counted == [6, 5, 3, 2, 2, 2]


async def many_with_formosa_air_resolved(service: SettlementService, clock: FrozenClock) -> Reconciliation:
    """:data:`MANY` imported against a closed November, its 2,000 formosa-air breaks resolved:
    six left open, last of all."""
    await post(service, [conversion("c1", "fresh-mart", "wallet-pay", 10_000)])
    await close(service, clock, "2026-11")
    reconciliation = await imported(service, MANY)
    await service.resolve_many(bulk(BreakSelection(counterparty="formosa-air")))
    return reconciliation


async def test_the_open_breaks_are_counted_from_the_reconciliation_not_its_breaks(
    pg_settlement: SettlementService, clock: FrozenClock
) -> None:
    reconciliation = await many_with_formosa_air_resolved(pg_settlement, clock)
    async with pg_settlement.db.transaction() as session:
        unresolved, read = await rows_read(
            session,
            ["reconciliation_break", "break_resolution"],
            lambda: unresolved_breaks(session, reconciliation.id),
        )
    assert (unresolved, read) == (6, {"reconciliation_break": 0, "break_resolution": 0})


async def test_a_filtered_page_of_breaks_reads_its_own_breaks(
    pg_settlement: SettlementService, clock: FrozenClock
) -> None:
    reconciliation = await many_with_formosa_air_resolved(pg_settlement, clock)
    async with pg_settlement.db.transaction() as session:
        everything = await list_breaks(session, reconciliation.id, first=3_000)
    last = [row.id for row, _ in everything][-6:]
    filters: list[dict[str, object]] = [
        {"counterparty": "wallet-pay"},
        {"kind": BreakKind.AMOUNT_MISMATCH},
        {"unresolved_only": True},
        {"unresolved_only": True, "after": last[1]},
        {"after": last[0]},
    ]
    for given in filters:
        async with pg_settlement.db.transaction() as session:
            page, read = await rows_read(
                session,
                ["reconciliation_break", "break_resolution"],
                lambda: list_breaks(session, reconciliation.id, first=3, **given),  # type: ignore[arg-type]  # noqa: B023
            )
        matching = [
            row.id
            for row, resolution in everything
            if row.id > given.get("after", 0)  # type: ignore[operator]
            and row.counterparty == given.get("counterparty", row.counterparty)
            and row.kind == given.get("kind", row.kind)
            and not (given.get("unresolved_only") and resolution is not None)
        ]
        assert [row.id for row, _ in page] == matching[:3], given
        # The breaks the filter's index holds (PostgreSQL may read them all to sort a few) and the
        # page's resolutions: not the 2,000 before them.
        assert read["reconciliation_break"] <= len(matching) and read["break_resolution"] <= 3, (given, read)


async def test_adjusting_against_each_default_repeats_only_what_was_recorded(closed: SettlementService) -> None:
    """A bulk adjustment naming no counterparty takes each break's own (its line's, else the
    ledger's); a break adjusted against another, or by another amount, was resolved otherwise
    by that very reason: not a repeat, before the sign-off or after it."""
    reconciliation = await imported(closed)
    missing = await closed.breaks(reconciliation, kind=BreakKind.MISSING_IN_LEDGER)
    zzz = next(view.row.id or 0 for view in missing if view.row.reference == "conversion:zzz")
    reason = "confirmed by formosa-air"
    # Its line names formosa-air; staff adjusted it against tune-stream instead.
    await closed.resolve(ResolveRequest(zzz, Resolution.ADJUST, reason, "alice@settlement", counterparty="tune-stream"))
    ids = await ids_of(closed, reconciliation, BreakKind.MISSING_IN_LEDGER)
    with pytest.raises(IdempotencyConflict) as refused:
        await closed.resolve_many(bulk(BreakSelection(ids=ids), Resolution.ADJUST, reason=reason))
    assert refused.value.field == "selection.ids"
    # The filter takes the other one, open still, against its own default.
    done = await closed.resolve_many(
        bulk(BreakSelection(kind=BreakKind.MISSING_IN_LEDGER), Resolution.ADJUST, reason=reason)
    )
    assert done.resolved == 1
    others = [i for i in ids if i != zzz]
    again = await closed.resolve_many(bulk(BreakSelection(ids=tuple(others)), Resolution.ADJUST, reason=reason))
    assert (again.resolved, again.unchanged) == (0, 1), "recorded against its default: a repeat"

    await closed.resolve_many(bulk(BreakSelection()))
    await closed.sign_off("fresh-mart", "2026-11", by="carol", note=None)
    for request in (
        bulk(BreakSelection(kind=BreakKind.MISSING_IN_LEDGER), Resolution.ADJUST, reason=reason),
        bulk(BreakSelection(ids=ids), Resolution.ADJUST, reason=reason),
    ):
        with pytest.raises(PartnerSignedOff):
            await closed.resolve_many(request)
    repeated = await closed.resolve_many(bulk(BreakSelection(ids=tuple(others)), Resolution.ADJUST, reason=reason))
    assert (repeated.resolved, repeated.unchanged) == (0, 1)
