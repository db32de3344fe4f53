"""The demo's previous month: a realistic month of activity, built through the real services
under a clock set inside that month, so that a newcomer can close it, net it, reconcile a
partner's file against it, resolve the breaks and sign off at once.

:func:`build_previous_month` enrols the sample members (``wallet-pay`` vouches for each, as the
running demo's assertions do, and they link their accounts at every program with their PINs),
then plays the month in time order: status matches, a few dozen conversions between the
programs (one refused by the partner for want of points, one whose debit meets the sandbox's
magic failing amount and one whose credit does, so FAILED and REVERSED conversions appear),
redemptions of the sample rewards paid with various programs (some cancelled the next day,
the rest delivered), and coalition points earned from partners' programs, spent into others and
on a reward. Everything is drawn from one seeded random generator, so the same
sandboxes give the same figures on every run; every write has an idempotency key naming the
period, and a month whose last write is there is left alone, as is a month no longer open.

:func:`partner_records` then gives one partner's records of the month as CSV, derived from the
ledger's lines, with a break of every class reconciliation knows planted in it, and
:func:`create_sign_ins` makes the console's sample people.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from functools import partial

from exchange.auth.principal import Principal
from exchange.auth.scopes import ROLE_SCOPES, Role
from exchange.clock import SetClock
from exchange.conversions.models import Conversion, ConversionStatus
from exchange.conversions.queries import MAX_PAGE
from exchange.errors import ExchangeError
from exchange.ledger.periods import PeriodStatus, SettlementCalendar
from exchange.programs.models import Program, ProgramKind
from exchange.rewards.models import Redemption, RedemptionStatus
from exchange.sandbox.admin_client import SandboxAdmin
from exchange.sandbox.faults import MAGIC_POINTS, FaultKind
from exchange.sandbox.points import SEED_MEMBERS
from exchange.services.container import Services, build_services
from exchange.settings import Settings
from exchange.settlement.participants import EXCHANGE
from exchange.settlement.statements import StatementLine

#: The seed of the month's random draws: change it for another (equally repeatable) month.
SEED = 202611
#: The program that vouches for every member (as the running demo's assertions do).
HOME_PROGRAM = "wallet-pay"
#: The partner whose records of the month the demo writes, breaks planted.
FILE_PARTNER = "formosa-air"
#: Ordinary conversions drawn at random, besides the three that go wrong on purpose.
CONVERSIONS = 30
#: A debit or credit of exactly this many points meets a sandbox failure (nothing applied).
FAILING_POINTS = next(points for points, kind in MAGIC_POINTS.items() if kind is FaultKind.ERROR)
#: How many times the recovery job may drive a conversion in doubt (the saga gives up before).
RECOVERY_ROUNDS = 12
#: The label of the month's last write (alice's conversion whose debit fails).
LAST_WRITE = "debit-fault"
#: The coalition point of the sample partners directory (partners/coalition.toml).
COALITION_POINT = "coalition"
#: Money values (TWD) members convert, turned into whole thousands of the source's points.
CONVERTED_VALUES = (300, 500, 800, 1_000, 1_500, 2_000, 3_000, 5_000)


@dataclass(frozen=True)
class SandboxMember:
    """A member the sandboxes know: their id there, the PIN they confirm accounts with, and
    (for members the demo adds) an opening balance and tiers by program (else the lowest)."""

    member_ref: str
    pin: str
    balance: int
    tiers: Mapping[str, str] = field(default_factory=dict)


#: Members the demo adds to every sandbox, beside the seeded alice, bob, carol and dave: an
#: airline Gold and a card VIP, whose tiers are matched into other programs.
ADDED_MEMBERS = (
    SandboxMember("erin", "5555", 40_000, {"formosa-air": "Gold"}),
    SandboxMember("frank", "6666", 40_000, {"happy-card": "VIP"}),
)
#: Every member the sandboxes know, seeded or added: the portal's sign-in hints.
MEMBERS = (*(SandboxMember(m.member_ref, m.verification, m.balance) for m in SEED_MEMBERS), *ADDED_MEMBERS)
#: Those who are active in the month (dave has no points anywhere).
ACTIVE = ("alice", "bob", "carol", "erin", "frank")
#: (member, from, to, day of the month): tiers recognised elsewhere. The shortest match
#: (wallet-pay's 60 days) comes late in the month, so it is still running when the demo starts.
MATCHES = (
    ("bob", "harbor-bank", "formosa-air", 3),
    ("frank", "happy-card", "formosa-air", 6),
    ("erin", "formosa-air", "happy-card", 9),
    ("erin", "formosa-air", "wallet-pay", 26),
)
#: (member, reward, paid with, day, what follows): "deliver" (the publisher confirms two days
#: later) or "cancel" (the member changes their mind the next day).
REDEMPTIONS = (
    ("alice", "fresh-mart-coupon-100", "wallet-pay", 4, "deliver"),
    ("bob", "fresh-mart-coupon-100", "formosa-air", 7, "deliver"),
    ("alice", "tune-stream-premium-month", "formosa-air", 8, "deliver"),
    ("erin", "fresh-mart-coupon-100", "happy-card", 11, "cancel"),
    ("frank", "tune-stream-premium-month", "harbor-bank", 13, "deliver"),
    ("alice", "fresh-mart-coupon-100", "harbor-bank", 16, "deliver"),
    ("bob", "tune-stream-premium-month", "wallet-pay", 18, "cancel"),
    ("erin", "tune-stream-premium-month", "formosa-air", 21, "deliver"),
    ("frank", "fresh-mart-coupon-100", "tune-stream", 24, "deliver"),
    ("bob", "fresh-mart-coupon-100", COALITION_POINT, 25, "deliver"),
)
#: (member, from, to, points, day): coalition points earned from a partner's program, then
#: spent into another's (the rest stays, expiring at the end of next year).
COALITION_MOVES = (
    ("alice", "wallet-pay", COALITION_POINT, 3_000, 5),
    ("bob", "formosa-air", COALITION_POINT, 5_000, 6),
    ("erin", "formosa-air", COALITION_POINT, 4_000, 10),
    ("frank", "happy-card", COALITION_POINT, 8_000, 12),
    ("alice", COALITION_POINT, "formosa-air", 1_000, 15),
    ("erin", COALITION_POINT, "tune-stream", 500, 20),
)


@dataclass(frozen=True)
class DemoPerson:
    """A console sign-in the demo creates, with its development-only password."""

    username: str
    password: str
    role: Role
    program_id: str | None = None


#: Settlement staff, and one staff member per sample partner (development only: the passwords
#: are printed and in README).
SETTLEMENT_PERSON = DemoPerson("mei", "demo-settlement-2026", Role.SETTLEMENT)


def partner_person(program_id: str) -> DemoPerson:
    return DemoPerson(f"staff@{program_id}", f"demo-{program_id}-2026", Role.PARTNER, program_id)


@dataclass
class MonthReport:
    """What the month holds once built (or found built)."""

    period: str
    built: bool
    """False when nothing was done: it was built before, or is no longer open, or cannot be."""
    unplayable: str | None = None
    """Why the month cannot be played on this database, if it cannot."""
    conversions: list[Conversion] = field(default_factory=list)
    redemptions: list[Redemption] = field(default_factory=list)
    matches: int = 0


def key(period: str, *parts: object) -> str:
    """The idempotency key of one of the month's writes."""
    return ":".join(("demo-month", period, *map(str, parts)))


