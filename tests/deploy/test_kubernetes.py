"""The Kubernetes manifests (deploy/k8s) tell the truth: every rendered object is valid for the
stated Kubernetes versions, every command and setting is real, the probes answer on a real
gateway, no secret is written down, and the month close closes the month that ended."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import httpx
import kubernetes_validate
import pytest
import uvicorn
from kubernetes_validate.utils import all_versions
from starlette.types import Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from exchange.app import create_app
from exchange.cli import main
from exchange.db.database import Database
from exchange.ledger.periods import SettlementCalendar
from exchange.programs.declarations import read_partners_directory
from exchange.serving import free_port, serving
from exchange.settings import Settings
from exchange.testing.databases import SqliteDatabases
from tests.conftest import REPO_ROOT
from tests.deploy.kustomize import (
    Manifest,
    containers,
    environment,
    named,
    of_kind,
    pod_templates,
    render,
)
from tests.test_repository import cli_problem

K8S = REPO_ROOT / "deploy" / "k8s"
README = (K8S / "README.md").read_text()
#: The oldest Kubernetes the manifests need (CronJob time zones, the PodDisruptionBudget's
#: unhealthy-pod policy, preStop sleep) and the newest whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.31", "1.37")
ENVIRONMENTS = ("dev", "prod")
#: The Secrets an operator creates (deploy/k8s/README.md), with the keys the manifests read;
#: the partners' Secret holds one key per program, named by its declarations.
SECRETS = {"exchange-database": {"url"}, "exchange-key-encryption": {"secret"}, "exchange-partner-secrets": None}
#: Settings whose values are secrets: never in a manifest, only referenced.
SECRET_SETTINGS = {"EXCHANGE_DATABASE_URL", "EXCHANGE_KEY_ENCRYPTION_SECRET"}
#: Variables the manifests set that are not the exchange's settings, and what reads them.
OTHER_VARIABLES = {"FORWARDED_ALLOW_IPS": "uvicorn: the peers whose X-Forwarded-* headers are trusted"}
#: Kinds the migrate step applies: the Job and what it reads, nothing long-running.
MIGRATION_KINDS = {"ServiceAccount", "ConfigMap", "NetworkPolicy", "Job"}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    """Every kustomization an operator applies, rendered: overlays/<env> and migrate/<env>."""
    return {
        f"{kind}/{environment}": render(K8S / kind / environment)
        for kind in ("overlays", "migrate")
        for environment in ENVIRONMENTS
    }


@pytest.fixture(scope="module")
def overlays(rendered: dict[str, list[Manifest]]) -> dict[str, list[Manifest]]:
    return {environment: rendered[f"overlays/{environment}"] for environment in ENVIRONMENTS}


def only_container(template: Manifest, name: str) -> Manifest:
    found = [container for container in containers(template) if container["name"] == name]
    assert len(found) == 1, name
    return found[0]


def all_containers(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for owner, template in pod_templates(manifests):
        for container in containers(template):
            yield f"{owner}:{container['name']}", container


def only_gateway_container(manifests: list[Manifest]) -> Manifest:
    return only_container(named(manifests, "Deployment", "exchange-gateway")["spec"]["template"], "gateway")


def image_user_id() -> int:
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    found = re.search(r"useradd\b.*--uid\s+(\d+)\s+exchange\b", dockerfile)
    assert found, "deploy/Dockerfile creates no `exchange` user with a fixed uid"
    return int(found.group(1))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kustomization", [f"{kind}/{env}" for kind in ("overlays", "migrate") for env in ENVIRONMENTS])
def test_every_rendered_object_is_valid_for_the_stated_kubernetes_versions(
    rendered: dict[str, list[Manifest]], kustomization: str, version: str
) -> None:
    assert f"{version}.0" in all_versions(), f"kubernetes-validate bundles no schemas for {version}"
    assert f"Kubernetes {version}" in README, f"deploy/k8s/README.md does not state {version}"
    for manifest in rendered[kustomization]:
        # Strict: an unknown or misplaced field is an error. A kind without a schema raises too.
        kubernetes_validate.validate(manifest, version, strict=True)


def test_a_misplaced_field_fails_validation(overlays: dict[str, list[Manifest]]) -> None:
    deployment = named(overlays["prod"], "Deployment", "exchange-gateway")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_every_pod_runs_as_the_image_user_on_a_read_only_root_with_nothing_to_escalate(
    overlays: dict[str, list[Manifest]],
) -> None:
    uid = image_user_id()
    for manifests in overlays.values():
        templates = dict(pod_templates(manifests))
        assert set(templates) == {
            "Deployment/exchange-gateway",
            "Job/exchange-migrate",
            "CronJob/exchange-settle-close",
        }
        for owner, template in templates.items():
            spec = template["spec"]
            security = spec["securityContext"]
            assert security["runAsNonRoot"] is True, owner
            # The image's own user: `getpass.getuser()` names who closed a period, and a uid
            # without a passwd entry would make the command fail.
            assert security["runAsUser"] == uid, owner
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, owner
            assert spec["automountServiceAccountToken"] is False, owner
            assert spec["enableServiceLinks"] is False, owner
            assert (
                named(manifests, "ServiceAccount", spec["serviceAccountName"])["automountServiceAccountToken"] is False
            )
            # The volume types the "restricted" Pod Security Standard allows, and only those.
            for volume in spec.get("volumes", []):
                assert set(volume) - {"name"} <= {"configMap", "secret", "emptyDir"}, (owner, volume)
            for container in containers(template):
                where = f"{owner}:{container['name']}"
                context = container["securityContext"]
                assert context["readOnlyRootFilesystem"] is True, where
                assert context["allowPrivilegeEscalation"] is False, where
                assert context["capabilities"] == {"drop": ["ALL"]}, where
                assert not context.get("privileged", False), where
                assert context.get("runAsUser", uid) == uid and context.get("runAsNonRoot", True) is True, where
                resources = container["resources"]
                for bound in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(resources[bound]), (where, bound)


def test_the_gateway_writes_only_to_its_temporary_directory(overlays: dict[str, list[Manifest]]) -> None:
    for manifests in overlays.values():
        template = named(manifests, "Deployment", "exchange-gateway")["spec"]["template"]
        volumes = {volume["name"]: volume for volume in template["spec"]["volumes"]}
        writable = [
            mount
            for mount in only_container(template, "gateway")["volumeMounts"]
            if "emptyDir" in volumes[mount["name"]]
        ]
        assert [mount["mountPath"] for mount in writable] == ["/tmp"]
        assert "sizeLimit" in volumes[writable[0]["name"]]["emptyDir"]


def test_every_container_runs_a_real_exchange_command_line(overlays: dict[str, list[Manifest]]) -> None:
    for manifests in overlays.values():
        commands = {}
        for where, container in all_containers(manifests):
            assert container["command"] == ["exchange"], where
            problem = cli_problem(container["args"])
            assert problem is None, f"{where}: exchange {shlex.join(container['args'])}: {problem}"
            commands[where] = container["args"]
        # The migrations Job migrates before it loads: init containers run first, in order.
        assert commands == {
            "Deployment/exchange-gateway:gateway": commands["Deployment/exchange-gateway:gateway"],
            "Job/exchange-migrate:db-upgrade": ["db", "upgrade"],
            "Job/exchange-migrate:partners-load": ["partners", "load"],
            "CronJob/exchange-settle-close:settle-close": ["settle", "close", "--previous"],
        }


def test_a_command_line_that_is_not_the_exchanges_is_reported() -> None:
    assert "No such option '--hots'" in str(cli_problem(["serve", "--hots", "0.0.0.0"]))
    assert "give PERIOD or --previous" in str(cli_problem(["settle", "close"]))


def test_the_gateway_listens_on_all_addresses_at_the_port_its_probes_and_service_use(
    overlays: dict[str, list[Manifest]],
) -> None:
    for manifests in overlays.values():
        container = only_gateway_container(manifests)
        serve = main.get_command(click.Context(main), "serve")
        assert container["args"][0] == "serve" and serve is not None
        options = serve.make_context("serve", list(container["args"][1:])).params
        assert options["host"] == "0.0.0.0"
        assert options["workers"] >= 1
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {"http": options["port"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == "http", probe
        service = named(manifests, "Service", "exchange-gateway")
        assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]


def test_liveness_asks_healthz_and_readiness_readyz(overlays: dict[str, list[Manifest]]) -> None:
    for manifests in overlays.values():
        container = only_gateway_container(manifests)
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


async def test_every_probe_answers_200_on_a_real_gateway(
    overlays: dict[str, list[Manifest]], sqlite_databases: SqliteDatabases
) -> None:
    paths = {
        only_gateway_container(manifests)[probe]["httpGet"]["path"]
        for manifests in overlays.values()
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    settings = Settings(database_url=sqlite_databases.create(), port=free_port())
    async with serving(create_app(settings), port=settings.port) as server, httpx.AsyncClient() as http:
        for path in sorted(paths):
            answer = await http.get(server.url + path)
            assert answer.status_code == 200, (path, answer.status_code)


async def test_prometheus_scrapes_each_gateway_pod_where_its_metrics_are_served(
    overlays: dict[str, list[Manifest]], sqlite_databases: SqliteDatabases
) -> None:
    scraped = set()
    for manifests in overlays.values():
        template = named(manifests, "Deployment", "exchange-gateway")["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        ports = {port["name"]: port["containerPort"] for port in only_gateway_container(manifests)["ports"]}
        assert annotations["prometheus.io/port"] == str(ports["http"])
        scraped.add(annotations["prometheus.io/path"])
        admitted = [
            rule
            for rule in named(manifests, "NetworkPolicy", "exchange")["spec"]["ingress"]
            if rule["from"] == [{"namespaceSelector": {"matchLabels": {"coalition-exchange/metrics": "allowed"}}}]
        ]
        assert [rule["ports"] for rule in admitted] == [[{"protocol": "TCP", "port": "http"}]]
    assert "coalition-exchange/metrics=allowed" in README
    settings = Settings(database_url=sqlite_databases.create(), port=free_port())
    async with serving(create_app(settings), port=settings.port) as server, httpx.AsyncClient() as http:
        for path in scraped:
            answer = await http.get(server.url + path)
            assert answer.status_code == 200 and "exchange_request_duration_seconds" in answer.text, path


def test_every_variable_the_manifests_set_is_read_by_the_exchange_or_uvicorn(
    overlays: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for manifests in overlays.values():
        for where, container in all_containers(manifests):
            for name in environment(manifests, container):
                if name.startswith("EXCHANGE_"):
                    assert name.removeprefix("EXCHANGE_").lower() in Settings.model_fields, (where, name)
                else:
                    assert name in OTHER_VARIABLES, (where, name)
    # The gateway's FORWARDED_ALLOW_IPS reaches uvicorn, which `exchange serve` runs.
    value = environment(overlays["prod"], only_gateway_container(overlays["prod"]))["FORWARDED_ALLOW_IPS"]
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", value)
    assert uvicorn.Config(app="exchange.app:create_app_from_environment").forwarded_allow_ips == value


def test_no_secret_is_written_in_the_manifests_only_referenced(rendered: dict[str, list[Manifest]]) -> None:
    kustomizations = sorted(K8S.rglob("kustomization.yaml"))
    assert kustomizations and not any("secretGenerator" in path.read_text() for path in kustomizations)
    for manifests in rendered.values():
        assert not of_kind(manifests, "Secret")
        for config_map in of_kind(manifests, "ConfigMap"):
            assert not set(config_map["data"]) & SECRET_SETTINGS, config_map["metadata"]["name"]
        for where, container in all_containers(manifests):
            assert all(set(source) == {"configMapRef"} for source in container.get("envFrom", [])), where
            values = environment(manifests, container)
            for name in SECRET_SETTINGS & set(values):
                assert set(values[name]) == {"secretKeyRef"}, (where, name)
            for value in values.values():
                if isinstance(value, dict) and "secretKeyRef" in value:
                    reference = value["secretKeyRef"]
                    assert reference["key"] in (SECRETS[reference["name"]] or ()), (where, reference)
        for owner, template in pod_templates(manifests):
            for volume in template["spec"].get("volumes", []):
                if "secret" in volume:
                    assert volume["secret"]["secretName"] in SECRETS, (owner, volume)


def test_the_readme_has_the_operator_create_every_secret_the_manifests_read(
    overlays: dict[str, list[Manifest]],
) -> None:
    commands = {
        match.group(1): re.findall(r"--from-(?:literal|file)=([\w-]+)=", match.group(2))
        for match in re.finditer(r"create secret generic ([\w-]+)((?:\\\n|[^\n])*)", README)
    }
    assert set(commands) == set(SECRETS)
    for name, keys in SECRETS.items():
        assert set(commands[name]) == (keys or set(commands[name])), name
    # The partners' example Secret has a key for every program the declarations name.
    job = named(overlays["prod"], "Job", "exchange-migrate")["spec"]["template"]["spec"]
    (mounted,) = (volume["configMap"]["name"] for volume in job["volumes"] if "configMap" in volume)
    declarations = named(overlays["prod"], "ConfigMap", mounted)["data"]
    programs = {name.removesuffix(".toml") for name in declarations} - {"coalition"}
    assert set(commands["exchange-partner-secrets"]) == programs


def test_each_environment_passes_the_production_checks_given_its_secrets(overlays: dict[str, list[Manifest]]) -> None:
    issuers = set()
    for manifests in overlays.values():
        values = environment(manifests, only_gateway_container(manifests))
        given = {
            "EXCHANGE_DATABASE_URL": "postgresql://exchange@db/exchange",
            "EXCHANGE_KEY_ENCRYPTION_SECRET": "s" * 32,
        }
        settings = Settings(
            **{
                name.removeprefix("EXCHANGE_").lower(): given.get(name, value)
                for name, value in values.items()
                if name.startswith("EXCHANGE_")
            }
        )
        assert settings.environment == "production"
        settings.check_for_production()
        issuers.add(settings.issuer)
    assert len(issuers) == len(ENVIRONMENTS), "each environment has its own public URL"


def test_each_environment_runs_one_released_image_everywhere(overlays: dict[str, list[Manifest]]) -> None:
    tags = set()
    for manifests in overlays.values():
        images = {container["image"] for _, container in all_containers(manifests)}
        assert len(images) == 1, images
        (image,) = images
        name, _, tag = image.rpartition(":")
        assert "/" in name and tag and tag != "latest", image
        tags.add(tag)
    assert len(tags) == len(ENVIRONMENTS)


def test_the_declarations_load_as_production_loads_them_with_the_partner_secret_mounted(
    overlays: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    for environment_name, manifests in overlays.items():
        job = named(manifests, "Job", "exchange-migrate")["spec"]["template"]
        loader = only_container(job, "partners-load")
        volumes = {volume["name"]: volume for volume in job["spec"]["volumes"]}
        mounts = {mount["name"]: mount["mountPath"] for mount in loader["volumeMounts"]}
        (declarations_volume,) = (name for name in mounts if "configMap" in volumes[name])
        (secrets_volume,) = (name for name in mounts if "secret" in volumes[name])
        assert volumes[secrets_volume]["secret"]["secretName"] == "exchange-partner-secrets"
        declarations = named(manifests, "ConfigMap", volumes[declarations_volume]["configMap"]["name"])
        assert environment(manifests, loader)["EXCHANGE_PARTNERS_DIR"] == mounts[declarations_volume]
        secrets_at = mounts[secrets_volume]
        # The gateway reads the same files, at its first call to each partner.
        gateway_mounts = {
            mount["name"]: mount["mountPath"] for mount in only_gateway_container(manifests)["volumeMounts"]
        }
        assert gateway_mounts[secrets_volume] == secrets_at

        # Load them as `exchange partners load` does in production, the Secret mounted elsewhere.
        directory, mounted = tmp_path / environment_name / "partners", tmp_path / environment_name / "secrets"
        directory.mkdir(parents=True)
        mounted.mkdir()
        for file_name, text in declarations["data"].items():
            for key in re.findall(rf'^client_secret_file = "{re.escape(secrets_at)}/([^"/]+)"$', text, re.MULTILINE):
                (mounted / key).write_text(f"the {key} secret\n")
            (directory / file_name).write_text(text.replace(f'"{secrets_at}/', f'"{mounted}/'))
        loaded = read_partners_directory(directory, allow_inline_secrets=False)
        assert len(loaded.programs) >= 1
        assert {program.id for program in loaded.programs} == {path.name for path in mounted.iterdir()}


def test_the_month_close_closes_the_month_that_ended_in_the_settlement_time_zone(
    overlays: dict[str, list[Manifest]],
) -> None:
    for manifests in overlays.values():
        cron = named(manifests, "CronJob", "exchange-settle-close")["spec"]
        template = cron["jobTemplate"]["spec"]["template"]
        closer = only_container(template, "settle-close")
        assert closer["args"] == ["settle", "close", "--previous"]
        settings = Settings(
            **{
                name.removeprefix("EXCHANGE_").lower(): value
                for name, value in environment(manifests, closer).items()
                if name.startswith("EXCHANGE_") and isinstance(value, str)
            }
        )
        # The schedule is read in the settlement calendar's own time zone.
        assert cron["timeZone"] == settings.settlement_timezone
        assert cron["concurrencyPolicy"] == "Forbid"
        fields = cron["schedule"].split()
        assert len(fields) == 5 and fields[3:] == ["*", "*"] and all(field.isdigit() for field in fields[:3])
        minute, hour, day = (int(field) for field in fields[:3])
        zone = ZoneInfo(cron["timeZone"])
        calendar = SettlementCalendar(zone, settings.settlement_period_months)
        for month in range(24):
            fires = datetime(2026 + month // 12, month % 12 + 1, day, hour, minute, tzinfo=zone)
            closes = calendar.latest_over(fires)
            before = fires.replace(day=1) - timedelta(days=1)
            assert closes == calendar.period_of(before), (fires, closes)
            # Late enough that a pod's clock a little behind still reads the new month.
            assert fires - calendar.ends_at(closes) >= timedelta(minutes=15), fires


def test_the_migrate_step_applies_its_environments_job_and_nothing_long_running(
    rendered: dict[str, list[Manifest]],
) -> None:
    for environment_name in ENVIRONMENTS:
        migrate, overlay = rendered[f"migrate/{environment_name}"], rendered[f"overlays/{environment_name}"]
        assert {manifest["kind"] for manifest in migrate} == MIGRATION_KINDS
        # The same objects as the overlay renders, so that applying it afterwards changes none.
        for manifest in migrate:
            assert manifest in overlay, (manifest["kind"], manifest["metadata"]["name"])


def test_every_reference_between_the_objects_resolves(overlays: dict[str, list[Manifest]]) -> None:
    for manifests in overlays.values():
        deployment = named(manifests, "Deployment", "exchange-gateway")
        gateway_labels = deployment["spec"]["template"]["metadata"]["labels"]

        def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
            return selector.items() <= labels.items()

        assert selects(deployment["spec"]["selector"]["matchLabels"], gateway_labels)
        assert selects(named(manifests, "Service", "exchange-gateway")["spec"]["selector"], gateway_labels)
        budget = named(manifests, "PodDisruptionBudget", "exchange-gateway")["spec"]["selector"]["matchLabels"]
        target = named(manifests, "HorizontalPodAutoscaler", "exchange-gateway")["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", "exchange-gateway")
        policy = named(manifests, "NetworkPolicy", "exchange")["spec"]["podSelector"]["matchLabels"]
        for owner, template in pod_templates(manifests):
            labels = template["metadata"]["labels"]
            assert selects(policy, labels), owner
            assert selects(budget, labels) == (owner == "Deployment/exchange-gateway"), owner
            spec = template["spec"]
            named(manifests, "ServiceAccount", spec["serviceAccountName"])
            volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
            for volume in volumes.values():
                if "configMap" in volume:
                    named(manifests, "ConfigMap", volume["configMap"]["name"])
            for container in containers(template):
                environment(manifests, container)  # every envFrom ConfigMap exists
                for mount in container.get("volumeMounts", []):
                    assert mount["name"] in volumes, (owner, mount)


async def test_the_gateway_counts_callers_by_the_address_its_proxy_saw_not_one_they_wrote(
    overlays: dict[str, list[Manifest]],
) -> None:
    """Behind the ingress (a private pod address), the caller is the address the proxy appended
    to X-Forwarded-For; an entry the caller wrote before it is not believed."""
    trusted = environment(overlays["prod"], only_gateway_container(overlays["prod"]))["FORWARDED_ALLOW_IPS"]
    seen: list[tuple[str, int] | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["client"])

    gateway = ProxyHeadersMiddleware(app, trusted_hosts=trusted)
    for peer, forwarded in (
        ("10.42.0.7", "198.51.100.9, 203.0.113.5"),  # a spoofed entry, then what the ingress saw
        ("10.42.0.7", "203.0.113.5, 10.42.3.1"),  # through two proxies of the cluster
        ("203.0.113.99", "198.51.100.9"),  # not through the ingress: the header is ignored
    ):
        scope = {"type": "http", "client": (peer, 40000), "headers": [(b"x-forwarded-for", forwarded.encode())]}
        await gateway(scope, None, None)  # type: ignore[arg-type]
    assert [client[0] if client else None for client in seen] == ["203.0.113.5", "203.0.113.5", "203.0.113.99"]


def test_the_connections_the_manifests_allow_for_are_those_the_gateway_may_open(
    overlays: dict[str, list[Manifest]],
) -> None:
    """Each worker keeps three pools on PostgreSQL (units of work, statements that commit on their
    own, and reads straight through psycopg): the manifests and their README once allowed for one."""
    per_worker = Database.from_url("postgresql://exchange@db.internal/exchange").most_connections
    for env, manifests in overlays.items():
        pods = named(manifests, "HorizontalPodAutoscaler", "exchange-gateway")["spec"]["maxReplicas"]
        args = only_gateway_container(manifests)["args"]
        workers = int(args[args.index("--workers") + 1])
        stated = (K8S / "overlays" / env / "autoscaling.yaml").read_text()
        assert (
            f"# At most {pods} pods × {workers} workers × {per_worker} connections = "
            f"{pods * workers * per_worker} PostgreSQL connections" in stated
        ), env
    assert f"up to {per_worker} per worker" in README
    assert f"maxReplicas × workers × {per_worker} must fit" in (K8S / "base" / "deployment.yaml").read_text()
