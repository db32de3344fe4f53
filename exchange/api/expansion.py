"""How many fields a GraphQL document selects once its fragments are spread out, and the limit
on that, checked before any walk that spreads them.

The token, depth and alias limits bound how a document is written, not what it asks for: a
fragment that spreads another ten times, which spreads another ten times, and so on, asks for
10^k fields in a few hundred tokens. Strawberry's depth and alias limiters walk the document
with every spread expanded, once per spread, and so does the check for fields needing a token;
such a document, sent without a token or with one, held the event loop for seconds at five
levels and for hours at eight. :func:`selected_fields` counts each fragment once (time linear
in the document), and :func:`within_fields_limit` refuses a document over the limit before
the limiters it guards run at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from graphql import (
    ASTValidationRule,
    DefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)


def selected_fields(definitions: Sequence[DefinitionNode]) -> int:
    """The fields a document's operations select, each fragment spread counted at its size."""
    fragments = {node.name.value: node for node in definitions if isinstance(node, FragmentDefinitionNode)}
    sizes: dict[str, int] = {}
    spreading: set[str] = set()  # a cycle counts nothing here; validation refuses it

    def size(selection_set: SelectionSetNode | None) -> int:
        total = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                total += 1 + size(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                total += size(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                total += fragment_size(selection.name.value)
        return total

    def fragment_size(name: str) -> int:
        if name not in sizes:
            fragment = fragments.get(name)
            if fragment is None or name in spreading:
                return 0
            spreading.add(name)
            sizes[name] = size(fragment.selection_set)
            spreading.discard(name)
        return sizes[name]

    return sum(size(node.selection_set) for node in definitions if isinstance(node, OperationDefinitionNode))


def within_fields_limit(limit: int, guarded: Sequence[type[ASTValidationRule]]) -> type[ASTValidationRule]:
    """A validation rule: a document selecting more than ``limit`` fields (fragments spread out)
    is refused, and the ``guarded`` rules, which spread every fragment as they walk, run only
    on a document within it."""

    class FieldsLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            selected = selected_fields(context.document.definitions)
            if selected > limit:
                context.report_error(
                    GraphQLError(
                        f"the document selects {selected} fields once its fragments are spread out; "
                        f"at most {limit} are allowed"
                    )
                )
                return
            for rule in guarded:
                rule(context)  # these do their work as they are made; they visit nothing

    return FieldsLimit
