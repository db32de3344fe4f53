"""The repository tells the truth about the code: schema file, README, deploy files, CI."""

from __future__ import annotations

import re
import shlex

import yaml
from click.testing import CliRunner
from graphql import NoDeprecatedCustomRule, parse, validate

from exchange.api.schema import build_schema
from exchange.cli import main
from exchange.settings import Settings
from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_schema_graphql_is_the_schema_the_code_serves() -> None:
    committed = (REPO_ROOT / "schema.graphql").read_text()
    exported = build_schema(Settings()).as_str() + "\n"
    assert committed == exported, "schema.graphql is stale: run `exchange schema export --output schema.graphql`"


def test_schema_export_prints_the_same_sdl() -> None:
    result = CliRunner().invoke(main, ["schema", "export"])
    assert result.exit_code == 0
    assert result.output == (REPO_ROOT / "schema.graphql").read_text()


def test_the_documents_graphql_examples_fit_the_schema_without_deprecated_fields() -> None:
    schema = build_schema(Settings())._schema
    documents = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "partners").glob("*.md"))]
    examples = [
        (path.name, block)
        for path in documents
        for block in re.findall(r"```graphql\n(.*?)```", path.read_text(), flags=re.DOTALL)
    ]
    assert examples
    for name, example in examples:
        document = parse(example)
        assert validate(schema, document) == [], name
        assert validate(schema, document, [NoDeprecatedCustomRule]) == [], name


def test_readme_documents_every_setting() -> None:
    for name in Settings.model_fields:
        assert f"EXCHANGE_{name.upper()}" in README, f"README.md does not document EXCHANGE_{name.upper()}"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in README
    assert re.search(r"^make test\b", ci, re.MULTILINE)


def _cli_accepts(argv: list[str]) -> bool:
    """Whether `exchange <argv>` names a real command (asked with --help, nothing runs)."""
    words = [word for word in argv if not word.startswith("-")]
    return CliRunner().invoke(main, [*words, "--help"]).exit_code == 0


def test_container_image_runs_the_exchange_command_as_a_non_root_user() -> None:
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    user = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    entrypoint = re.findall(r"^ENTRYPOINT\s+(\[.*\])", dockerfile, re.MULTILINE)
    assert entrypoint and yaml.safe_load(entrypoint[-1]) == ["exchange"]
    command = re.findall(r"^CMD\s+(\[.*\])", dockerfile, re.MULTILINE)
    assert command and _cli_accepts(yaml.safe_load(command[-1]))
    for name in re.findall(r"^ENV\s+(EXCHANGE_\w+)", dockerfile, re.MULTILINE):
        assert name.removeprefix("EXCHANGE_").lower() in Settings.model_fields, name


def test_compose_runs_migrations_before_the_gateway_on_postgresql() -> None:
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    gateway, migrate = services["gateway"], services["migrate"]
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["image"].startswith("postgres:")
    for service in (gateway, migrate):
        command = service["command"]
        argv = shlex.split(command) if isinstance(command, str) else command
        assert _cli_accepts(argv), argv
        environment = service["environment"]
        assert environment["EXCHANGE_DATABASE_URL"].startswith("postgresql://")
        for name in environment:
            assert name.startswith("EXCHANGE_") and name.removeprefix("EXCHANGE_").lower() in Settings.model_fields, (
                name
            )
    assert migrate["command"][:2] == ["db", "upgrade"]
    assert gateway["command"][0] == "serve"


def test_the_compose_gateway_passes_the_production_checks_given_its_secret() -> None:
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())
    environment = dict(compose["services"]["gateway"]["environment"])
    assert environment["EXCHANGE_KEY_ENCRYPTION_SECRET"].startswith("${EXCHANGE_KEY_ENCRYPTION_SECRET:?")
    environment["EXCHANGE_KEY_ENCRYPTION_SECRET"] = "s" * 32
    settings = Settings(**{name.removeprefix("EXCHANGE_").lower(): value for name, value in environment.items()})
    settings.check_for_production()