def member_principal(member_id: str, asserted_by: str, expires_at: datetime) -> Principal:
    """The member as a token ``asserted_by`` vouched for would carry them: points held there are
    spent under its authority, as through the gateway."""
    return Principal(
        role=Role.MEMBER,
        subject=member_id,
        client_id=f"demo-{asserted_by}",
        scopes=ROLE_SCOPES[Role.MEMBER],
        token_id=secrets.token_hex(8),
        expires_at=expires_at,
        member_id=member_id,
        asserted_by=asserted_by,
    )


def partner_principal(program_id: str, expires_at: datetime) -> Principal:
    return Principal(
        role=Role.PARTNER,
        subject=f"demo-{program_id}",
        client_id=f"demo-{program_id}",
        scopes=ROLE_SCOPES[Role.PARTNER],
        token_id=secrets.token_hex(8),
        expires_at=expires_at,
        program_id=program_id,
    )


async def add_sandbox_members(sandbox_urls: Mapping[str, str]) -> None:
    """Add :data:`ADDED_MEMBERS` to every sandbox that lacks them (what the partner's own
    enrolment would have done)."""
    for program, url in sandbox_urls.items():
        admin = SandboxAdmin(url)
        known = {member["member_ref"] for member in (await admin.members())["members"]}
        for member in ADDED_MEMBERS:
            if member.member_ref not in known:
                await admin.add_member(
                    member.member_ref, balance=member.balance, tier=member.tiers.get(program), verification=member.pin
                )


