"""The repository tells the truth about the code: schema file, README, deploy files, CI."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from graphql import NoDeprecatedCustomRule, parse, validate
from starlette.types import Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from exchange.api.schema import build_schema
from exchange.cli import main
from exchange.db.migrate import display_url
from exchange.demo_month import COALITION_MOVES, COALITION_POINT
from exchange.errors import ErrorCode
from exchange.money import Currency
from exchange.pricing.rules import RateRule, price
from exchange.programs.declarations import read_partners_directory
from exchange.settings import Settings
from tests.conftest import REPO_ROOT
from tests.unit.test_cli_help import leaf_commands

README = (REPO_ROOT / "README.md").read_text()


def test_schema_graphql_is_the_schema_the_code_serves() -> None:
    committed = (REPO_ROOT / "schema.graphql").read_text()
    exported = build_schema(Settings()).as_str() + "\n"
    assert committed == exported, "schema.graphql is stale: run `exchange schema export --output schema.graphql`"


def test_schema_export_prints_the_same_sdl() -> None:
    result = CliRunner().invoke(main, ["schema", "export"])
    assert result.exit_code == 0
    assert result.output == (REPO_ROOT / "schema.graphql").read_text()


#: The documents whose GraphQL examples a newcomer pastes as they are.
DOCUMENTS = [
    REPO_ROOT / "README.md",
    *sorted((REPO_ROOT / "partners").glob("*.md")),
    *sorted((REPO_ROOT / "docs").glob("*.md")),
]


def graphql_blocks() -> list[tuple[str, str]]:
    """Every ```graphql block of the documents, with its document's name."""
    return [
        (path.name, block)
        for path in DOCUMENTS
        for block in re.findall(r"```graphql\n(.*?)```", path.read_text(), flags=re.DOTALL)
    ]


def test_the_documents_graphql_examples_fit_the_schema_without_deprecated_fields() -> None:
    """Both the ```graphql blocks and the queries of the shell examples (``curl … -d '{"query":
    …}'``, ``gql "$TOKEN" '{"query": …}'``) a newcomer pastes as they are (the demo's test runs
    the blocks: tests/integration/test_cli.py)."""
    schema = build_schema(Settings())._schema
    examples = graphql_blocks()
    shell_queries = [
        (path.name, json.loads(body)["query"])
        for path in DOCUMENTS
        for body in re.findall(r"'(\{\"query\": .*?\})'", path.read_text())
    ]
    # Double-quoted, for the shell to put a variable in ($QUOTE): read as the shell reads it.
    shell_queries += [
        (path.name, json.loads(re.sub(r"\$[A-Z]+", "x", re.sub(r'\\([\\"$])', r"\1", body)))["query"])
        for path in DOCUMENTS
        for body in re.findall(r'"(\{\\"query\\": .*?\})"', path.read_text())
    ]
    assert examples and len(shell_queries) >= 21
    examples += shell_queries
    for name, example in examples:
        document = parse(example)
        assert validate(schema, document) == [], name
        assert validate(schema, document, [NoDeprecatedCustomRule]) == [], name


def test_the_webhook_payload_example_is_priced_as_the_sample_programs_price_it() -> None:
    """docs/WEBHOOKS.md's ``conversion.completed`` body converts between two sample programs
    with no declared rate between them: its money value, fee and points out are what the
    declarations in ``partners/`` price (the coalition's fee, no bonus)."""
    example = re.search(r"```json\n(.*?)```", (REPO_ROOT / "docs" / "WEBHOOKS.md").read_text(), re.DOTALL)
    assert example is not None
    data = json.loads(example[1])["data"]
    partners = read_partners_directory(REPO_ROOT / "partners")
    programs = {program.id: program for program in partners.programs}
    source, target = programs[data["fromProgram"]], programs[data["toProgram"]]
    assert all(rate.source != source.id for rate in target.rates)
    pricing = partners.coalition.pricing
    rule = RateRule(source.point_value, target.point_value, pricing.fee_percent, pricing.fee_fixed)
    currency = Currency(partners.coalition.settlement_currency, partners.coalition.currency_minor_units)
    assert data["currency"] == currency.code
    priced = price(rule, data["pointsIn"], currency=currency)
    assert (priced.money_value_minor, priced.fee_minor, priced.points_out) == (
        data["moneyValueMinor"],
        data["feeMinor"],
        data["pointsOut"],
    )


def test_the_readme_counts_the_demo_months_coalition_point_moves() -> None:
    """ "The demo's last month" says how many conversions the month makes through the coalition
    point, from how many partners' programs they earn it and into how many they spend it."""
    number = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
    said = re.search(
        r"(\w+) that earn coalition\s+points from (\w+) partners' programs \((\w+) conversions\) and spend some"
        r"\s+into (\w+) others",
        README,
    )
    assert said is not None
    earned = [move for move in COALITION_MOVES if move[2] == COALITION_POINT]
    spent = [move for move in COALITION_MOVES if move[1] == COALITION_POINT]
    assert [number[word] for word in said.groups()] == [
        len(COALITION_MOVES),
        len({move[1] for move in earned}),
        len(earned),
        len({move[2] for move in spent}),
    ]


def test_the_readme_lists_the_whole_closed_list_of_error_codes() -> None:
    """README's GraphQL section is where a client looks up every ``extensions.code`` it must
    handle: its list is the whole of :class:`ErrorCode`."""
    start = README.index("Every error carries `extensions.code` from a closed list")
    listed = set(re.findall(r"`([A-Z][A-Z_]+)`", README[start : README.index(". An error has,", start)]))
    assert listed == {code.value for code in ErrorCode}


def test_readme_documents_every_setting() -> None:
    for name in Settings.model_fields:
        assert f"EXCHANGE_{name.upper()}" in README, f"README.md does not document EXCHANGE_{name.upper()}"


def test_the_readme_settings_table_gives_each_settings_default() -> None:
    """The default column is the code's default, written as a person sets it; the three it
    describes in words (computed, or kept from print) are left out."""
    described = {"log_format", "issuer", "key_encryption_secret"}
    written = dict(re.findall(r"^\| `EXCHANGE_([A-Z0-9_]+)` \| `([^`]*)` \|", README, re.MULTILINE))
    for name, field in Settings.model_fields.items():
        if name in described:
            continue
        default = field.get_default(call_default_factory=True)
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        if name == "database_url":
            shown = display_url(shown)
        assert written.get(name.upper()) == shown, f"EXCHANGE_{name.upper()}"


def test_the_readme_settings_table_gives_each_settings_bounds() -> None:
    """A value outside a setting's bounds stops every command (naming the variable), so the
    meaning column gives them: the upper bound, and the lower one where it is not 0 or 1 (a
    count, a duration) — written plainly or with thousands commas."""
    rows = dict(re.findall(r"^\| `EXCHANGE_([A-Z0-9_]+)` \| `[^`]*` \|(.*)$", README, re.MULTILINE))
    unstated = []
    for name, field in Settings.model_fields.items():
        for constraint in field.metadata:
            for kind in ("ge", "gt", "le", "lt"):
                bound = getattr(constraint, kind, None)
                if bound is None or (kind in ("ge", "gt") and bound <= 1):
                    continue
                forms = {str(bound), f"{bound:,}"} if isinstance(bound, int) else {str(bound)}
                if not any(
                    re.search(rf"(?<![\d.])(?<!\d,){re.escape(form)}(?!\d|,\d)", rows.get(name.upper(), ""))
                    for form in forms
                ):
                    unstated.append(f"EXCHANGE_{name.upper()}: {kind} {bound}")
    assert unstated == []


def test_the_readme_layout_names_every_package_and_design_document() -> None:
    layout = README[README.index("## Layout") :]
    packages = [path.name for path in (REPO_ROOT / "exchange").iterdir() if (path / "__init__.py").is_file()]
    assert packages and [name for name in packages if f"  {name}/ " not in layout] == []
    assert [path.name for path in (REPO_ROOT / "docs").glob("*.md") if path.name not in layout] == []


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in README
    assert re.search(r"^make test\b", ci, re.MULTILINE)


def markdown_documents() -> list[Path]:
    """The project's own Markdown files (not those of installed packages)."""
    skipped = {".venv", "node_modules", ".git", "test-artifacts"}
    return sorted(path for path in REPO_ROOT.rglob("*.md") if not skipped & set(path.relative_to(REPO_ROOT).parts))


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings (lower case, punctuation dropped, spaces
    to hyphens, a repeated one numbered), and those of its explicit ``<a id>`` tags."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    anchors: set[str] = set(re.findall(r'<a (?:name|id)="([^"]+)"', text))
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.MULTILINE):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(f"{slug}-{count}" if count else slug)
    return anchors


def test_every_relative_link_in_the_documents_resolves() -> None:
    checked = 0
    for document in markdown_documents():
        text = re.sub(r"^```.*?^```", "", document.read_text(), flags=re.MULTILINE | re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, fragment = target.partition("#")
            linked = (document.parent / path) if path else document
            where = f"{document.relative_to(REPO_ROOT)}: {target}"
            assert linked.exists(), f"{where}: no such file"
            if fragment and linked.suffix == ".md":
                assert fragment in heading_anchors(linked.read_text()), f"{where}: no such heading"
            checked += 1
    assert checked >= 50


#: A named section of a document, as prose and schema descriptions send a reader to one:
#: ``partners/SETTLEMENT.md, 'Your records (CSV)'``, ``README.md, "Observability"``.
SECTION_REFERENCE = re.compile(r"""\b(README(?:\.md)?|(?:docs|partners|deploy)/[\w/.-]+\.md)`?,\s+(['"])([^'"]+)\2""")


def section_titles(markdown: str) -> set[str]:
    """A document's headings (without their ``#``), and the bold leads of its paragraphs
    (``**Database connections.**``), which name sections too."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return set(re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.MULTILINE)) | set(
        re.findall(r"^\*\*([^*]+?)\.?\*\*", text, re.MULTILINE)
    )


def test_every_named_section_of_a_document_exists() -> None:
    """Where the schema or a document sends the reader to a section by its title, the document
    has it (a heading, or a paragraph's bold lead; a heading may go on after the title given)."""
    texts = {"schema.graphql": (REPO_ROOT / "schema.graphql").read_text()}
    texts |= {str(path.relative_to(REPO_ROOT)): path.read_text() for path in markdown_documents()}
    checked = 0
    for source, text in texts.items():
        for path, _, written in SECTION_REFERENCE.findall(text):
            title = " ".join(written.split())  # a title may run over a line break
            document = REPO_ROOT / ("README.md" if path == "README" else path)
            assert document.is_file(), f"{source}: {path}: no such file"
            titles = section_titles(document.read_text())
            assert any(found == title or found.startswith(f"{title} (") for found in titles), (
                f"{source}: {path} has no section {title!r}"
            )
            checked += 1
    assert checked >= 5


def asks_for_help(command: click.Command, ctx: click.Context, values: dict[str, object]) -> bool:
    """Whether parsed ``values`` hold the command's help option (`-h`, `--help`), whatever name
    click gives that option."""
    help_option = command.get_help_option(ctx)
    return help_option is not None and bool(values.get(str(help_option.name)))


def cli_problem(argv: Sequence[str], *, placeholders: bool = False) -> str | None:
    """What click would say against `exchange <argv>`, or None if it names a real command
    and every option and argument fits it. Nothing runs.

    Real command lines (the Dockerfile's, the compose file's) are parsed whole, values
    converted as the command would. Documentation writes placeholders for values
    (`--port P`, `--format json|csv|jws`): there only names and arity count, each option
    taking a value as the command's does, no argument missing or left over. A documented
    command path alone (`exchange settle`, `exchange keys rotate` in prose) names the command.
    """
    command: click.Command = main
    ctx = click.Context(main, info_name="exchange", **main.context_settings)
    args = list(argv)
    try:
        while isinstance(command, click.Group):
            values, args, _ = command.make_parser(ctx).parse_args(args)
            if asks_for_help(command, ctx, values):
                return None
            if not args:
                return None if placeholders and ctx.parent else f"`{ctx.command_path}` needs a command"
            name, *args = args
            found = command.get_command(ctx, name)
            if found is None:
                return f"`{ctx.command_path}` has no command {name!r}"
            command, ctx = found, click.Context(found, info_name=name, parent=ctx, **found.context_settings)
        if not placeholders:
            command.parse_args(ctx, args)
            return None
        if not args:
            return None
        values, extra, _ = command.make_parser(ctx).parse_args(args)
    except click.exceptions.Exit:
        return None  # --help
    except click.UsageError as exc:
        return f"`{ctx.command_path}`: {exc.format_message()}"
    if extra:
        return f"`{ctx.command_path}`: unexpected arguments {extra}"
    if asks_for_help(command, ctx, values):
        return None
    hidden = [param.opts[0] for param in command.params if getattr(param, "hidden", False) and param.name in values]
    if hidden:
        return f"`{ctx.command_path}`: {', '.join(hidden)} is an old, hidden name: write the name --help shows"
    missing = [
        param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
        for param in command.params
        if param.required and values.get(param.name) is None
    ]
    return f"`{ctx.command_path}`: missing {', '.join(missing)}" if missing else None


def documented_command_lines(markdown: str) -> list[list[str]]:
    """The `exchange …` command lines of a Markdown text, as argv after `exchange`: code spans
    that are one, and the commands of `sh` blocks (after `&&`/`;`, behind VAR=value)."""
    lines = [span.replace("\\|", "|") for span in re.findall(r"`([^`\n]+)`", markdown)]
    for block in re.findall(r"^```sh\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            lines += re.split(r"&&|;|\$\(", line.split(" #")[0])
    command = re.compile(r"^\s*(?:[A-Za-z_]\w*=\S*\s+)*(?:\S*/)?exchange\s+(.*)$")
    return [
        [word.strip("[]") for word in shlex.split(match.group(1)) if word.strip("[]")]
        for line in lines
        if (match := command.match(line))
    ]


def test_every_documented_command_line_fits_the_command() -> None:
    documents = [
        REPO_ROOT / "README.md",
        *sorted((REPO_ROOT / "partners").glob("*.md")),
        *sorted((REPO_ROOT / "deploy").glob("*.md")),
        *sorted((REPO_ROOT / "docs").glob("*.md")),
        REPO_ROOT / "bench" / "README.md",
        REPO_ROOT / "deploy" / "README.md",
        REPO_ROOT / "deploy" / "k8s" / "README.md",
    ]
    checked = 0
    for path in documents:
        for argv in documented_command_lines(path.read_text()):
            problem = cli_problem(argv, placeholders=True)
            assert problem is None, f"{path.relative_to(REPO_ROOT)}: exchange {shlex.join(argv)}: {problem}"
            checked += 1
    assert checked >= 20


def test_the_readme_commands_table_names_every_option_of_every_command() -> None:
    """README's table of commands is where a newcomer looks up a command: each command has a
    row, and its row names every option the command takes."""
    start = README.index("| command | what it does |")
    rows = README[start : README.index("\n\n", start)].splitlines()[2:]
    missing = []
    for line, command in leaf_commands():
        row = " ".join(row for row in rows if re.search(rf"`exchange {re.escape(line)}[\s`\\]", row))
        if not row:
            missing.append(f"exchange {line}: no row")
        for param in command.params:
            named = any(re.search(rf"{re.escape(option)}(?![\w-])", row) for option in param.opts)
            if isinstance(param, click.Option) and param.name != "help" and not param.hidden and not named:
                missing.append(f"exchange {line}: {param.opts[0]}")
    assert missing == []


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("exchange serve --wrokers 2", "No such option '--wrokers'. Did you mean '--workers'?"),
        ("exchange serve --workers", "Option '--workers' requires an argument."),
        ("exchange clients create --json yes", "unexpected arguments ['yes']"),
        ("exchange settle statement [--format csv] PERIOD", "missing --partner"),
        ("exchange settle close", None),
        ("exchange settle close PERIOD FILE", "unexpected arguments ['FILE']"),
        ("exchange setle close PERIOD", "has no command 'setle'"),
        ("exchange settle statement --partner P [--format json\\|csv\\|jws] PERIOD", None),
        ("exchange db upgrade && exchange serve -h", None),
        ("exchange --help", None),
        ("exchange pending --program P", "--program is an old, hidden name"),
        ("exchange sandbox serve --program ID", "--program is an old, hidden name"),
        ("exchange sandbox serve --partner ID", None),
        ("exchange settle statement --help", None),
    ],
)
def test_a_documented_command_line_that_does_not_fit_is_reported(line: str, problem: str | None) -> None:
    commands = documented_command_lines(f"```sh\n{line}\n```\n")
    assert commands
    found = [cli_problem(argv, placeholders=True) for argv in commands]
    if problem is None:
        assert found == [None] * len(commands)
    else:
        assert len(found) == 1 and problem in str(found[0]), found


def test_a_real_command_line_is_parsed_as_the_command_would() -> None:
    assert cli_problem(["serve", "--workers", "2"]) is None
    assert "'two' is not a valid integer" in str(cli_problem(["serve", "--workers", "two"]))
    assert "No such option '--wrokers'" in str(cli_problem(["serve", "--wrokers", "2"]))
    assert "needs a command" in str(cli_problem(["db"]))


def test_container_image_runs_the_exchange_command_as_a_non_root_user() -> None:
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    user = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    entrypoint = re.findall(r"^ENTRYPOINT\s+(\[.*\])", dockerfile, re.MULTILINE)
    assert entrypoint and yaml.safe_load(entrypoint[-1]) == ["exchange"]
    command = re.findall(r"^CMD\s+(\[.*\])", dockerfile, re.MULTILINE)
    assert command and cli_problem(yaml.safe_load(command[-1])) is None
    for name in re.findall(r"^ENV\s+(EXCHANGE_\w+)", dockerfile, re.MULTILINE):
        assert name.removeprefix("EXCHANGE_").lower() in Settings.model_fields, name


COMPOSE = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())
#: ``${VAR:?message}``: a variable compose refuses to start without.
REQUIRED_VARIABLE = re.compile(r"\$\{(\w+):\?[^}]*\}")


def compose_settings(service: str) -> Settings:
    """The settings an exchange service of the compose file runs with, each required variable
    given a value that passes the production checks (a URL-safe password, an https issuer, a
    secret of 32 characters)."""
    given = {"EXCHANGE_ISSUER": "https://exchange.example.com"}
    environment = {
        name: REQUIRED_VARIABLE.sub(lambda found: given.get(found[1], "s" * 32), value)
        for name, value in COMPOSE["services"][service]["environment"].items()
    }
    return Settings(**{name.removeprefix("EXCHANGE_").lower(): value for name, value in environment.items()})


def test_compose_runs_migrations_before_the_gateway_on_postgresql() -> None:
    services = COMPOSE["services"]
    gateway, migrate, load = services["gateway"], services["migrate"], services["load-partners"]
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert gateway["depends_on"]["load-partners"]["condition"] == "service_completed_successfully"
    assert load["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["image"].startswith("postgres:")
    for service in (gateway, migrate, load):
        command = service["command"]
        argv = shlex.split(command) if isinstance(command, str) else command
        assert cli_problem(argv) is None, cli_problem(argv)
        environment = service["environment"]
        assert environment["EXCHANGE_DATABASE_URL"].startswith("postgresql://")
        for name in set(environment) - {"FORWARDED_ALLOW_IPS"}:  # uvicorn's, read by `exchange serve`
            assert name.startswith("EXCHANGE_") and name.removeprefix("EXCHANGE_").lower() in Settings.model_fields, (
                name
            )
    assert migrate["command"][:2] == ["db", "upgrade"]
    assert load["command"] == ["partners", "load"]
    assert gateway["command"][0] == "serve"


def test_the_compose_gateway_passes_the_production_checks_given_its_secrets() -> None:
    environment = COMPOSE["services"]["gateway"]["environment"]
    assert environment["EXCHANGE_KEY_ENCRYPTION_SECRET"].startswith("${EXCHANGE_KEY_ENCRYPTION_SECRET:?")
    compose_settings("gateway").check_for_production()


async def test_the_compose_gateway_sees_requests_through_the_tls_proxy_on_its_host_as_https() -> None:
    """Published on the host's loopback alone, the gateway's port is reached by the host's TLS
    proxy from Docker's bridge gateway; uvicorn trusts that peer's X-Forwarded-Proto, or the
    OAuth endpoints would refuse every request as plain HTTP (insecure_transport)."""
    gateway = COMPOSE["services"]["gateway"]
    assert all(str(port).startswith("127.0.0.1:") for port in gateway["ports"]), gateway["ports"]
    trusted = gateway["environment"]["FORWARDED_ALLOW_IPS"]
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["scheme"])

    async def nothing() -> Message:
        return {"type": "http.request"}

    async def ignore(message: Message) -> None:
        pass

    for bridge_gateway in ("172.17.0.1", "172.18.0.1", "192.168.16.1", "127.0.0.1"):
        scope: Scope = {
            "type": "http",
            "scheme": "http",
            "client": (bridge_gateway, 50000),
            "headers": [(b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"203.0.113.7")],
        }
        await ProxyHeadersMiddleware(app, trusted_hosts=trusted)(scope, nothing, ignore)
    assert seen == ["https"] * 4


def test_the_compose_file_writes_down_no_secret_and_loads_no_sample() -> None:
    """The database password is a variable compose requires, the same for PostgreSQL and every
    exchange command; the declarations are the operator's, mounted from a directory compose
    requires, and loaded in production, which refuses the bundled samples' inline secrets."""
    services = COMPOSE["services"]
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert REQUIRED_VARIABLE.fullmatch(password), password
    for name in ("migrate", "load-partners", "gateway"):
        url = services[name]["environment"]["EXCHANGE_DATABASE_URL"]
        assert url.startswith(f"postgresql://exchange:{password}@"), name
        assert compose_settings(name).environment == "production", name
    partners_dir = str(compose_settings("load-partners").partners_dir)
    mounts = {mount["target"]: mount for mount in services["load-partners"]["volumes"]}
    assert mounts[partners_dir]["read_only"], partners_dir
    assert REQUIRED_VARIABLE.fullmatch(mounts[partners_dir]["source"]), mounts[partners_dir]["source"]
