"""Which operation of a document runs: the one ``operationName`` names, or the only one.

GraphQL's execution algorithm refuses a document of several operations sent without
``operationName``; Strawberry runs the first of them instead, so a client that sent two
mutations by mistake would have one of them carried out. :func:`refuse_several_unnamed` refuses
such a request before anything runs, as a request error (``GRAPHQL_VALIDATION_FAILED``).
"""

from __future__ import annotations

from graphql import GraphQLError, OperationDefinitionNode
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError


def refuse_several_unnamed(context: ExecutionContext) -> None:
    """Refuse, before execution, a document of several operations sent without
    ``operationName`` (its result set: nothing runs)."""
    document = context.graphql_document
    if document is not None and context._provided_operation_name is None:
        operations = sum(isinstance(node, OperationDefinitionNode) for node in document.definitions)
        if operations > 1:
            context.result = PreExecutionError(
                data=None,
                errors=[
                    GraphQLError(f"the document holds {operations} operations: name the one to run in operationName")
                ],
            )