class Month:
    """One month being played: its clock, its members, their balances as the month goes."""

    def __init__(self, services: Services, clock: SetClock, period: str, programs: Sequence[Program]) -> None:
        self.services = services
        self.clock = clock
        self.period = period
        # Partners' programs; the coalition point's moves are planned (COALITION_MOVES), not drawn.
        self.programs = {program.id: program for program in programs if program.kind == ProgramKind.PARTNER}
        self.calendar = services.settlement.calendar
        self.random = random.Random(SEED)
        self.member_ids: dict[str, str] = {}
        self.balances: dict[tuple[str, str], int] = {}
        self.report = MonthReport(period, built=True)

    def at(self, day: int, hour: int, minute: int = 0) -> datetime:
        """A moment of the month, in the settlement time zone."""
        start = self.calendar.starts_at(self.period).astimezone(self.calendar.timezone)
        local = datetime.combine(start.date().replace(day=day), time(hour, minute), tzinfo=self.calendar.timezone)
        return local.astimezone(UTC)

    def member(self, member_ref: str, asserted_by: str) -> Principal:
        """The member's token as ``asserted_by`` vouched for them; the coalition point vouches for
        no one, and any token of theirs spends its points: theirs from the home program then."""
        asserting = HOME_PROGRAM if asserted_by == COALITION_POINT else asserted_by
        return member_principal(self.member_ids[member_ref], asserting, self.clock.now() + timedelta(hours=1))

    def member_by_id(self, member_id: str) -> Principal:
        return member_principal(member_id, HOME_PROGRAM, self.clock.now() + timedelta(hours=1))

    async def enrol(self) -> None:
        """Each member as their home program vouches for them, with every other account linked."""
        self.clock.set(self.at(1, 8))
        for sandbox_member in MEMBERS:
            ref = sandbox_member.member_ref
            member = await self.services.members.vouched_for(HOME_PROGRAM, ref)
            self.member_ids[ref] = member.id
            self.balances[ref, COALITION_POINT] = 0
            for program_id in self.programs:
                self.balances[ref, program_id] = sandbox_member.balance
                if program_id != HOME_PROGRAM:
                    await self.services.members.link_account(
                        self.member(ref, HOME_PROGRAM), program_id, ref, sandbox_member.pin
                    )

    async def convert(self, member_ref: str, source: str, target: str, points: int, label: str) -> Conversion | None:
        """Quote and execute; ``None`` if the quote is refused (a limit, a minimum, …)."""
        caller = self.member(member_ref, source)
        try:
            quote = await self.services.conversions.create_quote(caller, source, target, points)
        except ExchangeError:
            return None
        conversion = await self.services.conversions.execute(
            caller, quote.quote.id, key(self.period, "conversion", label), consent=None
        )
        if conversion.status == ConversionStatus.COMPLETED:
            self.balances[member_ref, source] -= conversion.points_in
            self.balances[member_ref, target] += conversion.points_out
        self.report.conversions.append(conversion)
        return conversion

    async def random_conversion(self, number: int) -> None:
        """A conversion drawn at random: who, from where, to where, how much."""
        programs = sorted(self.programs)
        for _attempt in range(20):
            member_ref = self.random.choice(ACTIVE)
            source, target = self.random.sample(programs, 2)
            value = self.random.choice(CONVERTED_VALUES)
            point_value = self.programs[source].point_value
            points = max(1, round(Decimal(value) / point_value / 1000)) * 1000
            if points > self.balances[member_ref, source] // 2 or points in MAGIC_POINTS:
                continue
            if await self.convert(member_ref, source, target, points, str(number)) is not None:
                return

    async def credit_fault(self) -> None:
        """alice converts Happy Points into exactly :data:`FAILING_POINTS` Wallet Points, found
        by quoting around the estimate as a member would; Wallet Pay's points system fails on the
        credit, and her points are given back (REVERSED)."""
        source, target = "happy-card", "wallet-pay"
        caller = self.member("alice", source)
        sample = (await self.services.conversions.create_quote(caller, source, target, 40_000)).quote
        estimate = round(FAILING_POINTS * sample.points_in / sample.points_out / 4) * 4
        for points in sorted(range(estimate - 16, estimate + 17, 4), key=lambda p: abs(p - estimate)):
            quote = (await self.services.conversions.create_quote(caller, source, target, points)).quote
            if quote.points_out == FAILING_POINTS:
                await self.convert("alice", source, target, points, "credit-fault")
                return

    async def short_of_points(self) -> None:
        """carol asks for more notes than she holds: TuneStream refuses the debit (FAILED)."""
        await self.convert("carol", "tune-stream", "wallet-pay", self.balances["carol", "tune-stream"] + 1_000, "short")

    async def debit_fault(self) -> None:
        """FreshMart's points system fails on alice's debit: nothing is applied (FAILED). The
        month's last write: a month with it is built."""
        await self.convert("alice", "fresh-mart", "wallet-pay", FAILING_POINTS, LAST_WRITE)

    async def redeem(self, number: int, member_ref: str, reward_id: str, pay_with: str, then: str) -> None:
        caller = self.member(member_ref, pay_with)
        redemption = await self.services.rewards.redeem(
            caller, reward_id, pay_with, key(self.period, "redemption", number), consent=None
        )
        moment = self.clock.now()
        if redemption.status == RedemptionStatus.COMPLETED and then == "cancel":
            self.clock.set(moment + timedelta(days=1))
            redemption = await self.services.rewards.cancel(caller, redemption.id)
        elif redemption.status == RedemptionStatus.COMPLETED and then == "deliver":
            self.clock.set(moment + timedelta(days=2))
            publisher = partner_principal(redemption.publisher, self.clock.now() + timedelta(hours=1))
            redemption = await self.services.rewards.confirm_delivery(publisher, redemption.id)
        self.clock.set(moment)
        self.report.redemptions.append(redemption)

    async def play(self) -> None:
        await self.enrol()
        events: list[tuple[datetime, Callable[[], Awaitable[object]]]] = []
        for member_ref, source, target, day in MATCHES:
            events.append((self.at(day, 10), partial(self.match, member_ref, source, target)))
        for number, (member_ref, reward_id, pay_with, day, then) in enumerate(REDEMPTIONS, 1):
            events.append((self.at(day, 19), partial(self.redeem, number, member_ref, reward_id, pay_with, then)))
        for number in range(1, CONVERSIONS + 1):
            day, hour, minute = self.random.randint(3, 27), self.random.randint(8, 22), self.random.randrange(0, 60, 5)
            events.append((self.at(day, hour, minute), partial(self.random_conversion, number)))
        for number, (member_ref, source, target, points, day) in enumerate(COALITION_MOVES, 1):
            label = f"coalition-{number}"
            events.append((self.at(day, 12), partial(self.convert, member_ref, source, target, points, label)))
        events += [
            (self.at(2, 11, 30), self.credit_fault),
            (self.at(12, 20, 15), self.short_of_points),
            (self.at(28, 9, 40), self.debit_fault),
        ]
        for moment, play in sorted(events, key=lambda event: event[0]):
            self.clock.set(moment)
            await play()

    async def match(self, member_ref: str, source: str, target: str) -> None:
        await self.services.matches.request(self.member(member_ref, HOME_PROGRAM), source, target, None)
        self.report.matches += 1


