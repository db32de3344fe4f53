"""Validation of partners/*.toml: every mistake names the file, the field and the reason."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from exchange.programs.declarations import DeclarationError, plural_point_name, read_partners_directory
from exchange.programs.secrets import client_secret
from tests.conftest import SAMPLE_PARTNERS


@pytest.fixture
def partners(tmp_path: Path) -> Path:
    directory = tmp_path / "partners"
    shutil.copytree(SAMPLE_PARTNERS, directory)
    return directory


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def refusal(directory: Path, *, allow_inline_secrets: bool = True) -> DeclarationError:
    with pytest.raises(DeclarationError) as caught:
        read_partners_directory(directory, allow_inline_secrets=allow_inline_secrets)
    assert "\n" not in str(caught.value)
    return caught.value


def test_sample_directory_declares_six_programs_with_real_world_values() -> None:
    directory = read_partners_directory(SAMPLE_PARTNERS)
    values = {program.id: program.point_value for program in directory.programs}
    assert values == {
        "wallet-pay": Decimal("1"),
        "happy-card": Decimal("0.25"),
        "fresh-mart": Decimal("0.1"),
        "harbor-bank": Decimal("0.05"),
        "tune-stream": Decimal("0.5"),
        "formosa-air": Decimal("0.4"),
    }
    categories = {program.category for program in directory.programs}
    assert {"wallet", "coalition-card", "supermarket", "bank-card", "music", "airline"} <= categories
    airline = next(p for p in directory.programs if p.id == "formosa-air")
    assert [tier.name for tier in airline.tiers] == ["Base", "Silver", "Gold", "Diamond"]
    assert directory.coalition.settlement_currency == "TWD"


def test_a_missing_directory_says_where_declarations_are_read_from(tmp_path: Path) -> None:
    """What a caller that names no option says when run away from partners/ (each command names
    its own: tests/integration/test_cli.py)."""
    with pytest.raises(DeclarationError) as refused:
        read_partners_directory(tmp_path / "partners")
    assert str(refused.value) == (
        f"{tmp_path / 'partners'}: is not a directory: the program declarations are read from it (run where it"
        " is, or name another with EXCHANGE_PARTNERS_DIR)"
    )


def test_unknown_key_is_named(partners: Path) -> None:
    rewrite(partners / "fresh-mart.toml", "point_name = ", 'colour = "red"\npoint_name = ')
    error = refusal(partners)
    assert str(error) == f"{partners / 'fresh-mart.toml'}: colour: unknown key"


def test_missing_field_is_named(partners: Path) -> None:
    rewrite(partners / "wallet-pay.toml", 'point_name = "Wallet Point"\n', "")
    error = refusal(partners)
    assert str(error) == f"{partners / 'wallet-pay.toml'}: point_name: required field is missing"


@pytest.mark.parametrize(
    ("singular", "plural"),
    [
        ("Mile", "Miles"),
        ("Coalition Point", "Coalition Points"),
        ("Pass", "Passes"),
        ("Penny", "Pennies"),
        ("Key", "Keys"),
    ],
)
def test_an_undeclared_plural_is_the_regular_english_one(singular: str, plural: str) -> None:
    assert plural_point_name(singular, None) == plural


def test_a_declared_plural_is_taken_as_written(partners: Path) -> None:
    rewrite(
        partners / "tune-stream.toml", 'point_name = "Note"\n', 'point_name = "Note"\npoint_name_plural = "Notez"\n'
    )
    directory = read_partners_directory(partners)
    declared = next(program for program in directory.programs if program.id == "tune-stream")
    assert plural_point_name(declared.point_name, declared.point_name_plural) == "Notez"


def test_an_empty_plural_is_refused(partners: Path) -> None:
    rewrite(partners / "tune-stream.toml", 'point_name = "Note"\n', 'point_name = "Note"\npoint_name_plural = ""\n')
    assert "point_name_plural" in str(refusal(partners))


def test_negative_point_value_is_refused(partners: Path) -> None:
    rewrite(partners / "happy-card.toml", 'point_value = "0.25"', 'point_value = "-0.25"')
    error = refusal(partners)
    assert error.path.endswith("happy-card.toml")
    assert error.field == "point_value"
    assert "greater than 0" in error.reason


def test_non_decimal_point_value_is_refused(partners: Path) -> None:
    rewrite(partners / "happy-card.toml", 'point_value = "0.25"', 'point_value = "a quarter"')
    error = refusal(partners)
    assert error.field == "point_value"
    assert (
        error.reason
        == 'must be written in plain decimal notation: ASCII digits with at most one ".", and an optional leading "-", got \'a quarter\''
    )


@pytest.mark.parametrize("written", ["2.5e-1", "\uff10.\uff12\uff15", "Infinity"])
def test_point_value_in_exponent_or_non_ascii_digits_is_refused(partners: Path, written: str) -> None:
    rewrite(partners / "happy-card.toml", 'point_value = "0.25"', f'point_value = "{written}"')
    error = refusal(partners)
    assert (error.field, error.path) == ("point_value", str(partners / "happy-card.toml"))
    assert "plain decimal notation" in error.reason


def test_float_point_value_is_refused_as_inexact(partners: Path) -> None:
    rewrite(partners / "happy-card.toml", 'point_value = "0.25"', "point_value = 0.25")
    error = refusal(partners)
    assert error.field == "point_value"
    assert "float is inexact" in error.reason


def test_point_value_finer_than_six_places_is_refused(partners: Path) -> None:
    rewrite(partners / "harbor-bank.toml", 'point_value = "0.05"', 'point_value = "0.0000001"')
    assert refusal(partners).field == "point_value"


def test_duplicate_id_names_both_files(partners: Path) -> None:
    shutil.copy(partners / "fresh-mart.toml", partners / "fresh-mart-copy.toml")
    error = refusal(partners)
    assert error.field == "id"
    assert error.path.endswith("fresh-mart.toml")
    assert "fresh-mart-copy.toml" in error.reason


PROMOTION = """
[[promotions]]
id = "formosa-air-year-end-2026"
bonus_percent = "5"
starts_at = 2026-12-15T00:00:00+08:00
ends_at = 2027-01-05T00:00:00+08:00
"""


def test_a_promotion_id_is_unique_within_its_program_only(partners: Path) -> None:
    """A promotion is named by its program and its id, as partners' own promotions are."""
    with (partners / "fresh-mart.toml").open("a") as declared:
        declared.write(PROMOTION)
    promotions = {
        (program.id, promotion.id)
        for program in read_partners_directory(partners).programs
        for promotion in program.promotions
    }
    assert promotions == {("formosa-air", "formosa-air-year-end-2026"), ("fresh-mart", "formosa-air-year-end-2026")}
    with (partners / "fresh-mart.toml").open("a") as declared:
        declared.write(PROMOTION)
    error = refusal(partners)
    assert (error.path.endswith("fresh-mart.toml"), error.field) == (True, "promotions[1].id")
    assert error.reason == "duplicate promotion id 'formosa-air-year-end-2026'"


