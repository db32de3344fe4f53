"""Who may open which page: one declared rule per route, deny by default.

Declare a page with its rule::

    Page("/periods", periods, rule=requires(Scope.SETTLEMENT_READ))

The rules are the very objects GraphQL fields declare (:mod:`exchange.auth.rules`, re-exported
here), asked about the same :class:`~exchange.auth.principal.Principal` (a signed-in person's
role, scopes and program): :data:`PUBLIC`, :func:`roles`, :func:`requires` (any of the scopes),
combined with ``&`` and ``|``. A page declared without a rule gets :data:`NOBODY` and refuses
everyone; the web front end accepts no route that is not a :class:`Page`. Tenant checks (a
partner's own program) belong to the services a page calls, as in GraphQL.

The guard refuses before the page runs: without a session, a ``GET`` is sent to sign in and
anything else is ``401``; with a session the rule does not admit, ``403``. Every request that
is not ``GET``/``HEAD`` must carry the session's CSRF token (form field ``csrf_token``, or the
``X-CSRF-Token`` header htmx sends), or it is ``403`` and the page does not run.

The guard also reads every ``POST``'s form, in the one way every page then shares (the page's
``request.form()`` is the guard's, read once): a body larger than a form of these pages is
``413``, one that is not a form ``415``, a form the parser refuses ``400``. And no page sees a
value the database cannot hold: an address, query or form value with a NUL (or a file where
text belongs) is ``400``, naming the value and the rule, before the page runs. Nor does a page
pick one of a field's values sent twice: a form field is one value (an amount, an id, a key)
unless its page declares it a list (``lists``: a group of checkboxes), and a repeated one is
``400``, naming it.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping

from starlette.datastructures import FormData, ImmutableMultiDict, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exchange.auth.rules import NOBODY as NOBODY
from exchange.auth.rules import PUBLIC as PUBLIC
from exchange.auth.rules import Rule as Rule
from exchange.auth.rules import requires as requires
from exchange.auth.rules import roles as roles
from exchange.text import ascii_digits, text_problem
from exchange.web.visitors import visitor_of

Endpoint = Callable[[Request], Awaitable[Response]]

SAFE_METHODS = frozenset({"GET", "HEAD"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
#: A form of the consoles is a few fields; a larger body is refused unread.
MAX_FORM_BYTES = 65_536
#: The most digits a cursor in an address has: a row id the database's ``bigint`` holds.
MAX_CURSOR_DIGITS = 18


def wanted_page(wanted: str | None, *, home: str, sign_in: str) -> str:
    """Where to go after signing in: the page asked for, or ``home``. Only a path below ``home``
    (the console's, or the portal's) is followed, never its sign-in, so a link cannot send a
    person elsewhere after they sign in."""
    if (
        wanted
        and wanted.startswith(home)
        and "//" not in wanted
        and "\\" not in wanted
        and wanted.isprintable()
        and not wanted.startswith(sign_in)
    ):
        return wanted
    return home


class Refusal(Exception):
    """The guard refused the request; the web middleware answers with the page that says
    why (``refused.html``, by ``reason``, with ``message`` if the refusal has one, said in the
    reader's language by the rule that wrote it: ``field`` names the value it is about)."""

    status_code = 403
    reason = "forbidden"
    #: Headers the refusal's answer carries (a 405's ``Allow``).
    headers: Mapping[str, str] | None = None

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class SignInNeeded(Refusal):
    status_code = 401
    reason = "sign-in"


class NotAllowed(Refusal):
    status_code = 403
    reason = "forbidden"


class NotServed(Refusal):
    """Nothing at this address of the group (404), or not by this method (405): its router's
    answer, or a page's own (a thing not found, or not the visitor's). Raised as a refusal, a
    page's own reaches the web middleware, which answers it with the visitor's session in the
    group's layout as it answers the router's; as Starlette's ``HTTPException`` it would go to
    the application's handler for addresses no front end serves (JSON for a client that does not
    ask for HTML, else a page in the console's layout for nobody signed in)."""

    def __init__(self, error: HTTPException) -> None:
        super().__init__()
        self.status_code = error.status_code
        self.reason = "not-found" if error.status_code == 404 else "method"
        self.headers = error.headers


#: The ``HTTPException`` statuses :class:`NotServed` answers.
NOT_SERVED = (404, 405)


class CsrfRefused(Refusal):
    status_code = 403
    reason = "csrf"


class FormTooLarge(Refusal):
    status_code = 413
    reason = "too-large"


class BadRequest(Refusal):
    """A value no page takes, or a body that is no form; ``message`` names it and the rule."""

    status_code = 400
    reason = "bad-request"


class NotAForm(BadRequest):
    status_code = 415


class Page(Route):
    """A route of the web front end, guarded by its ``rule`` (left out: :data:`NOBODY`)."""

    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        rule: Rule = NOBODY,
        methods: Collection[str] = ("GET",),
        name: str | None = None,
        csrf: bool = True,
        lists: Collection[str] = (),
        refusal: type[Refusal] = NotAllowed,
    ) -> None:
        """``csrf=False`` is for the one form another site posts by design (a partner sending
        a member back to the portal), which the page checks by a token of its own instead.
        ``lists``: the form's fields that may be sent more than once (checkboxes of one name).
        ``refusal``: what a signed-in visitor the rule does not admit is answered (a page that
        says why for a group of pages whose rule is the same)."""
        self.rule = rule
        self.page = endpoint
        self.csrf = csrf
        self.lists = frozenset(lists)

        async def guarded(request: Request) -> Response:
            visitor = visitor_of(request)
            if not rule.allows(visitor.principal):
                raise SignInNeeded() if visitor.principal is None else refusal()
            form = await read_form(request) if request.method == "POST" else None
            if csrf and request.method not in SAFE_METHODS:
                check_csrf(request, visitor.csrf_token, form)
            check_values(request, form, lists=self.lists)
            try:
                return await endpoint(request)
            except HTTPException as error:
                if error.status_code in NOT_SERVED:
                    raise NotServed(error) from None
                raise

        super().__init__(path, guarded, methods=list(methods), name=name or endpoint.__name__)