async def month_built(services: Services, period: str) -> bool:
    """Whether the month's activity is there already: its last write happened. (A build
    interrupted half-way is not resumed: start the demo on an empty data directory.)"""
    member = await services.members.vouched_for(HOME_PROGRAM, "alice")
    caller = member_principal(member.id, HOME_PROGRAM, services.clock.now() + timedelta(hours=1))
    page = await services.conversions.conversions(caller, first=MAX_PAGE, after=None)
    return any(c.idempotency_key == key(period, "conversion", LAST_WRITE) for c in page.items)


async def build_previous_month(
    settings: Settings,
    *,
    now: datetime,
    sandbox_urls: Mapping[str, str],
    partner_base_urls: Mapping[str, str] | None = None,
) -> MonthReport:
    """Play the month before ``now`` (see the module's docstring) unless it is built already or
    no longer open. ``sandbox_urls`` are the sandbox partners' addresses by program (their admin
    API adds :data:`ADDED_MEMBERS`); ``partner_base_urls`` points the connectors elsewhere than
    the declarations, as the gateway's option does."""
    clock = SetClock(now)
    services = build_services(settings, clock=clock, partner_base_urls=partner_base_urls)
    try:
        period = services.settlement.previous_period()
        clock.set(services.settlement.calendar.starts_at(period))
        programs = await services.catalog.programs()
        if any(program.created_at > clock.now() for program in programs):
            return MonthReport(period, built=False, unplayable="its programs were loaded after it began")
        if (await services.settlement.period(period)).status is not PeriodStatus.OPEN or await month_built(
            services, period
        ):
            return MonthReport(period, built=False)
        await add_sandbox_members(sandbox_urls)
        month = Month(services, clock, period, programs)
        await month.play()
        # A conversion left in doubt by a fault is driven on as the recovery job does over the
        # following hours, until the saga ends it (it gives up on a credit after its attempts).
        for _round in range(RECOVERY_ROUNDS):
            clock.set(clock.now() + timedelta(minutes=20))
            if not (await services.conversions.recover()).pending:
                break
        report = month.report
        report.conversions = [
            await services.conversions.conversion(month.member_by_id(c.member_id), c.id) for c in report.conversions
        ]
        return report
    finally:
        await services.aclose()


