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
from typing import Any

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
from graphql.validation.rules.overlapping_fields_can_be_merged import OverlappingFieldsCanBeMergedRule


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


#: Most comparisons (:func:`merge_comparisons`) a document may cost the check that its fields
#: merge: about a tenth of a second of one core. A document repeating one field 70 times in a
#: selection set is within it; no client needs to send one that is not.
MAX_MERGE_COMPARISONS = 5_000


class _OverBudget(Exception):
    pass


def merge_comparisons(definitions: Sequence[DefinitionNode], budget: int) -> int:
    """About how many comparisons graphql-core's OverlappingFieldsCanBeMerged makes on a
    document (rather more than fewer: a fragment counts at every spread), counted up to
    ``budget + 1``.

    The rule compares every two fields of one response name that meet in a selection set
    (fragments spread), then their sub-selections pairwise, and so on down; and every two
    fragments spread in one selection set, and each with the fields beside it: work quadratic
    in how often a document repeats a field or spreads fragments side by side. Four hundred
    ``viewer { role }`` in one query, within the token limit, are 160 000 comparisons: seconds
    of the event loop, with a token or without.
    """
    fragments = {node.name.value: node for node in definitions if isinstance(node, FragmentDefinitionNode)}
    collected: dict[int, dict[str, list[FieldNode]]] = {}
    count = 0

    def counted(more: int) -> None:
        nonlocal count
        count += more
        if count > budget:
            raise _OverBudget

    def fields(selection_set: SelectionSetNode) -> dict[str, list[FieldNode]]:
        """The fields meeting in ``selection_set`` by response name, fragments spread (each
        fragment once, as the rule collects them; a cycle, which validation refuses, ends)."""
        if id(selection_set) not in collected:
            collected[id(selection_set)] = {}  # while collecting: a cycle back here adds nothing
            by_name: dict[str, list[FieldNode]] = {}
            spread: set[str] = set()

            def add(selections: SelectionSetNode) -> None:
                for selection in selections.selections:
                    if isinstance(selection, FieldNode):
                        name = (selection.alias or selection.name).value
                        by_name.setdefault(name, []).append(selection)
                    elif isinstance(selection, InlineFragmentNode):
                        add(selection.selection_set)
                    elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in spread:
                        spread.add(selection.name.value)
                        if (fragment := fragments.get(selection.name.value)) is not None:
                            for name, named in fields(fragment.selection_set).items():
                                by_name.setdefault(name, []).extend(named)

            add(selection_set)
            collected[id(selection_set)] = by_name
        return collected[id(selection_set)]

    def compared(first: FieldNode, second: FieldNode) -> None:
        counted(1)
        if first.selection_set is not None and second.selection_set is not None:
            theirs = fields(second.selection_set)
            for name, ours in fields(first.selection_set).items():
                for one in ours:
                    for other in theirs.get(name, ()):
                        compared(one, other)

    def within(selection_set: SelectionSetNode) -> None:
        spreads, beside = _side_by_side(selection_set)
        counted(spreads * (spreads - 1) // 2 + spreads * beside)
        for named in fields(selection_set).values():
            for index, one in enumerate(named):
                for other in named[index + 1 :]:
                    compared(one, other)
        below(selection_set)

    def below(selection_set: SelectionSetNode) -> None:
        """The selection sets the rule checks under ``selection_set``: its fields' (an inline
        fragment's own is part of the one it is in)."""
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode) and selection.selection_set is not None:
                within(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                below(selection.selection_set)

    try:
        for node in definitions:
            if isinstance(node, (OperationDefinitionNode, FragmentDefinitionNode)):
                within(node.selection_set)
    except _OverBudget:
        pass
    return count


def _side_by_side(selection_set: SelectionSetNode) -> tuple[int, int]:
    """The fragments spread directly in ``selection_set`` (inline fragments flattened), each
    named once, and the fields beside them."""
    spread: set[str] = set()
    fields = 0
    pending = [selection_set]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                fields += 1
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                spread.add(selection.name.value)
    return len(spread), fields


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


class FieldsMergeWithinBudget(OverlappingFieldsCanBeMergedRule):
    """graphql-core's check that the fields of one response name can be merged, on a document
    it compares within :data:`MAX_MERGE_COMPARISONS`; any other is refused unchecked. It takes
    the place of the specified rule (see :class:`~exchange.api.schema.ExchangeValidationRules`)."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.within_budget = (
            merge_comparisons(context.document.definitions, MAX_MERGE_COMPARISONS) <= MAX_MERGE_COMPARISONS
        )
        if not self.within_budget:
            context.report_error(
                GraphQLError(
                    "the document repeats fields, or spreads fragments side by side, too often to check that they "
                    f"merge (over {MAX_MERGE_COMPARISONS} comparisons): select each field once in a selection set"
                )
            )

    def enter_selection_set(self, *args: Any) -> None:
        if self.within_budget:
            super().enter_selection_set(*args)