def test_tier_level_outside_the_ladder_is_refused(partners: Path) -> None:
    rewrite(partners / "formosa-air.toml", 'name = "Diamond"\nlevel = 4', 'name = "Diamond"\nlevel = 7')
    error = refusal(partners)
    assert error.field == "tiers[3].level"
    assert error.reason == "7 is outside the coalition ladder (levels 0..4)"


def test_tiers_must_rise(partners: Path) -> None:
    rewrite(partners / "formosa-air.toml", 'name = "Silver"\nlevel = 1', 'name = "Silver"\nlevel = 3')
    error = refusal(partners)
    assert error.field == "tiers"
    assert "lowest level first" in error.reason


def test_minimum_must_be_a_multiple_of_the_increment(partners: Path) -> None:
    rewrite(partners / "formosa-air.toml", "minimum_points = 3000", "minimum_points = 3500")
    error = refusal(partners)
    assert error.field == "limits"
    assert "not a multiple of increment 1000" in error.reason


def test_connector_needs_exactly_one_secret_source(partners: Path) -> None:
    rewrite(
        partners / "wallet-pay.toml",
        'client_secret = "sandbox-wallet-pay"',
        'client_secret = "sandbox-wallet-pay"\nclient_secret_env = "WALLET_SECRET"',
    )
    error = refusal(partners)
    assert error.field == "connector.oauth"


def test_unknown_connector_kind_is_refused(partners: Path) -> None:
    rewrite(partners / "wallet-pay.toml", 'kind = "rest"', 'kind = "soap"')
    assert refusal(partners).field == "connector.kind"


