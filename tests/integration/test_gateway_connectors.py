"""The gateway owns one connector registry: pointed at sandboxes, closed with the app."""

from __future__ import annotations

from exchange.app import create_app
from exchange.connectors.connector import ContractConnector
from exchange.serving import serving
from exchange.settings import Settings
from exchange.testing.databases import SqliteDatabases
from exchange.testing.sandboxes import SandboxFleet


async def test_the_gateway_reaches_sandboxes_and_closes_its_partner_clients(
    sandboxes: SandboxFleet, sqlite_databases: SqliteDatabases
) -> None:
    (wallet,) = await sandboxes.start("wallet-pay")
    app = create_app(Settings(database_url=sqlite_databases.create()), partner_base_urls=sandboxes.base_urls)
    async with serving(app):
        connector = app.state.services.connectors.connector(
            "wallet-pay", wallet.program.connector.model_dump(mode="json")
        )
        assert (await connector.account("alice")).balance == 120_000
    assert isinstance(connector, ContractConnector) and connector.client.is_closed


async def test_the_admin_api_adds_members_and_reports_fault_knobs(sandboxes: SandboxFleet) -> None:
    (wallet,) = await sandboxes.start("wallet-pay")
    member = await wallet.admin.add_member("erin", balance=50, tier="Premium")
    assert (member["balance"], member["tier"]) == (50, "Premium")
    members = await wallet.admin.members()
    assert members["total_opening_points"] == 120_000 + 25_000 + 3_000 + 50
    await wallet.admin.set_faults(latency_ms=5, seed=3)
    assert (await wallet.admin.faults()).latency_ms == 5
