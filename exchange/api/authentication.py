"""Who is calling the GraphQL API, settled before any field executes.

* A request with an ``Authorization: Bearer`` token has it verified first (signature,
  RFC 9068 claims, revocation). A present but bad token is answered ``401`` with
  ``WWW-Authenticate: Bearer error="invalid_token", error_description="…"`` and a GraphQL
  error (``UNAUTHENTICATED``) as body; nothing executes.
* A request without a token may run operations whose every selected field is public.
  One that selects a protected field anywhere (even under ``@skip``) is answered ``401``
  with ``WWW-Authenticate: Bearer`` and an ``UNAUTHENTICATED`` error naming the fields;
  nothing executes.
* Scope and tenant are then checked per field (:mod:`exchange.api.permissions`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, cast

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    SelectionSetNode,
    get_named_type,
    get_operation_ast,
)
from graphql.type import GraphQLAbstractType, GraphQLCompositeType
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError

from exchange.api.media import response_media_type
from exchange.api.permissions import Rule
from exchange.auth.errors import InvalidAccessToken, oauth_description
from exchange.auth.presented import repeated_authorization
from exchange.auth.principal import Principal
from exchange.auth.tokens import TokenVerifier
from exchange.errors import ErrorCode, Unauthenticated


class PrincipalUser(BaseUser):
    """Starlette's view of the caller (``request.user``)."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.subject


def principal_of(connection: HTTPConnection) -> Principal | None:
    user = connection.scope.get("user")
    return user.principal if isinstance(user, PrincipalUser) else None


class TokenRefused(AuthenticationError):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class BearerTokenBackend(AuthenticationBackend):
    """Verifies ``Authorization: Bearer`` tokens (RFC 6750 §2.1) for Starlette."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def authenticate(self, connection: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = connection.headers.get("authorization")
        if header is None:
            return None
        if repeated_authorization(connection.headers):
            raise TokenRefused("invalid_request", "send one Authorization header, not several")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRefused("invalid_request", "send the access token as: Authorization: Bearer <token>")
        try:
            verified = await self._verifier.verify(token.strip())
        except InvalidAccessToken as refused:
            raise TokenRefused("invalid_token", refused.message) from None
        principal = verified.principal
        return AuthCredentials(sorted(principal.scopes)), PrincipalUser(principal)


def www_authenticate(error: str | None = None, description: str | None = None) -> str:
    """The RFC 6750 challenge for a refusal (``error``) or a missing token (none)."""
    if error is None:
        return "Bearer"
    challenge = f'Bearer error="{error}"'
    if description:
        challenge += f', error_description="{oauth_description(description)}"'
    return challenge


def refuse_token(connection: HTTPConnection, refused: AuthenticationError) -> Response:
    """The 401 for a bad token: a GraphQL error body, in the media type the client accepts."""
    error = refused.error if isinstance(refused, TokenRefused) else "invalid_token"
    description = str(refused)
    return JSONResponse(
        {"errors": [{"message": description, "extensions": {"code": ErrorCode.UNAUTHENTICATED.value}}]},
        status_code=401,
        headers={"WWW-Authenticate": www_authenticate(error, description)},
        media_type=response_media_type(connection.headers),
    )


def fields_needing_a_token(
    schema: GraphQLSchema,
    rules: Mapping[str, Rule],
    document: DocumentNode,
    operation_name: str | None,
) -> list[str]:
    """The protected fields (``Type.field``) the operation to run selects, in order."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return []
    root = schema.get_root_type(operation.operation)
    if root is None:
        return []
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    needing: list[str] = []
    for name in _selected_fields(schema, fragments, operation.selection_set, root, set()):
        if name not in needing and not rules[name].is_public:
            needing.append(name)
    return needing


def _selected_fields(
    schema: GraphQLSchema,
    fragments: Mapping[str, FragmentDefinitionNode],
    selection_set: SelectionSetNode,
    parent: GraphQLCompositeType,
    spread: set[str],
) -> Iterator[str]:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if name.startswith("__"):
                continue  # introspection: public, and describes the schema only
            for object_type in _object_types(schema, parent):
                field = object_type.fields[name]
                yield f"{object_type.name}.{name}"
                if selection.selection_set is not None:
                    child = get_named_type(field.type)
                    assert isinstance(child, (GraphQLObjectType, GraphQLAbstractType))
                    yield from _selected_fields(schema, fragments, selection.selection_set, child, spread)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            target = schema.get_type(condition.name.value) if condition else parent
            assert isinstance(target, (GraphQLObjectType, GraphQLAbstractType))
            yield from _selected_fields(schema, fragments, selection.selection_set, target, spread)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in spread:
            fragment = fragments[selection.name.value]
            target = schema.get_type(fragment.type_condition.name.value)
            assert isinstance(target, (GraphQLObjectType, GraphQLAbstractType))
            yield from _selected_fields(
                schema, fragments, fragment.selection_set, target, spread | {selection.name.value}
            )


def _object_types(schema: GraphQLSchema, parent: GraphQLCompositeType) -> list[GraphQLObjectType]:
    """The object types a selection on ``parent`` can land on (all of them, if abstract)."""
    if isinstance(parent, GraphQLObjectType):
        return [parent]
    assert isinstance(parent, GraphQLAbstractType)
    return list(schema.get_possible_types(parent))


class RuledSchema(Protocol):
    """What :func:`refuse_without_token` needs of the schema (``ExchangeSchema`` provides it)."""

    _schema: GraphQLSchema
    field_rules: Mapping[str, Rule]


def refuse_without_token(context: ExecutionContext) -> None:
    """Refuse, before execution, an operation without a token that selects protected fields
    (its result set: nothing runs)."""
    if context.context.principal is None and context.graphql_document is not None:
        schema = cast(RuledSchema, context.schema)
        needing = fields_needing_a_token(
            schema._schema, schema.field_rules, context.graphql_document, context.operation_name
        )
        if needing:
            refusal = Unauthenticated(
                "an access token is needed for " + ", ".join(needing) + ": send Authorization: Bearer <token>"
            )
            context.result = PreExecutionError(
                data=None, errors=[GraphQLError(refusal.message, original_error=refusal)]
            )