def form_text(form: FormData, name: str) -> str:
    """Field ``name`` of ``form`` as sent ("" when absent; the guard refused a file already)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def form_fields(sent: ImmutableMultiDict[str, str | UploadFile], names: Iterable[str]) -> dict[str, str]:
    """Fields ``names`` as sent ("" when absent), by a form's POST or in a page's query: a form
    refused after its POST is shown again at its page's address with what it held as query
    parameters (``Pages.render``'s ``place``), which its page reads back into the form."""
    return {name: value if isinstance(value := sent.get(name), str) else "" for name in names}


async def read_form(request: Request) -> FormData:
    """The request's form, read once for the guard and the page: refused unread when it is
    larger than a form of these pages is (or does not say its length), or is not a form."""
    declared = request.headers.get("content-length")
    if declared is None and "transfer-encoding" not in request.headers:
        return FormData()  # no body at all (a form of nothing but the CSRF header)
    length = ascii_digits(declared or "")
    if length is None or length > MAX_FORM_BYTES:
        raise FormTooLarge()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if length > 0 and media_type not in FORM_MEDIA_TYPES:
        raise NotAForm(f"the body must be a form ({' or '.join(FORM_MEDIA_TYPES)}), not {media_type or 'untyped'}")
    try:
        return await request.form()
    except HTTPException as refused:  # Starlette's answer to a form its parser cannot read
        raise BadRequest(f"the form cannot be read: {refused.detail}") from None


def query_cursor(request: Request, name: str = "after") -> int | None:
    """Query parameter ``name`` as the cursor a page's "next" link writes (a row's number);
    ``None`` when it is absent. Anything else, or the parameter twice, is refused (``400``,
    naming it), as GraphQL refuses a cursor it did not give out: read as "no cursor", it
    would show the first page as if it were the one asked for."""
    value = query_value(request, name)
    if value is None:
        return None
    number = ascii_digits(value) if len(value) <= MAX_CURSOR_DIGITS else None
    if number is None:
        raise BadRequest(
            f"{name} must be the number a page's link gives, in at most {MAX_CURSOR_DIGITS} digits", field=name
        )
    return number


def query_value(request: Request, name: str) -> str | None:
    """Query parameter ``name`` as sent, ``None`` when absent; sent twice, it is refused
    (``400``, naming it): the page would pick one of them."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise sent_more_than_once(name, len(values))
    return values[0]


def sent_more_than_once(name: str, times: int) -> BadRequest:
    """The refusal of a value sent ``times`` times where a page takes one."""
    return BadRequest(f"{name} was sent {times} times: it takes one value", field=name)


def check_csrf(request: Request, expected: str, form: FormData | None) -> None:
    """Refuse a request that does not carry ``expected`` (as a header, or a field of ``form``)."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and form is not None:
        field = form.get(CSRF_FIELD)
        given = field if isinstance(field, str) else None
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CsrfRefused()


def check_values(request: Request, form: FormData | None, *, lists: Collection[str] = ()) -> None:
    """Refuse a value of the address, the query or the form that no page takes: text the
    database cannot hold (a NUL), a file (no form of these pages uploads one), or a form field
    sent more than once that is not one of the page's ``lists`` (which of its values would
    count is anyone's guess: Starlette would give the page the last)."""
    fields = form.multi_items() if form else []
    sent = Counter(name for name, _value in fields)
    for name, times in sent.items():
        if times > 1 and name not in lists:
            raise sent_more_than_once(name, times)
    named = [*request.path_params.items(), *request.query_params.multi_items(), *fields]
    for name, value in named:
        if problem := text_problem(name, MAX_FORM_BYTES):
            raise BadRequest(f"a field's name {problem}")
        if isinstance(value, UploadFile):
            raise BadRequest(f"{name} must be text, not a file", field=name)
        if problem := text_problem(value, MAX_FORM_BYTES):
            raise BadRequest(f"{name} {problem}", field=name)
