"""A form field's problem as a page says it: the form's own label for the field, and the rule
it broke, in the reader's language.

A service's error names its field as the API does (``bonusEvery``, ``fromProgram``) and says
the rule in English (``must be positive, got 0``). The partner console's forms name their
fields the same way, so a page can show the error on its field; this module reads the English
back into the rule that wrote it (:data:`RULES`, the one table of them) and its values, for
the page to say with its label (``console/partner/fields.html``'s ``field_problem``, with the
labels of ``console/partner/_labels.html``), e.g. "每單位點數必須大於 0". A text no rule wrote
is said as the exchange's detail, after the field's label.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime
from string import Formatter

from exchange.errors import ExchangeError
from exchange.settlement.participants import EXCHANGE
from exchange.settlement.records import (
    CARRIAGE_RETURNS,
    EMPTY_LINE,
    NOT_UTF8,
    REQUIRED,
    SEPARATOR_LINE,
    STATEMENT_UPLOADED,
    TRAILING_EMPTY_FIELDS,
    UNNAMED_COLUMNS,
    UTF16,
)
from exchange.streaming import ENCODED, UNREAD_CHARSET
from exchange.text import CHOSEN_ID_LENGTH, CHOSEN_ID_RULE, counted_pattern

#: Values that are whole numbers (written with thousands commas, maybe negative).
NUMBERS = frozenset({"least", "most", "line", "fields", "places", "first", "last", "more", "records"})
#: How such a number is written.
NUMBER = "-?[0-9][0-9,]*"
#: How a field is named in a message: as the API spells it.
FIELD_NAME = r"[A-Za-z][A-Za-z0-9_.\[\]]*"


@dataclass(frozen=True, slots=True)
class FieldRule:
    """A rule the exchange's services check on a field, by ``key``, and one ``template`` its
    English is written from (``str.format`` fields; ``{field}`` is the field's API name; a
    field with a noun, ``{fields:field}``, a count written with it by :func:`~exchange.text.counted`;
    a field named twice holds the same value both times)."""

    key: str
    template: str
    _pattern: re.Pattern[str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = []
        named: set[str] = set()
        for literal, name, noun, _ in Formatter().parse(self.template):
            parts.append(re.escape(literal))
            if name in named:
                parts.append(f"(?P={name})")  # said again: the same value
            elif name == "field" or name == "other":
                parts.append(f"(?P<{name}>{FIELD_NAME})")
            elif name is not None and noun:
                parts.append(counted_pattern(name, noun, NUMBER))
            elif name in NUMBERS:
                parts.append(f"(?P<{name}>{NUMBER})")
            elif name is not None:
                parts.append(f"(?P<{name}>.+?)")
            if name is not None:
                named.add(name)
        object.__setattr__(self, "_pattern", re.compile("".join(parts), re.DOTALL))

    def values(self, written: str) -> dict[str, str] | None:
        found = self._pattern.fullmatch(written)
        return None if found is None else found.groupdict()


#: :data:`~exchange.text.CHOSEN_ID_RULE`, its length a value.
CHOSEN_ID_TEMPLATE = CHOSEN_ID_RULE.replace(f"1 to {CHOSEN_ID_LENGTH} ", "{least} to {most} ")

#: Why a partner's records file is refused (:mod:`exchange.settlement.records`,
#: :mod:`exchange.settlement.reconciliation`), each the reason of a
#: :class:`~exchange.settlement.errors.MalformedRecords` (``line {line}: {reason}; nothing was
#: imported``). ``{got}`` is the value as the refusal quotes it; ``{column}``, a column's name.
_HEADER = f"the header must name the columns {' and '.join(REQUIRED)}: {{column}} is missing; got {{got}}"
_FIELDS = "{fields:field}, but the header names {most}"
_AMOUNT = (
    "{column}: {got} is not an amount in {currency}: write an exact decimal such as -1234.5, with at most "
    "{decimals} decimals and {digits} integer digits, a decimal point and no thousands separator"
)
_TOTALS_ROW = (
    "RECORDS_TOTALS_ROW",
    "{column}: {got} looks like a totals row: its amount, {total}, is the sum of every record above it, "
    "and the ledger has no such reference for {partner} in {period}; remove the row: a file holds records only",
)
_SUBTOTAL_ROW = (
    "RECORDS_SUBTOTAL_ROW",
    "{column}: {got} looks like a subtotal row: its amount, {total}, is the sum of the records on lines {first} "
    "to {last}, and the ledger has no such reference for {partner} in {period}; remove the row: a file holds "
    "records only",
)
RECORDS_REASONS: tuple[tuple[str, str], ...] = (
    ("RECORDS_NOT_UTF8", NOT_UTF8),
    ("RECORDS_UTF16", UTF16),
    ("RECORDS_EMPTY", "the file is empty: its first line must be the header"),
    ("RECORDS_NO_HEADER", "an empty line; the first line must be the header"),
    ("RECORDS_CARRIAGE_RETURNS", CARRIAGE_RETURNS),
    (
        "RECORDS_HEADER_SEMICOLONS",
        _HEADER + ": fields are separated by commas, not semicolons (a spreadsheet set to a decimal comma "
        "saves with semicolons); write amounts with a decimal point, as 1234.50",
    ),
    (
        "RECORDS_HEADER_TABS",
        _HEADER + ': fields are separated by commas, not tabs (as a spreadsheet saves "Text"): save as "CSV UTF-8"',
    ),
    ("RECORDS_SEPARATOR_LINE", f"{{got}} {SEPARATOR_LINE}"),
    ("RECORDS_HEADER", _HEADER),
    ("RECORDS_HEADER_TWICE", "the header names the column {column} twice; got {got}"),
    ("RECORDS_STATEMENT", STATEMENT_UPLOADED),
    ("RECORDS_LONG_LINE", "a line over {most} bytes"),
    (
        "RECORDS_LONG_RECORD",
        "a record over {most} bytes: a quoted field opened on this line runs on (a double quote that ends it missing?)",
    ),
    ("RECORDS_EMPTY_LINE", EMPTY_LINE),
    (
        "RECORDS_HEADER_AGAIN",
        "repeats the header: a file has one header line, its first (were two files joined?)",
    ),
    ("RECORDS_HEADER_AGAIN", "repeats the header's names in another order: a file has one header line, its first"),
    ("RECORDS_CONTROL", "a field holds a control character or a line break: remove it; no field may hold one"),
    (
        "RECORDS_OPEN_QUOTE",
        "a quoted field opened on this line never ends: a quoted field ends with a double quote, "
        'and a double quote within it is written twice ("")',
    ),
    (
        "RECORDS_QUOTE_INSIDE",
        'a double quote in the middle of a field; quote whole fields only, a quote within one written twice ("")',
    ),
    (
        "RECORDS_DECIMAL_COMMA",
        "{column}: {got} is written with a decimal comma: write {instead}, with a decimal point "
        "(unquoted, its comma split the line: " + _FIELDS + ")",
    ),
    (
        "RECORDS_THOUSANDS",
        "{column}: {got} is written with a thousands separator: write {instead}, with no separator "
        "(unquoted, its comma split the line: " + _FIELDS + ")",
    ),
    ("RECORDS_FIELDS_TRAILING_EMPTY", f"{_FIELDS}: {TRAILING_EMPTY_FIELDS}"),
    ("RECORDS_FIELDS_UNNAMED", f"{_FIELDS}: {UNNAMED_COLUMNS}"),
    ("RECORDS_FIELDS", _FIELDS),
    ("RECORDS_COLUMN_QUOTE", "{column}: holds a double quote: remove it; no column the exchange reads may hold one"),
    ("RECORDS_LINE_BREAK", "{column}: holds a line break; only a column the exchange does not read may"),
    (
        "RECORDS_BARE_QUOTE",
        'a double quote in a field not wrapped in double quotes: wrap the field in quotes and write the quote twice ("")',
    ),
    ("RECORDS_REFERENCE_LENGTH", "{column}: must be {least} to {most} characters, got {got}"),
    (
        "RECORDS_REFERENCE_SPACES",
        "{column}: {got} starts or ends with a space; write the reference as the statement prints it",
    ),
    (
        "RECORDS_REFERENCE_INVISIBLE",
        "{column}: {got} holds an invisible character, {character}, at character {at}; "
        "type the reference again, or copy it from the statement",
    ),
    ("RECORDS_AMOUNT_PARENTHESES", _AMOUNT + "; a negative amount takes a minus sign (-3.00), not parentheses"),
    ("RECORDS_AMOUNT_NOT_A_NUMBER", _AMOUNT + "; NaN, Infinity and exponents (1e3) are not exact decimals"),
    (
        "RECORDS_AMOUNT_DASH",
        _AMOUNT + "; a dash alone is how a spreadsheet's accounting format shows zero: "
        "write {zero}, with the column formatted as a plain number",
    ),
    (
        "RECORDS_AMOUNT_SIGN_AFTER",
        _AMOUNT + "; a negative amount takes its minus sign before the figure ({instead}), not after it",
    ),
    (
        "RECORDS_AMOUNT_CREDIT_DEBIT",
        _AMOUNT + "; CR and DR are not read (whose credit?): write the amount from your side, positive when "
        "you are owed it, with a minus sign (-12.00) when you owe it",
    ),
    ("RECORDS_AMOUNT_PLUS", _AMOUNT + "; a positive amount is written without a plus sign ({instead})"),
    (
        "RECORDS_AMOUNT_MINUS_CHARACTER",
        _AMOUNT + "; the minus sign is the ASCII hyphen-minus ({instead}), not {character}",
    ),
    (
        "RECORDS_AMOUNT_CURRENCY",
        _AMOUNT + "; write the figure alone, without a currency sign or code: amounts are in the settlement currency",
    ),
    (
        "RECORDS_DECIMAL_COMMA",
        _AMOUNT + "; {written} is written with a decimal comma: write {instead}, with a decimal point",
    ),
    (
        "RECORDS_THOUSANDS",
        _AMOUNT + "; {written} is written with a thousands separator: write {instead}, with no separator",
    ),
    (
        "RECORDS_AMOUNT_COMMA",
        _AMOUNT + "; a comma may be a decimal comma or a thousands separator "
        "(1,234.50 and 1.234,50 mean the same in different spreadsheets), so it is not guessed",
    ),
    (
        "RECORDS_AMOUNT_DECIMALS",
        _AMOUNT + "; it has {places:decimal}, more than the currency has (where a dot separates "
        "thousands it reads {whole}), so it is not guessed",
    ),
    ("RECORDS_AMOUNT", _AMOUNT),
    ("RECORDS_COUNTERPARTY", f"{{column}}: {{got}} is neither a program id nor {EXCHANGE}"),
    ("RECORDS_COUNTERPARTY", f"{{column}}: {{got}} is neither a program of the coalition nor {EXCHANGE}"),
    (
        "RECORDS_DATE",
        "{column}: {got} is not a date written YYYY-MM-DD: a spreadsheet may have written it its own way; "
        "format the column as text and write the date again, or leave it empty (a date is kept with a break, "
        "never compared)",
    ),
    ("RECORDS_CALENDAR", "{column}: {got} is not a date on the calendar"),
    (
        "RECORDS_PERIOD_FORM",
        "{column}: {got} is not a period written YYYY-MM, as {expected}: a spreadsheet may have made it a date; "
        "format the column as text and write the period again",
    ),
    (
        "RECORDS_NOT_THIS_IMPORT",
        "{column}: {got} is not {expected}: a file holds one partner's records of one period, in the settlement currency",
    ),
    *((key, f"{template} ({{more:more such row}} below it)") for key, template in (_TOTALS_ROW, _SUBTOTAL_ROW)),
    _TOTALS_ROW,
    _SUBTOTAL_ROW,
    (
        "RECORDS_TRAILER_ROW",
        "{column}: {got} looks like a trailer row: its amount, {records}, is the number of records above it, "
        "and the ledger has no such reference for {partner} in {period}; remove the row: a file holds records only",
    ),
    (
        "RECORDS_TOTAL_OUT_OF_RANGE",
        "{column}: the total of the amounts up to this line, {total}, has more than {digits} integer digits, as no "
        "amount and no total may; check the amounts above",
    ),
    ("RECORDS_UNREADABLE", "cannot be read as the header's columns"),
)

#: Every rule a partner console's form can break, each with the English its checks write
#: (:mod:`exchange.web.partner.forms`, :mod:`exchange.pricing`, :mod:`exchange.rewards.catalog`,
#: :mod:`exchange.money`, :mod:`exchange.ratio`, :mod:`exchange.text`). A key may have several
#: templates: the same rule, worded by different checks. Most particular first.
RULES: tuple[FieldRule, ...] = (
    FieldRule("REQUIRED", "{field} is required: paste the public key as a JWK or PEM"),
    FieldRule("REQUIRED", "{field} is required"),
    FieldRule("AT_LEAST_ONE", "choose at least one scope"),
    FieldRule("AT_LEAST_ONE", "name at least one program in {field}, or null for all"),
    FieldRule("AT_MOST_CHARACTERS", "{field} must be at most {most} characters"),
    FieldRule("AT_MOST_CHARACTERS", "{field} must be at most {most} characters, got {got}"),
    FieldRule("AT_MOST_CHARACTERS", "a note is at most {most} characters"),
    FieldRule("CHARACTERS", "{field} must be {least} to {most} characters"),
    FieldRule("WHOLE_NUMBER", "{field} must be a whole number from {least} to {most}, got {got}"),
    FieldRule("DECIMAL", "{field} must be written in {notation}, such as 1,250.50, got {got}"),
    FieldRule("MOMENT", "{field} must be a date and time, got {got}"),
    FieldRule("MOMENT", "{field} must be a local date and time, got {got}"),
    FieldRule("YEARS", "{field} must be in the years {least} to {most}, got {got}"),
    FieldRule("POSITIVE", "must be positive, got {got}"),
    FieldRule("POSITIVE", "{field} must be greater than 0, got {got}"),
    FieldRule("BONUS_PAIR", "give both bonusEvery and bonusPoints, or neither"),
    FieldRule("RATIO", '{got} is not a ratio like "3:1"'),
    FieldRule("RATIO_SIDES", "a ratio's sides must be from {least} to {most}, got {got}"),
    FieldRule(
        "DECLARED_RATE",
        "the rate from {source} into {target} is declared in {path}; ask the exchange's operator to change it",
    ),
    FieldRule("ITSELF", "a program cannot be converted into itself"),
    FieldRule("ITSELF", "{program} does not convert into itself"),
    FieldRule("UNKNOWN_PROGRAM", "no program has id {got}; the programs are {known}"),
    FieldRule("UNKNOWN_PROGRAM", "no program has id {got}"),
    FieldRule(
        "UNKNOWN_PROGRAM", "no program has the id given: it is not written as an id is; the programs are {known}"
    ),
    FieldRule("NO_RATE", "no rate converts {source} into {target}"),
    FieldRule("SHOWS_NOTHING", "{field} shows nothing: it holds only spaces and invisible characters"),
    FieldRule(
        "DIRECTION_CONTROL",
        "{field} holds a direction control, {character}, at character {at}: it reorders the text around it when shown",
    ),
    FieldRule("CONTROL_CHARACTER", "{field} holds a control character, {character}, at character {at}"),
    FieldRule("CHOSEN_ID", f"id must be {CHOSEN_ID_TEMPLATE}, got {{length}}"),
    FieldRule("CHOSEN_ID", f"id must be {CHOSEN_ID_TEMPLATE}"),
    FieldRule("ID_TAKEN", "promotion id {got} is taken by other terms"),
    FieldRule("ID_TAKEN", "a reward with id {got} exists"),
    FieldRule("NO_PROMOTION", "{program} has no promotion {got}"),
    FieldRule("PERCENT", "{field} must be more than 0 and at most {most}"),
    FieldRule("DECIMALS", "{field} has at most {most} decimals"),
    FieldRule("AFTER", "{field} must be after {other}"),
    FieldRule("FUTURE", "{field} must be in the future"),
    FieldRule("ONCE", "{field} names a program more than once"),
    FieldRule("RANGE", "{field} must be from {least} to {most} (stock is at most {stock})"),
    FieldRule("RANGE", "{field} must be from {least} to {most}"),
    FieldRule("AT_LEAST", "{field} must be at least {least} (or null: no limit)"),
    FieldRule("LEVEL", "{field} must be a ladder level, {least} to {most}"),
    FieldRule("CHOICE", "{field} must be one of {choices}"),
    FieldRule("MINOR_UNIT", "{amount} is finer than the currency's minor unit"),
    FieldRule("MONEY_DIGITS", "{amount} is out of range: at most {most} digits before the point"),
    # The partner console's redemptions to confirm (exchange.rewards.errors).
    FieldRule("NOT_DELIVERABLE", "redemption {got} is {status}: only a paid direct reward awaits delivery"),
    FieldRule(
        "NOT_CANCELLABLE",
        "redemption {got} is {status}: only a held, or a paid and undelivered, redemption can be cancelled",
    ),
    FieldRule("NO_REDEMPTION", "no redemption of yours has id {got}"),
    # The partner console's clients and keys (exchange.auth.assertions, exchange.auth.clients,
    # exchange.auth.scopes).
    FieldRule("AT_LEAST_ONE", "give at least one member scope"),
    FieldRule("KEY_FORMAT", "public key is neither a JWK nor a PEM key"),
    FieldRule("KEY_FORMAT", "public key is not an RSA, P-256 or Ed25519 public key (JWK or PEM)"),
    FieldRule("KEY_PRIVATE", "public key is a private key: register the public half only"),
    FieldRule("KEY_RSA_BITS", "public key is an RSA key under {least} bits"),
    FieldRule("KEY_P256", "public key must be on curve P-256 (ES256)"),
    FieldRule("KEY_ED25519", "public key must be an Ed25519 key"),
    FieldRule("KEY_KID_LENGTH", "public key kid must be at most {most} characters, got {got}"),
    FieldRule("KEY_KID", "public key kid {problem}"),
    FieldRule("NO_CLIENT", "no OAuth client has id {got}"),
    FieldRule("NO_KEY", "no assertion key has kid {got}"),
    FieldRule("KEY_LIMIT", "at most {most} assertion keys: remove one first"),
    FieldRule("SCOPES_NOT_HELD", "member tokens cannot hold {got}; they may hold {allowed}"),
    FieldRule("MEMBER_READ_NEEDED", "member tokens must hold {got}: add it"),
    FieldRule("SCOPES_NOT_HELD", "the {role} role cannot hold {got}; it may hold {allowed}"),
    FieldRule("UNKNOWN_SCOPE", "unknown scope {got}; known: {known}"),
    # The settlement console's forms (exchange.ledger.periods, exchange.settlement).
    FieldRule("PERIOD", "a period is written YYYY-MM, such as 2026-11; got {got}"),
    FieldRule("YEARS", "a period falls in the years {least} to {most}; got {got}"),
    FieldRule("PERIOD_MONTHS", "periods are {months} months long and start in months {starts}; {got} does not"),
    FieldRule("PERIOD_NOT_OVER", "period {period} is not over: it ends at {ends_at}; close it after then"),
    FieldRule("EARLIER_NOT_CLOSED", "period {period} has postings and is not closed: close it first"),
    FieldRule(
        "NOTHING_TO_CLOSE",
        "period {period} counts as closed already: nothing was posted into it, and {after}, after it, has closed; "
        "there is nothing to close or settle",
    ),
    FieldRule("PERIOD_NOT_CLOSED", "period {period} is not closed: {why}"),
    FieldRule("REASON", "give the reason, in {least} to {most} characters"),
    FieldRule("SELECTED_BREAKS", "name {least} to {most} breaks; select more by filters"),
    FieldRule("RESOLUTION", "choose how to resolve them: accept the ledger's figure, or adjust"),
    FieldRule("BREAK_SCOPE", "choose which breaks: those selected, or every open break the filter shows"),
    FieldRule("BREAK_IDS", "break ids are numbers"),
    FieldRule("BREAK_CLASS", "no class of break is called {got}"),
    FieldRule("NUL", "{field} holds a NUL character"),
    FieldRule("SURROGATE", "{field} holds an unpaired surrogate: it is not Unicode text"),
    FieldRule("ACCEPT_NAMES_NO_COUNTERPARTY", "accepting the ledger's figure posts nothing: name no counterparty"),
    FieldRule(
        "NOT_IN_RECONCILIATION", "break {got} is not one of the current reconciliation of {partner} for {period}"
    ),
    FieldRule(
        "NO_AMOUNT_TO_ADJUST", "break {got} ({kind}) has no amount to adjust by: resolve it on its own, naming one"
    ),
    FieldRule(
        "COUNTERPARTY_UNSAID",
        "name the adjustments' counterparty: the reference {reference} of break {got} does not say who it is",
    ),
    FieldRule("MEDIA_TYPE", "send the records as {media_type}"),
    FieldRule("CHARSET", UNREAD_CHARSET),
    FieldRule("CONTENT_ENCODING", ENCODED),
    # What the web front end's guard refuses before a page sees it, and a page's cursor
    # (exchange.web.access, exchange.web.settlement).
    FieldRule("CURSOR", "{field} must be the number a page's link gives, in at most {most} digits"),
    FieldRule("SENT_TWICE", "{field} was sent {times} times: it takes one value"),
    FieldRule("NOT_A_FILE", "{field} must be text, not a file"),
    FieldRule("FIELD_NAME", "a field's name {problem}"),
    FieldRule("NOT_A_FORM", "the body must be a form ({types}), not {got}"),
    FieldRule("FORM_UNREADABLE", "the form cannot be read: {detail}"),
    FieldRule("LINES_PAST", "{field} must be below {records}: the statement has {records} lines"),
    FieldRule(
        "UNRESOLVED_BREAKS",
        "the period {period} of {partner} has {least} {unresolved}: resolve every break of its reconciliation first "
        "(on the settlement console's reconciliation page, with resolveBreaks, or with exchange settle resolve; "
        "exchange settle breaks --partner {partner} --unresolved {period} lists them)",
    ),
    FieldRule("ADJUST_ITSELF", "a partner cannot adjust against itself"),
    # Before NO_PARTICIPANT, whose period would take in these tails.
    FieldRule(
        "NO_PARTICIPANT_YET",
        "{got} took no part in settling period {period}; it has taken part in no closed period yet",
    ),
    FieldRule(
        "NO_PARTICIPANT_ELSEWHERE",
        "{got} took no part in settling period {period}; the periods it took part in, latest first: {periods}",
    ),
    FieldRule("NO_PARTICIPANT", "{got} took no part in settling period {period}"),
    FieldRule("NO_JOB", "no settlement job has id {got}"),
    FieldRule("JOB_UNEXPECTED", "an unexpected error: see the gateway's log"),
    FieldRule(
        "NOT_RECONCILED", "{partner} has no records imported for {period}: import and reconcile them before signing off"
    ),
    FieldRule("NO_BREAK", "no break has id {got}"),
    FieldRule(
        "EXCHANGE_NOT_RECONCILED",
        "the exchange has no reconciliation of its own: its lines are the other side of the partners' "
        "statements, which their reconciliations compare; name a partner's program, or the coalition point",
    ),
    FieldRule(
        "RESOLVED_DIFFERENTLY",
        "break {got} was already resolved differently: leave it out (exchange settle breaks lists how each break was resolved)",
    ),
    # A partner's records file, uploaded on the settlement console (exchange.settlement).
    *(FieldRule(key, f"line {{line}}: {reason}; nothing was imported") for key, reason in RECORDS_REASONS),
    FieldRule(
        "REIMPORT_RESOLVED",
        "breaks of the reconciliation of {partner} for {period} are already resolved; a new import would reopen them: "
        "resolve the open breaks of the current import instead",
    ),
    FieldRule(
        "RECONCILIATION_REPLACED",
        "the reconciliation of {partner} for {period} was replaced by a later import since the page was shown: "
        "nothing was changed; review the breaks of the current import and try again",
    ),
    FieldRule(
        "SIGNED_OFF",
        "the period {period} of {partner} is signed off: its records and breaks are final; "
        "a difference found since is reconciled in the next open period",
    ),
)
#: Values that are moments (ISO 8601).
MOMENTS = frozenset({"ends_at"})


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """What is wrong with a form, or its field ``field`` (its API name): ``rule`` (a key of
    :data:`RULES`) and its ``values``, or, when no rule wrote it, only the exchange's ``text``."""

    field: str | None
    text: str
    rule: str | None = None
    values: dict[str, object] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, error: ExchangeError) -> FieldProblem:
        """``error`` read back into the rule that wrote it (a rule that names a field, only
        when it names the error's)."""
        return cls.read(error.message, field=error.field)

    @classmethod
    def read(cls, text: str, *, field: str | None = None) -> FieldProblem:
        """A refusal's English ``text``, as an error said it and a row keeps it (a failed
        settlement job's reason), read back into the rule that wrote it."""
        for rule in RULES:
            written = rule.values(text)
            if written is None or written.get("field", field) != field:
                continue
            try:
                values = {name: _value(name, value) for name, value in written.items()}
            except ValueError:  # not what the rule writes after all
                continue
            return cls(field, text, rule.key, values)
        return cls(field, text)


def _value(name: str, written: str) -> object:
    if name in NUMBERS:
        return int(written.replace(",", ""))
    if name in MOMENTS:
        return datetime.fromisoformat(written)
    return written
