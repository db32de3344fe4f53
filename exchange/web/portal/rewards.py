"""Rewards: the catalog by coalition level, a page at a time, redeeming one with a linked
program's points, and the member's redemption history, where a redemption held for review can
be cancelled. After redeeming, the history's notice says how that redemption stands now
(redeemed, held for review, still waiting for the paying partner's answer, or not gone through),
not "Redeemed" whatever became of it.

The redeem form carries an idempotency key made for each rendering (the same form sent twice
redeems once). Paying with a program's points needs that program's authority in this session,
as converting does. Beside each program's price the page shows the member's balance there; a
program holding fewer points than the price is not offered, and the page says so (a redemption
that would fail at the partner's debit); one holding none at all (the coalition point of a new
member, on every reward) is not listed among the choices but named once under them; a balance
that cannot be read is said so, and the program offered as before. A reward that cannot be
redeemed now (none left, outside its availability, above the member's coalition level) offers
no Redeem: the page says why in its place, also when a redemption was refused for it. Each
program's option carries the points price shown beside it, and the redemption is made only at
that price: one an operator changed meanwhile (the program's point
value, or the exchange's fee) is refused and the page shown again at the new price, saying
so. The cancel form expects the redemption HELD, as the page showed it: one
that staff decided meanwhile is refused and shown as it now is, not reversed after all; sent
twice, it cancels once.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.auth.principal import Principal
from exchange.errors import BadUserInput, ExchangeError, http_status
from exchange.rewards import catalog as rewards_catalog
from exchange.rewards.errors import NotARewardCursor
from exchange.rewards.models import RedemptionStatus, Reward
from exchange.rewards.redemption import RedemptionQuote
from exchange.services.container import Services
from exchange.services.rewards import REWARDS_PAGE
from exchange.text import ascii_digits
from exchange.web.access import Page, form_fields, form_text, query_value
from exchange.web.portal.members import (
    MEMBERS,
    PORTAL_PATH,
    acting_for,
    found,
    may_spend,
    member,
    member_session,
    writing,
)
from exchange.web.said import Refusal, Said
from exchange.web.templating import Pages, Place

#: Redemptions the history lists on a page (a test lowers it); a link lists the older ones.
HISTORY_LENGTH = 50
#: Rewards the catalog lists on a page (a listing's page; a test lowers it), grouped by level
#: within it; a link lists the next.
CATALOG_LENGTH = REWARDS_PAGE
NOTICES = ("cancelled",)
PAY_FIELDS = ("pay_with",)


def points_field(program_id: str) -> str:
    """The reward form's field carrying the points price it showed for paying with ``program_id``."""
    return f"points_{program_id}"