@pytest.mark.parametrize(
    ("key", "written", "reason"),
    [
        ("base_url", "https://wallet:hunter2@127.0.0.1:8701", "user name or password"),
        ("base_url", "http://127.0.0.1:8701?tenant=1", "?query"),
        ("base_url", "http://127.0.0.1:8701#top", "#fragment"),
        ("base_url", "http:///wallet", "with a host"),
        ("base_url", "http://127.0.0.1:87010", "port"),
        ("base_url", "http://127.0.0.1:8701/a b", "spaces"),
        ("sign_in_url", "http://wallet:hunter2@127.0.0.1:8701/member-sign-in", "user name or password"),
        ("sign_in_url", "http://127.0.0.1:8701/member-sign-in#top", "#fragment"),
        ("oauth.token_url", "http://wallet:hunter2@127.0.0.1:8701/oauth/token", "user name or password"),
    ],
)
def test_a_partner_address_that_calls_cannot_use_is_refused_without_repeating_it(
    partners: Path, key: str, written: str, reason: str
) -> None:
    """Credentials in an address would ride along in logs and errors (and every call used to
    fail as an internal error); a query or fragment would be lost or broken by the paths and
    parameters the exchange adds."""
    current = {
        "base_url": "http://127.0.0.1:8701",
        "sign_in_url": "http://127.0.0.1:8701/member-sign-in",
        "oauth.token_url": "http://127.0.0.1:8701/oauth/token",
    }[key]
    name = key.rpartition(".")[2]
    rewrite(partners / "wallet-pay.toml", f'{name} = "{current}"', f'{name} = "{written}"')
    error = refusal(partners)
    assert error.field == f"connector.{key}"
    assert reason in error.reason
    assert "hunter2" not in str(error)


def test_a_sign_in_page_may_carry_a_query(partners: Path) -> None:
    rewrite(
        partners / "wallet-pay.toml",
        'sign_in_url = "http://127.0.0.1:8701/member-sign-in"',
        'sign_in_url = "http://127.0.0.1:8701/member-sign-in?brand=wallet"',
    )
    programs = {program.id: program for program in read_partners_directory(partners).programs}
    assert programs["wallet-pay"].connector.sign_in_url == "http://127.0.0.1:8701/member-sign-in?brand=wallet"


def test_invalid_toml_reports_the_line(partners: Path) -> None:
    (partners / "broken.toml").write_text('id = "broken"\nname = \n')
    error = refusal(partners)
    assert error.path.endswith("broken.toml")
    assert "invalid TOML" in error.reason and "line 2" in error.reason


def test_ladder_levels_must_be_consecutive(partners: Path) -> None:
    rewrite(partners / "coalition.toml", "level = 3\n", "level = 5\n")
    error = refusal(partners)
    assert error.path.endswith("coalition.toml")
    assert error.field == "ladder"


def test_missing_coalition_file_is_named(partners: Path) -> None:
    (partners / "coalition.toml").unlink()
    assert refusal(partners).path.endswith("coalition.toml")


def test_directory_without_programs_is_refused(tmp_path: Path) -> None:
    shutil.copy(SAMPLE_PARTNERS / "coalition.toml", tmp_path)
    assert "declares no programs" in str(refusal(tmp_path))


def use_secret_files(partners: Path, secrets: Path) -> dict[str, Path]:
    """Every sample program's inline secret moved into a file of ``secrets``."""
    secrets.mkdir(exist_ok=True)
    files = {}
    for path in sorted(partners.glob("*.toml")):
        if path.name == "coalition.toml":
            continue
        program = path.stem
        files[program] = secrets / program
        files[program].write_text(f"file-secret-{program}\n")
        rewrite(path, f'client_secret = "sandbox-{program}"', f'client_secret_file = "{files[program]}"')
    return files


def test_production_refuses_an_inline_connector_secret(partners: Path) -> None:
    error = refusal(partners, allow_inline_secrets=False)
    assert str(error) == (
        f"{partners / 'formosa-air.toml'}: connector.oauth.client_secret: an inline secret is refused in "
        "production: name client_secret_env or client_secret_file"
    )


def test_production_takes_secrets_from_files_read_at_load(partners: Path, tmp_path: Path) -> None:
    files = use_secret_files(partners, tmp_path / "secrets")
    directory = read_partners_directory(partners, allow_inline_secrets=False)
    oauth = {program.id: program.connector.oauth for program in directory.programs}
    assert oauth["fresh-mart"].client_secret_file == str(files["fresh-mart"])
    assert client_secret(oauth["fresh-mart"], {}) == "file-secret-fresh-mart", "without its line break"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        (" \n\n", "is empty"),
        ("one\ntwo\n", "holds more than one line"),
        (b"\xff\xfe", "is not UTF-8 text"),
        ("directory", "cannot be read: Is a directory"),
    ],
)
def test_a_secret_file_that_is_wrong_fails_the_load_naming_it(
    partners: Path, tmp_path: Path, content: str | bytes | None, reason: str
) -> None:
    secret = use_secret_files(partners, tmp_path / "secrets")["harbor-bank"]
    secret.unlink()
    if content == "directory":
        secret.mkdir()
    elif isinstance(content, bytes):
        secret.write_bytes(content)
    elif content is not None:
        secret.write_text(content)
    error = refusal(partners, allow_inline_secrets=False)
    assert error.path == str(partners / "harbor-bank.toml")
    assert error.field == "connector.oauth.client_secret_file"
    assert error.reason.startswith(f"{secret}: {reason}")


