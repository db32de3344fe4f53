"""The partner's rewards (publish, reprice, restock, withdraw) and the redemptions of them that
await its confirmation of delivery (confirm, or cancel: the member gets the points back)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.errors import BadUserInput, ExchangeError
from exchange.rewards import catalog as rewards_catalog
from exchange.rewards.catalog import RewardDraft
from exchange.rewards.errors import NotARewardCursor, RewardNotFound
from exchange.rewards.models import Redemption, Reward, RewardKind
from exchange.services.catalog import CatalogService
from exchange.services.rewards import REWARDS_PAGE, RewardService
from exchange.web.access import Page, query_value
from exchange.web.partner.forms import (
    BASE,
    PARTNER_PATH,
    READ,
    WRITE,
    FormValues,
    Problems,
    ensure_own,
    partner_of,
    program_of,
)
from exchange.web.templating import Pages

#: Notices after a change, by the ``done`` query parameter.
DONE = ("published", "repriced", "restocked", "withdrawn", "confirmed", "cancelled")
#: Redemptions listed at most (the oldest due first); more wait for the next page load.
AWAITING_SHOWN = 200
REDEMPTIONS_SHOWN = 50
#: Rewards the rewards page lists (a listing's page; a test lowers it); a link lists the next ones.
REWARDS_SHOWN = REWARDS_PAGE


def draft_of(values: FormValues, zone: ZoneInfo) -> RewardDraft:
    kind = values.text("kind") or RewardKind.DIRECT.value
    if kind not in RewardKind.__members__:
        raise BadUserInput(f"kind must be one of {', '.join(RewardKind.__members__)}", field="kind")
    return RewardDraft(
        id=values.text("id"),
        title=values.required("title"),
        description=values.raw.get("description", ""),
        price=values.decimal("price"),
        stock=values.required_integer("stock"),
        kind=RewardKind(kind),
        per_member_limit=values.integer("perMemberLimit"),
        min_level=values.integer("minLevel") or 0,
        available_from=values.moment("availableFrom", zone),
        available_until=values.moment("availableUntil", zone),
    )


class RewardPages:
    def __init__(self, *, rewards: RewardService, pages: Pages, catalog: CatalogService) -> None:
        self.rewards = rewards
        self.pages = pages
        self.catalog = catalog

    def routes(self) -> list[Page]:
        prefix = f"{PARTNER_PATH}/rewards"
        return [
            Page(prefix, self.list_rewards, rule=READ),
            Page(f"{prefix}/new", self.publish_form, rule=WRITE),
            Page(prefix, self.publish, rule=WRITE, methods=["POST"]),
            Page(prefix + "/{reward_id}", self.reward, rule=READ),
            Page(prefix + "/{reward_id}/price", self.reprice, rule=WRITE, methods=["POST"]),
            Page(prefix + "/{reward_id}/restock", self.restock, rule=WRITE, methods=["POST"]),
            Page(prefix + "/{reward_id}/withdraw", self.withdraw, rule=WRITE, methods=["POST"]),
            Page(f"{PARTNER_PATH}/redemptions", self.awaiting, rule=READ),
            Page(f"{PARTNER_PATH}/redemptions/confirm", self.confirm, rule=WRITE, methods=["POST"]),
            Page(f"{PARTNER_PATH}/redemptions/cancel", self.cancel, rule=WRITE, methods=["POST"]),
        ]

    async def list_rewards(self, request: Request) -> Response:
        try:
            listed = await self.rewards.rewards(
                program_id=program_of(request),
                available_only=False,
                first=REWARDS_SHOWN,
                after=query_value(request, "after"),
            )
        except NotARewardCursor:  # no reward of this partner's listing
            raise HTTPException(status_code=404) from None
        done = request.query_params.get("done")
        return self.pages.render(
            request,
            "console/partner/rewards.html",
            {
                "rewards": listed.items,
                "next_after": listed.next_after,
                "currency": (await self.catalog.cache.get()).currency,
                "now": self.rewards.clock.now(),
                "done": done if done in DONE else None,
            },
        )

    async def publish_form(self, request: Request) -> Response:
        return await self._publish_page(request, {}, Problems())

    async def publish(self, request: Request) -> Response:
        values = FormValues(await request.form())
        try:
            reward = await self.rewards.publish(program_of(request), draft_of(values, self.pages.zone))
        except ExchangeError as error:
            problems = Problems()
            problems.add(error)
            return await self._publish_page(request, values.raw, problems, status_code=422)
        return RedirectResponse(f"{BASE}/rewards/{reward.id}?done=published", status_code=303)

    async def _publish_page(
        self, request: Request, values: Mapping[str, Any], problems: Problems, *, status_code: int = 200
    ) -> Response:
        return self.pages.render(
            request,
            "console/partner/reward_form.html",
            {
                "values": values,
                "problems": problems,
                "currency": (await self.catalog.cache.get()).currency,
                "levels": (await self.catalog.coalition()).ladder,
                "kinds": list(RewardKind),
            },
            status_code=status_code,
        )

    async def _own_reward(self, request: Request) -> Reward:
        """The reward the address names, if it is the partner's own: 404 if there is none, or
        if it is another partner's."""
        try:
            reward = await self.rewards.reward(str(request.path_params["reward_id"]))
        except RewardNotFound:
            raise HTTPException(status_code=404) from None
        ensure_own(request, reward)
        return reward

    async def reward(self, request: Request) -> Response:
        reward = await self._own_reward(request)
        done = request.query_params.get("done")
        return await self._reward_page(request, reward, done=done if done in DONE else None)

    async def _reward_page(
        self,
        request: Request,
        reward: Reward,
        *,
        done: str | None = None,
        values: Mapping[str, Any] | None = None,
        problems: Problems | None = None,
        status_code: int = 200,
    ) -> Response:
        redemptions = (
            await self.rewards.reward_redemptions(partner_of(request), reward.id, first=REDEMPTIONS_SHOWN)
        ).items
        catalog = await self.catalog.cache.get()
        currency = catalog.currency
        now = self.rewards.clock.now()
        return self.pages.render(
            request,
            "console/partner/reward.html",
            {
                "reward": reward,
                "now": now,
                "available": rewards_catalog.is_available(reward, now),
                "redemptions": redemptions,
                "programs": catalog.programs,
                "currency": currency,
                "price": currency.from_minor(reward.price_minor),
                "values": values or {},
                "problems": problems or Problems(),
                "done": done,
            },
            status_code=status_code,
        )

    async def reprice(self, request: Request) -> Response:
        return await self._change(
            request,
            "repriced",
            lambda reward, values: self.rewards.reprice(partner_of(request), reward.id, values.decimal("price")),
        )

    async def restock(self, request: Request) -> Response:
        return await self._change(
            request,
            "restocked",
            lambda reward, values: self.rewards.restock(
                partner_of(request), reward.id, values.required_integer("units")
            ),
        )

    async def withdraw(self, request: Request) -> Response:
        return await self._change(
            request, "withdrawn", lambda reward, _: self.rewards.withdraw(partner_of(request), reward.id)
        )

    async def _change(
        self, request: Request, done: str, change: Callable[[Reward, FormValues], Awaitable[Reward]]
    ) -> Response:
        """Apply ``change`` to the partner's own reward the request names, with the form it
        posted: back to the reward with notice ``done``, or its page again naming the problem."""
        reward = await self._own_reward(request)
        values = FormValues(await request.form())
        try:
            await change(reward, values)
        except ExchangeError as error:
            problems = Problems()
            problems.add(error)
            return await self._reward_page(request, reward, values=values.raw, problems=problems, status_code=422)
        return RedirectResponse(f"{BASE}/rewards/{reward.id}?done={done}", status_code=303)

    async def awaiting(self, request: Request) -> Response:
        redemptions = await self.rewards.awaiting_delivery(partner_of(request), first=AWAITING_SHOWN)
        done = request.query_params.get("done")
        return await self._awaiting_page(request, redemptions, done=done if done in DONE else None)

    async def _awaiting_page(
        self,
        request: Request,
        redemptions: Sequence[Redemption],
        *,
        done: str | None = None,
        problems: Problems | None = None,
        status_code: int = 200,
    ) -> Response:
        rewards = await self.rewards.rewards_by_id({redemption.reward_id for redemption in redemptions})
        return self.pages.render(
            request,
            "console/partner/redemptions.html",
            {
                "redemptions": redemptions,
                "titles": {reward_id: reward.title for reward_id, reward in rewards.items()},
                "programs": (await self.catalog.cache.get()).programs,
                "done": done,
                "problems": problems or Problems(),
            },
            status_code=status_code,
        )

    async def confirm(self, request: Request) -> Response:
        return await self._settle_redemption(request, "confirmed")

    async def cancel(self, request: Request) -> Response:
        return await self._settle_redemption(request, "cancelled")

    async def _settle_redemption(self, request: Request, done: str) -> Response:
        caller = partner_of(request)
        values = FormValues(await request.form())
        try:
            redemption_id = values.required("redemptionId")
            if done == "confirmed":
                await self.rewards.confirm_delivery(caller, redemption_id)
            else:
                await self.rewards.cancel(caller, redemption_id)
        except ExchangeError as error:
            problems = Problems()
            problems.add(error)
            redemptions = await self.rewards.awaiting_delivery(caller, first=AWAITING_SHOWN)
            return await self._awaiting_page(request, redemptions, problems=problems, status_code=422)
        return RedirectResponse(f"{BASE}/redemptions?done={done}", status_code=303)
