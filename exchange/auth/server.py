"""The OAuth 2.0 authorization server: Authlib's framework-neutral server, run for Starlette.

Authlib's server is synchronous and the exchange's database is async. Each OAuth request
therefore runs in a worker thread (which also keeps Argon2 checks and RSA signing off the
event loop), and the Authlib hooks that need the database hand a coroutine back to the
loop and wait for it (:meth:`RequestWork.run`). One unit of work (database session) serves
the whole request.

Grants: client credentials (partners, staff tools) and the JWT-bearer assertion grant
(RFC 7523) by which a partner obtains a token for a member it has authenticated. Endpoints:
introspection (RFC 7662) and revocation (RFC 7009). Tokens: JWT access tokens (RFC 9068)
from :mod:`exchange.auth.tokens`.

What counts as a failed authentication, for the failure rate limit: ``invalid_client`` (the
client's credentials are wrong, or name no client), and on the token endpoint a member
assertion that fails to verify (its signature, claims or ``jti``), which counts against the
client its ``iss`` claims. Nothing else does: a client that authenticated and then asks for
something it may not have (another client's token, a scope beyond its own) has not failed to
prove who it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Request,
    TokenMixin,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerGrant
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response

from exchange.auth import assertions, clients, revocation
from exchange.auth.errors import (
    AssertionRejected,
    InvalidAccessToken,
    oauth_description,
)
from exchange.auth.hashing import verify_client_secret, verify_nobody
from exchange.auth.keys import SigningKeys
from exchange.auth.models import OAuthClient
from exchange.auth.presented import PresentedClient
from exchange.auth.scopes import (
    InvalidScope,
    Role,
    Scope,
    parse_scopes,
    scope_text,
)
from exchange.auth.tokens import (
    TokenVerifier,
    VerifiedToken,
    access_token_claims,
    sign_access_token,
)
from exchange.errors import BadUserInput
from exchange.members import service as members
from exchange.members.models import Member

logger = logging.getLogger("exchange.auth")

T = TypeVar("T")

#: How clients authenticate at the token, introspection and revocation endpoints.
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = JWTBearerGrant.GRANT_TYPE
#: Why a client that sent no credentials, a wrong secret or an unknown client id is refused,
#: and what to check: the same words for all three, so that the answer does not tell whether a
#: client id exists.
NOT_AUTHENTICATED = (
    "the client did not authenticate: its secret is wrong, its client_id unknown or none was sent; "
    "send client_id and client_secret by HTTP Basic or in the form"
)
#: How Authlib words its refusals that :meth:`ExchangeAuthorizationServer.authenticate_client`
#: rewords as :data:`NOT_AUTHENTICATED`: no method authenticated the client, or no client has
#: the id.
_AUTHLIB_NOT_AUTHENTICATED = ("The client cannot authenticate", "The client does not exist")


@dataclass
class RequestWork:
    """One OAuth request's unit of work, shared by Authlib's synchronous hooks.

    ``authentication_failed`` is set when the request failed to authenticate a client (see
    the module's docstring); the caller counts it against the failure rate limit.
    """

    session: AsyncSession
    loop: asyncio.AbstractEventLoop
    now: datetime
    clients: dict[str, ExchangeClient | None] = field(default_factory=dict)
    authentication_failed: bool = False

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the event loop and wait for it (from the worker thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


_work: ContextVar[RequestWork] = ContextVar("oauth_request_work")


@dataclass(frozen=True)
class FormRequest:
    """What Authlib needs of an HTTP request, read on the event loop beforehand."""

    method: str
    url: str
    headers: Headers
    form: Mapping[str, str]


class StarletteOAuth2Request(OAuth2Request):
    def __init__(self, request: FormRequest) -> None:
        super().__init__(request.method, request.url, headers=request.headers)
        self._form = request.form
        self.payload = BasicOAuth2Payload(dict(request.form))

    @property
    def form(self) -> Mapping[str, str]:
        return self._form


class ExchangeClient(ClientMixin):
    """Authlib's view of an :class:`~exchange.auth.models.OAuthClient` row."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row
        self.client_id = row.client_id
        self.role = clients.client_role(row)
        self.scopes = clients.client_scopes(row)
        self.member_scopes = clients.client_member_scopes(row)

    def get_client_id(self) -> str:
        return self.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        return verify_client_secret(self.row.secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in CLIENT_AUTH_METHODS

    def check_grant_type(self, grant_type: str) -> bool:
        """Every client may use client credentials; only partners vouch for members."""
        return grant_type == CLIENT_CREDENTIALS or (grant_type == JWT_BEARER and self.role is Role.PARTNER)


class IntrospectedToken(TokenMixin):
    """Authlib's view of a verified access token (a revoked or expired one never verifies)."""

    def __init__(self, verified: VerifiedToken) -> None:
        self.verified = verified
        self.claims = verified.claims

    def check_client(self, client: ExchangeClient) -> bool:
        return bool(self.claims["client_id"] == client.client_id)

    def is_expired(self) -> bool:
        return self.verified.principal.expires_at <= _work.get().now

    def is_revoked(self) -> bool:
        return False


class ClientCredentials(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        granted_scopes(self.request.client, None, self.request.payload.scope)


class MemberAssertionGrant(JWTBearerGrant):
    """A partner's signed assertion about a member it has authenticated (RFC 7523 §2.1).

    ``iss`` is the partner's client id, ``sub`` the member's ref at the partner. A member new
    to the exchange is created and linked on the way: the partner vouches for them.

    The assertion alone authenticates the partner (RFC 7523 §3.1). A request that also sends
    client credentials (Basic or form) has them checked like any other: wrong ones are
    ``invalid_client``, and the client they authenticate must be the one the assertion's
    ``iss`` names, so no client presents an assertion another client signed.
    """

    server: ExchangeAuthorizationServer
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    #: The client the request's credentials authenticated, if it sent any.
    authenticated_client: ExchangeClient | None = None

    def validate_token_request(self) -> None:
        request = self.request
        if PresentedClient.read(request.headers, request.form).client_credentials:
            self.authenticated_client = self.authenticate_token_endpoint_client()
        super().validate_token_request()

    def extract_assertion(self, assertion: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        """Authlib's, refusing as it refuses other malformed JSON a payload nested too deeply
        for Python's reader (see :func:`exchange.text.json_value`)."""
        try:
            return super().extract_assertion(assertion)  # type: ignore[no-any-return]
        except RecursionError:
            raise InvalidGrantError(description="Invalid JWT payload.") from None

    def process_assertion_claims(self, assertion: str) -> Mapping[str, Any]:
        """Authlib's steps, with the exchange's algorithms, lifetime bound and replay check."""
        _, unverified = self.extract_assertion(assertion)
        issuer = unverified.get("iss")
        client = self.resolve_issuer_client(issuer) if isinstance(issuer, str) else None
        work = _work.get()
        if client is None:
            work.authentication_failed = True
            raise InvalidGrantError(description="the assertion's iss names no client here")
        authenticated = self.authenticated_client
        if authenticated is not None and authenticated.client_id != client.client_id:
            raise InvalidGrantError(description="the assertion's iss is not the client that authenticated")
        try:
            claims = work.run(
                assertions.accept_assertion(
                    work.session,
                    assertion,
                    issuer=client.client_id,
                    program_id=client.row.program_id,
                    audiences=self.get_audiences(),
                    now=work.now,
                )
            )
        except AssertionRejected as rejected:
            work.authentication_failed = True
            raise InvalidGrantError(description=oauth_description(rejected.message)) from None
        return claims

    def resolve_issuer_client(self, issuer: str) -> ExchangeClient | None:
        return self.server.query_client(issuer)

    def get_audiences(self) -> list[str]:
        return [self.server.issuer, self.server.token_endpoint]

    def validate_requested_scope(self) -> None:
        granted_scopes(self.request.client, Role.MEMBER, self.request.payload.scope)

    def authenticate_user(self, subject: str) -> Member:
        work = _work.get()
        program_id = self.request.client.row.program_id
        try:
            return work.run(members.resolve_member_from_partner(work.session, program_id, subject, work.now))
        except BadUserInput as invalid:
            raise InvalidGrantError(description=oauth_description(invalid.message)) from None

    def has_granted_permission(self, client: ExchangeClient, user: Member) -> bool:
        """The partner's own signed word is the member's grant: nothing else to check."""
        return True


class _TokenLookup:
    """Finds a presented token for introspection and revocation: only if it verifies."""

    server: ExchangeAuthorizationServer
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def check_params(self, request: OAuth2Request, client: ExchangeClient) -> None:
        """Only ``token`` is required. ``token_type_hint`` is a hint: a server that cannot find
        the token by it searches every type it has (RFC 7009 and RFC 7662, section 2.1), so a
        hint it does not know is no error. Authlib refuses one as ``unsupported_token_type``,
        which RFC 7009 keeps for a token the server cannot revoke. The exchange issues access
        tokens only, and :meth:`query_token` finds them whatever the hint."""
        if "token" not in request.form:
            raise InvalidRequestError(description="the token parameter is missing")

    def query_token(self, token_string: str, token_type_hint: str | None) -> IntrospectedToken | None:
        work = _work.get()
        try:
            return IntrospectedToken(work.run(self.server.verifier.verify(token_string, work.session)))
        except InvalidAccessToken:
            return None


class Introspection(_TokenLookup, IntrospectionEndpoint):
    def check_permission(self, token: IntrospectedToken, client: ExchangeClient, request: OAuth2Request) -> bool:
        """A client introspects the tokens issued to it; admins introspect any."""
        return token.check_client(client) or Scope.ADMIN_READ in client.scopes

    def introspect_token(self, token: IntrospectedToken) -> dict[str, Any]:
        claims = token.claims
        keys = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "role", "program_id", "asserted_by")
        return {"active": True, "token_type": "Bearer", **{k: claims[k] for k in keys if k in claims}}


class Revocation(_TokenLookup, RevocationEndpoint):
    def revoke_token(self, token: IntrospectedToken, request: OAuth2Request) -> None:
        work = _work.get()
        principal = token.verified.principal
        work.run(
            revocation.revoke(
                work.session,
                jti=principal.token_id,
                client_id=principal.client_id,
                expires_at=principal.expires_at,
                now=work.now,
            )
        )


def granted_scopes(client: ExchangeClient, user_role: Role | None, requested: str | None) -> frozenset[Scope]:
    """What a token may carry: for a member, the client's member scopes; for a client, its
    own scopes.

    Nothing requested means all of them; asking for more, or for a scope that does not exist,
    is ``invalid_scope``, naming them (and the unknown ones).
    """
    allowed = client.member_scopes if user_role is Role.MEMBER else client.scopes
    if not requested:
        return allowed
    most = "this client's member tokens may carry at most" if user_role is Role.MEMBER else "this grant allows at most"
    try:
        scopes = parse_scopes(requested)
    except InvalidScope as unknown:
        raise InvalidScopeError(
            description=oauth_description(f"unknown scope {', '.join(unknown.unknown)}: {most}: {scope_text(allowed)}")
        ) from None
    if not scopes or not scopes <= allowed:
        raise InvalidScopeError(description=f"{most}: {scope_text(allowed)}")
    return scopes


class ExchangeAuthorizationServer(AuthorizationServer):
    """Authlib's authorization server with the exchange's clients, grants, tokens and storage."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        token_lifetime: timedelta,
        keys: SigningKeys,
        verifier: TokenVerifier,
    ) -> None:
        super().__init__(scopes_supported=[scope.value for scope in Scope])
        self.issuer = issuer
        self.token_endpoint = f"{issuer}/oauth/token"
        self.audience = audience
        self.token_lifetime = token_lifetime
        self.keys = keys
        self.verifier = verifier
        self.register_grant(ClientCredentials)
        self.register_grant(MemberAssertionGrant)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)
        self.register_token_generator("default", self.generate_access_token)

    # -- Authlib's hooks; they run in the worker thread of :meth:`handle` --

    def authenticate_client(self, request: OAuth2Request, methods: list[str], endpoint: str = "token") -> Any:
        """Authlib's client authentication, with its refusals reworded: when no method
        authenticated the client (a wrong secret, or none sent) it names its list of methods
        (``The client cannot authenticate with methods: ['client_secret_basic', …]``), which
        does not tell a client's developer what to check, and an unknown client id it calls
        one (``The client does not exist on this server.``, and ``400`` when the id came in
        the form), which tells anyone which ids exist. All are ``401``, as a wrong secret is."""
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as refused:
            if not str(refused.description).startswith(_AUTHLIB_NOT_AUTHENTICATED):
                raise
            raise InvalidClientError(status_code=401, description=NOT_AUTHENTICATED) from None

    def get_token_grant(self, request: OAuth2Request) -> Any:
        """The grant ``grant_type`` names; an unknown one is refused naming those there are
        (Authlib's refusal says nothing)."""
        try:
            return super().get_token_grant(request)
        except UnsupportedGrantTypeError as refused:
            refused.description = oauth_description(
                f"grant_type {refused.grant_type!r} is not granted here: use {CLIENT_CREDENTIALS}, "
                f"or {JWT_BEARER} for a member's token"
            )
            raise

    def query_client(self, client_id: str) -> ExchangeClient | None:
        """The client ``client_id`` names. An unknown one costs what checking a wrong secret
        costs (:func:`~exchange.auth.hashing.verify_nobody`): refused at once, it would tell by
        the time alone which client ids exist."""
        work = _work.get()
        if client_id not in work.clients:
            row = work.run(clients.get_client(work.session, client_id))
            work.clients[client_id] = ExchangeClient(row) if row is not None else None
            if row is None:
                verify_nobody(client_id)
        return work.clients[client_id]

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Access tokens are self-contained JWTs: nothing to store, only an audit line."""
        user = request.user
        logger.info(
            "issued a token to client %s%s",
            request.client.client_id,
            f" for member {user.id}" if user is not None else "",
        )

    def create_oauth2_request(self, request: FormRequest) -> OAuth2Request:
        return StarletteOAuth2Request(request)

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        return JSONResponse(body, status_code=status, headers=dict(headers))

    def handle_error_response(self, request: OAuth2Request | None, error: OAuth2Error) -> Response:
        if error.error == InvalidClientError.error:
            _work.get().authentication_failed = True
        return self.handle_response(*error(self.get_error_uri(request, error)))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        logger.debug("oauth signal %s %s", name, {k: repr(v) for k, v in kwargs.items()})

    def generate_access_token(
        self,
        grant_type: str,
        client: ExchangeClient,
        user: Member | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """A signed RFC 9068 token: for the member ``user`` if given, else for the client.

        A member's token names the program of the partner that asserted the member
        (``asserted_by``): the only program whose points it spends without a consent.

        It is never dated before the client's secret was last set: a replica whose clock is a
        little behind the one that reset the secret would otherwise date its tokens before the
        reset, and every replica would refuse them as issued with the old secret.
        """
        work = _work.get()
        secret_set_at = client.row.secret_set_at
        scopes = granted_scopes(client, Role.MEMBER if user is not None else None, scope)
        claims = access_token_claims(
            issuer=self.issuer,
            audience=self.audience,
            client_id=client.client_id,
            role=Role.MEMBER if user is not None else client.role,
            scopes=scopes,
            subject=user.id if user is not None else client.client_id,
            program_id=client.row.program_id if user is None else None,
            asserted_by=client.row.program_id if user is not None else None,
            now=work.now if secret_set_at is None else max(work.now, secret_set_at),
            lifetime=self.token_lifetime,
        )
        return {
            "token_type": "Bearer",
            "access_token": sign_access_token(claims, work.run(self.keys.signing_key(work.session))),
            "expires_in": int(self.token_lifetime.total_seconds()),
            "scope": scope_text(scopes),
        }

    # -- running a request --

    def handle(self, work: RequestWork, action: Callable[[FormRequest], Response], request: FormRequest) -> Response:
        """Run one Authlib action in this (worker) thread, with ``work`` as its unit of work."""
        reset = _work.set(work)
        try:
            return action(request)
        except OAuth2Error as error:
            return self.handle_error_response(None, error)
        finally:
            _work.reset(reset)

    def token_response(self, request: FormRequest) -> Response:
        return self.create_token_response(request)  # type: ignore[no-any-return]  # Authlib is untyped

    def introspection_response(self, request: FormRequest) -> Response:
        return self.create_endpoint_response(Introspection.ENDPOINT_NAME, request)  # type: ignore[no-any-return]  # Authlib is untyped

    def revocation_response(self, request: FormRequest) -> Response:
        return self.create_endpoint_response(Revocation.ENDPOINT_NAME, request)  # type: ignore[no-any-return]  # Authlib is untyped


def malformed_basic_authorization(headers: Headers) -> bool:
    """A Basic header Authlib would choke on: credentials that are not UTF-8 once decoded
    (``UnicodeDecodeError``), or a header whose bytes past 0x7f make its base64 text that is
    not ASCII (``ValueError``)."""
    try:
        extract_basic_authorization(headers)
    except ValueError:  # UnicodeDecodeError is one
        return True
    return False


def error_response(error: OAuth2Error) -> Response:
    status, body, headers = error()
    return JSONResponse(body, status_code=status, headers=dict(headers))


def invalid_client_response(description: str = "the Basic credentials are not base64 of UTF-8 text") -> Response:
    return error_response(InvalidClientError(status_code=401, description=description))