def test_a_secret_file_must_be_named_by_an_absolute_path(partners: Path) -> None:
    rewrite(partners / "wallet-pay.toml", 'client_secret = "sandbox-wallet-pay"', 'client_secret_file = "secrets/x"')
    error = refusal(partners)
    assert (error.field, error.reason) == (
        "connector.oauth.client_secret_file",
        "must be an absolute path, got 'secrets/x'",
    )


def test_a_secret_file_is_one_secret_source_among_three(partners: Path) -> None:
    rewrite(
        partners / "wallet-pay.toml",
        'client_secret = "sandbox-wallet-pay"',
        'client_secret_env = "WALLET_SECRET"\nclient_secret_file = "/run/secrets/wallet-pay"',
    )
    error = refusal(partners)
    assert (error.field, error.reason) == (
        "connector.oauth",
        "give exactly one of client_secret, client_secret_env or client_secret_file",
    )


def test_a_velocity_rule_without_a_limit_is_refused(partners: Path) -> None:
    with (partners / "harbor-bank.toml").open("a") as declaration:
        declaration.write('\n[risk]\n\n[[risk.velocity]]\nper = "member"\nwindow_seconds = 3600\n')
    error = refusal(partners)
    assert str(error) == f"{partners / 'harbor-bank.toml'}: risk.velocity[0]: give max_count, max_points or both"


def test_risk_gates_are_read_with_their_defaults(partners: Path) -> None:
    with (partners / "harbor-bank.toml").open("a") as declaration:
        declaration.write("\n[risk]\nhold_above_points = 100000\n")
    bank = next(p for p in read_partners_directory(partners).programs if p.id == "harbor-bank")
    assert bank.risk is not None
    assert (bank.risk.hold_above_points, bank.risk.cooling_period_seconds, bank.risk.velocity) == (100000, 0, [])
    assert bank.risk.refuse_name_mismatch is False
    assert bank.risk.hold_expires_after_seconds == 7 * 86400


@pytest.mark.parametrize("seconds", ["60", "7776001", "3600.5", '"3600"'])
def test_a_hold_review_time_out_of_bounds_is_refused(partners: Path, seconds: str) -> None:
    with (partners / "harbor-bank.toml").open("a") as declaration:
        declaration.write(f"\n[risk]\nhold_above_points = 100000\nhold_expires_after_seconds = {seconds}\n")
    error = refusal(partners)
    assert f"{partners / 'harbor-bank.toml'}: risk.hold_expires_after_seconds: " in str(error)


@pytest.mark.parametrize(
    ("file", "old", "new", "field", "rule"),
    [
        (
            "fresh-mart.toml",
            "member_daily_cap = 200000",
            "member_daily_cap = 2147483648",
            "limits.member_daily_cap",
            "less than or equal to 2147483647",
        ),
        (
            "fresh-mart.toml",
            "monthly_issue_budget = 50000000",
            "monthly_issue_budget = 9999999999999",
            "limits.monthly_issue_budget",
            "less than or equal to 2147483647",
        ),
        ("fresh-mart.toml", "minimum_points = 200", "minimum_points = 200.0", "limits.minimum_points", "valid integer"),
        (
            "fresh-mart.toml",
            'monthly_issue = "500000"',
            'monthly_issue = "100000000000000"',
            "budget.monthly_issue",
            "at most 14 digits before the point",
        ),
        (
            "formosa-air.toml",
            'price = "600"',
            'price = "1000000000000000"',
            "rewards[0].price",
            "at most 15 digits before the point",
        ),
        ("coalition.toml", 'fee_fixed = "0"', 'fee_fixed = "0.00001"', "pricing.fee_fixed", "4 after it"),
        ("coalition.toml", 'fee_percent = "2"', 'fee_percent = "2.00001"', "pricing.fee_percent", "4 after it"),
        (
            "happy-card.toml",
            'point_value = "0.25"',
            'point_value = "1000000000000"',
            "point_value",
            "at most 12 digits before the point",
        ),
    ],
)
def test_a_number_beyond_what_the_api_and_its_column_take_is_refused_naming_file_and_key(
    partners: Path, file: str, old: str, new: str, field: str, rule: str
) -> None:
    rewrite(partners / file, old, new)
    error = refusal(partners)
    assert (error.path, error.field) == (str(partners / file), field)
    assert rule in error.reason, error.reason