class RewardPages:
    def __init__(self, *, services: Services, pages: Pages) -> None:
        self.services = services
        self.pages = pages

    def routes(self) -> list[Page]:
        return [
            Page("/rewards", self.catalog, rule=MEMBERS),
            Page("/rewards/history", self.history, rule=MEMBERS),
            writing("/rewards/history/{redemption_id}/cancel", self.cancel, methods=["POST"]),
            Page("/rewards/{reward_id}", self.reward, rule=MEMBERS),
            writing("/rewards/{reward_id}", self.redeem, methods=["POST"]),
        ]

    async def catalog(self, request: Request) -> Response:
        caller = member(request)
        try:
            listed = await self.services.rewards.rewards(
                program_id=None, available_only=True, first=CATALOG_LENGTH, after=query_value(request, "after")
            )
        except NotARewardCursor:  # a link to a page after no reward: nothing at this address
            raise HTTPException(404) from None
        level = await self.services.members.coalition_level(str(caller.member_id))
        coalition = await self.services.catalog.coalition()
        catalog = await self.services.catalog.cache.get()
        by_level = [
            (rung, [reward for reward in listed.items if reward.min_level == rung.level]) for rung in coalition.ladder
        ]
        return self.pages.render(
            request,
            "portal/rewards.html",
            {
                "levels": [(rung, listed) for rung, listed in by_level if listed],
                "member_level": level,
                "level_name": next((rung.name for rung in coalition.ladder if rung.level == level), str(level)),
                "programs": catalog.programs,
                "currency": catalog.currency,
                "next_after": listed.next_after,
            },
        )

    async def reward(self, request: Request) -> Response:
        reward = await found(self.services.rewards.reward(request.path_params["reward_id"]))
        pay_with = form_fields(request.query_params, PAY_FIELDS)["pay_with"]
        return await self._reward_page(request, reward, pay_with=pay_with)

    async def redeem(self, request: Request) -> Response:
        reward = await found(self.services.rewards.reward(request.path_params["reward_id"]))
        form = await request.form()
        pay_with = form_fields(form, PAY_FIELDS)["pay_with"]
        shown = form_text(form, points_field(pay_with)) if pay_with else ""
        try:
            expected = ascii_digits(shown) if shown else None
            if shown and expected is None:
                raise BadUserInput(f"expectedPoints must be a whole number, got {shown!r}", field="expectedPoints")
            redemption = await self.services.rewards.redeem(
                acting_for(request, pay_with),
                reward.id,
                pay_with,
                form_text(form, "idempotency_key"),
                consent=None,
                expected_points=expected,
            )
        except ExchangeError as problem:
            # As it is now: its last unit redeemed, or its availability ended, since the page.
            reward = await found(self.services.rewards.reward(reward.id))
            return await self._reward_page(request, reward, problem=problem, pay_with=pay_with, status_code=400)
        return RedirectResponse(f"{PORTAL_PATH}/rewards/history?redeemed={redemption.id}", status_code=303)

    async def history(self, request: Request) -> Response:
        """The member's redemptions, newest first, a page at a time: older ones after the last one
        a page listed (``after``, its id), refused when it is not one of the member's."""
        notice = request.query_params.get("notice")
        return await self._history_page(
            request,
            notice=notice if notice in NOTICES else None,
            redeemed=request.query_params.get("redeemed"),
            after=query_value(request, "after"),
        )

    async def cancel(self, request: Request) -> Response:
        try:
            await self.services.rewards.cancel(
                member(request), request.path_params["redemption_id"], expected=RedemptionStatus.HELD
            )
        except ExchangeError as problem:
            return await self._history_page(request, problem=problem, status_code=http_status(problem.code))
        return RedirectResponse(f"{PORTAL_PATH}/rewards/history?notice=cancelled", status_code=303)

    async def _history_page(
        self,
        request: Request,
        *,
        notice: str | None = None,
        redeemed: str | None = None,
        after: str | None = None,
        problem: ExchangeError | None = None,
        status_code: int = 200,
    ) -> Response:
        """``redeemed``: the id of the redemption the member just made, whose notice says how
        it stands now (none for an id not among theirs); ``after``: the page's cursor."""
        page = None
        try:
            page = await self.services.rewards.member_redemptions(member(request), first=HISTORY_LENGTH, after=after)
        except ExchangeError as refused:
            problem, status_code = refused, http_status(refused.code)
        redemptions = page.items if page else []
        rewards = await self.services.rewards.rewards_by_id({redemption.reward_id for redemption in redemptions})
        catalog = await self.services.catalog.cache.get()
        return self.pages.render(
            request,
            "portal/history.html",
            {
                "redemptions": redemptions,
                # Why each one that failed or was reversed by its saga did, said as a conversion's
                # page says its failure; not for one its member or its publisher cancelled, or
                # that was not delivered in time (``cancelled_by``), whose status says so.
                "failures": {
                    redemption.id: Said.failure(redemption.failure_code, redemption.failure_message, catalog.programs)
                    for redemption in redemptions
                    if redemption.failure_code is not None
                    and redemption.failure_message
                    and not redemption.cancelled_by
                },
                "rewards": rewards,
                "programs": catalog.programs,
                "notice": notice,
                "redeemed": next((made for made in redemptions if made.id == redeemed), None),
                "after": after,
                "older": page.next_cursor if page else None,
                "problem": Refusal.of(problem, catalog.programs) if problem else None,
            },
            status_code=status_code,
        )

    async def _reward_page(
        self,
        request: Request,
        reward: Reward,
        *,
        problem: ExchangeError | None = None,
        pay_with: str = "",
        status_code: int = 200,
    ) -> Response:
        caller = member(request)
        view = await self.services.members.me(caller)
        catalog = await self.services.catalog.cache.get()
        closed = await self._closed(caller, reward)
        options: list[dict[str, Any]] = []
        for account in sorted(view.accounts, key=lambda account: catalog.programs[account.program_id].name):
            quote: RedemptionQuote | None = None
            failure: Refusal | None = None
            try:
                quote = await self.services.rewards.quote(caller, reward.id, account.program_id)
            except ExchangeError as refused:
                failure = Refusal.of(refused, catalog.programs)
            options.append(
                {
                    "program": catalog.programs[account.program_id],
                    "quote": quote,
                    "failure": failure,
                    "points_field": points_field(account.program_id),
                }
            )
        covered = await self.services.rewards.review(caller, [option["quote"] for option in options if option["quote"]])
        for option in options:
            option["coverage"] = covered.get(option["program"].id)
        short = any(option["coverage"] and option["coverage"].short for option in options)
        # Not a disabled choice on every reward, which says nothing the member can act on here.
        unheld = [option for option in options if option["coverage"] and option["coverage"].none_held]
        options = [option for option in options if option not in unheld]
        signed_in = member_session(request)
        payable = [option["program"].id for option in options if option["coverage"] and not option["coverage"].short]
        if not pay_with:  # preselect what can pay at once: a program priced, holding enough, the session spends
            pay_with = next(
                (program for program in payable if signed_in.may_spend(program)), payable[0] if payable else ""
            )
        return self.pages.render(
            request,
            "portal/reward.html",
            {
                "reward": reward,
                "publisher": catalog.programs[reward.program_id],
                "currency": catalog.currency,
                "price": catalog.currency.from_minor(reward.price_minor),
                "options": options,
                "payable": payable,
                "closed": closed,
                "short": short,
                "unheld": [option["program"] for option in unheld],
                # Whose points the session spends as it stands: any other choice needs a sign-in.
                "spends": {option["program"].id for option in options if may_spend(request, option["program"])},
                "problem": Refusal.of(problem, catalog.programs) if problem else None,
                "pay_with": pay_with,
                "paying_program": catalog.programs.get(pay_with),
                # A key per rendering of the form: the same form sent twice redeems once.
                "idempotency_key": secrets.token_urlsafe(24),
            },
            status_code=status_code,
            # A redemption refused after its POST: switching language keeps the program chosen.
            place=Place({"pay_with": pay_with}) if problem else None,
        )

    async def _closed(self, caller: Principal, reward: Reward) -> dict[str, Any] | None:
        """Why ``reward`` cannot be redeemed by the caller now, for the page to say in place of
        Redeem (``reason``: ``not-yet``, ``ended``, ``sold-out`` or ``level``), or ``None``. The
        redemption would be refused for it: offering Redeem led to a refusal whose detail was
        the exchange's English."""
        if not rewards_catalog.is_available(reward, self.services.clock.now()):
            started = reward.available_from <= self.services.clock.now()
            return {"reason": "ended" if started else "not-yet"}
        if reward.stock < 1:
            return {"reason": "sold-out"}
        if reward.min_level > 0:
            level = await self.services.members.coalition_level(str(caller.member_id))
            if level < reward.min_level:
                ladder = {rung.level: rung.name for rung in (await self.services.catalog.coalition()).ladder}
                return {
                    "reason": "level",
                    "needed": ladder.get(reward.min_level, str(reward.min_level)),
                    "held": ladder.get(level, str(level)),
                }
        return None