@dataclass(frozen=True)
class PartnerRecord:
    """One line of a partner's records file (amount in minor units, from the partner's side)."""

    reference: str
    amount: int
    counterparty: str
    date: str


def records_from_ledger(lines: Iterable[StatementLine], calendar: SettlementCalendar) -> list[PartnerRecord]:
    """What a partner that agrees with the ledger would record: one line per reference, its legs
    summed, the counterparty that is not the exchange, the local date; references that net to
    zero (a redemption cancelled within the month) left out, as the format allows."""
    records: dict[str, PartnerRecord] = {}
    for line in lines:
        found = records.get(line.reference)
        counterparty = line.counterparty if found is None or found.counterparty == EXCHANGE else found.counterparty
        records[line.reference] = PartnerRecord(
            line.reference,
            (found.amount if found else 0) + line.amount,
            counterparty,
            line.effective_at.astimezone(calendar.timezone).date().isoformat(),
        )
    return [record for record in records.values() if record.amount]


def plant_breaks(records: Sequence[PartnerRecord], unknown_reference: str) -> list[PartnerRecord]:
    """The partner's file, with a break of every class: the second record left out
    (MISSING_IN_PARTNER), the fourth's amount off by 10.00 (AMOUNT_MISMATCH), the sixth exported
    twice (DUPLICATE), and a record of ``unknown_reference``, which the ledger lacks
    (MISSING_IN_LEDGER)."""
    planted = [record for index, record in enumerate(records) if index != 1]
    mismatched = planted[2]
    planted[2] = PartnerRecord(
        mismatched.reference, mismatched.amount - 1_000, mismatched.counterparty, mismatched.date
    )
    planted.insert(6, planted[4])
    last = planted[-1]
    planted.append(PartnerRecord(unknown_reference, 250_000, last.counterparty, last.date))
    return planted


def records_csv(records: Iterable[PartnerRecord], minor_units: int) -> str:
    rows = ["reference,amount,counterparty,date"]
    for record in records:
        amount = Decimal(record.amount).scaleb(-minor_units)
        rows.append(f"{record.reference},{amount:.{minor_units}f},{record.counterparty},{record.date}")
    return "\n".join(rows) + "\n"


async def partner_records(services: Services, period: str, *, partner: str = FILE_PARTNER) -> str:
    """``partner``'s records of ``period`` as CSV: the ledger's lines with a break of every class
    planted (:func:`plant_breaks`); the same month gives the same figures."""
    lines = await services.settlement.ledger_lines(partner, period)
    currency = await services.catalog.currency()
    records = records_from_ledger(lines, services.settlement.calendar)
    unknown = f"conversion:{partner}-{period}-late-credit"
    return records_csv(plant_breaks(records, unknown), currency.minor_units)


async def create_sign_ins(services: Services, programs: Iterable[str]) -> list[DemoPerson]:
    """The settlement staff member and one staff member per partner, created once (their
    development passwords never change)."""
    people = [SETTLEMENT_PERSON, *(partner_person(program) for program in programs)]
    for person in people:
        if await services.people.person(person.username) is None:
            await services.people.create(
                username=person.username, password=person.password, role=person.role, program_id=person.program_id
            )
    return people
