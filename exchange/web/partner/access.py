"""The partner's OAuth clients (create, rotate a secret, revoke) and the public keys it signs
member assertions with (add, retire). A new secret is shown once, on the answer to the form
that made it, and never again: the exchange keeps only its hash."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.auth.assertions import PUBLIC_KEY_LENGTH
from exchange.auth.clients import ClientCredentials
from exchange.auth.scopes import MEMBER_SCOPES_FIELD, ROLE_SCOPES, Role, Scope, parse_scopes
from exchange.errors import BadUserInput, ExchangeError
from exchange.services.access import AccessService
from exchange.web.access import Page, form_text
from exchange.web.partner.forms import BASE, PARTNER_PATH, READ, WRITE, FormValues, Problems, program_of
from exchange.web.templating import Pages

PARTNER_SCOPES = sorted(ROLE_SCOPES[Role.PARTNER])
MEMBER_SCOPES = sorted(ROLE_SCOPES[Role.MEMBER])
DONE = ("revoked", "key-added", "key-retired")


def public_key_of(form: FormData) -> str:
    text = form_text(form, "publicKey").strip()
    if not text:
        raise BadUserInput("publicKey is required: paste the public key as a JWK or PEM", field="publicKey")
    if len(text) > PUBLIC_KEY_LENGTH:
        raise BadUserInput(f"publicKey must be at most {PUBLIC_KEY_LENGTH} characters", field="publicKey")
    return text


class AccessPages:
    def __init__(self, *, access: AccessService, pages: Pages) -> None:
        self.access = access
        self.pages = pages

    def routes(self) -> list[Page]:
        prefix = PARTNER_PATH
        return [
            Page(f"{prefix}/access", self.overview, rule=READ),
            Page(
                f"{prefix}/clients",
                self.create_client,
                rule=WRITE,
                methods=["POST"],
                lists=["scopes", MEMBER_SCOPES_FIELD],
            ),
            Page(f"{prefix}/clients/rotate", self.rotate, rule=WRITE, methods=["POST"]),
            Page(f"{prefix}/clients/revoke", self.revoke, rule=WRITE, methods=["POST"]),
            Page(f"{prefix}/keys", self.add_key, rule=WRITE, methods=["POST"]),
            Page(f"{prefix}/keys/retire", self.retire_key, rule=WRITE, methods=["POST"]),
        ]

    async def overview(self, request: Request) -> Response:
        done = request.query_params.get("done")
        return await self._page(request, done=done if done in DONE else None)

    async def _page(
        self,
        request: Request,
        *,
        done: str | None = None,
        issued: ClientCredentials | None = None,
        problems: Problems | None = None,
        key_text: str = "",
        status_code: int = 200,
    ) -> Response:
        own = program_of(request)
        return self.pages.render(
            request,
            "console/partner/access.html",
            {
                "clients": await self.access.program_clients(own),
                "keys": (await self.access.assertion_keys([own])).get(own, []),
                "scopes": PARTNER_SCOPES,
                "member_scopes": MEMBER_SCOPES,
                "issued": issued,
                "done": done,
                "problems": problems or Problems(),
                "key_text": key_text,
            },
            status_code=status_code,
        )

    async def _refused(self, request: Request, error: ExchangeError, *, key_text: str = "") -> Response:
        problems = Problems()
        problems.add(error)
        return await self._page(request, problems=problems, key_text=key_text, status_code=422)

    async def create_client(self, request: Request) -> Response:
        """A new client with the scopes ticked; member scopes ticked narrow (or widen) the
        member tokens it may obtain, none ticked leaves the default its scopes give."""
        form = await request.form()
        try:
            chosen = [value for value in form.getlist("scopes") if isinstance(value, str)]
            if not chosen:
                raise BadUserInput("choose at least one scope", field="scopes")
            scopes: frozenset[Scope] = parse_scopes(chosen)
            for_members = [value for value in form.getlist(MEMBER_SCOPES_FIELD) if isinstance(value, str)]
            issued = await self.access.create_client(
                role=Role.PARTNER,
                program_id=program_of(request),
                scopes=scopes,
                member_scopes=parse_scopes(for_members) if for_members else None,
            )
        except ExchangeError as error:
            return await self._refused(request, error)
        return await self._page(request, issued=issued)

    async def rotate(self, request: Request) -> Response:
        values = FormValues(await request.form())
        try:
            issued = await self.access.rotate_program_client(program_of(request), values.required("clientId"))
        except ExchangeError as error:
            return await self._refused(request, error)
        return await self._page(request, issued=issued)

    async def revoke(self, request: Request) -> Response:
        values = FormValues(await request.form())
        try:
            await self.access.revoke_program_client(program_of(request), values.required("clientId"))
        except ExchangeError as error:
            return await self._refused(request, error)
        return RedirectResponse(f"{BASE}/access?done=revoked", status_code=303)

    async def add_key(self, request: Request) -> Response:
        form = await request.form()
        raw = form.get("publicKey")
        try:
            await self.access.register_assertion_key(program_of(request), public_key_of(form))
        except ExchangeError as error:
            return await self._refused(request, error, key_text=raw[:PUBLIC_KEY_LENGTH] if isinstance(raw, str) else "")
        return RedirectResponse(f"{BASE}/access?done=key-added", status_code=303)

    async def retire_key(self, request: Request) -> Response:
        values = FormValues(await request.form())
        try:
            await self.access.remove_assertion_key(program_of(request), values.required("kid"))
        except ExchangeError as error:
            return await self._refused(request, error)
        return RedirectResponse(f"{BASE}/access?done=key-retired", status_code=303)
