"""The seed's own five tests of its two monitor classes, rewritten to call their public methods
(``manual_scan`` / ``manual_reconcile``) and otherwise unchanged: the same fixtures (a Mock repository, exchange
managers whose ``fetch_positions`` returns ccxt-unified dicts) and the same assertions. A bot migrating from
the seed keeps its glue; these tests are the guarantee."""

from unittest.mock import AsyncMock, Mock

import pytest

from services.embedding import OrphanedPositionMonitor, PositionReconciliation


class TestPhase3Monitoring:
    @pytest.mark.asyncio
    async def test_orphaned_position_detection(self):
        repository = Mock()
        repository.get_active_positions = AsyncMock(return_value=[{"symbol": "BTCUSDT", "quantity": 1.0}])
        exchange_instance = Mock()
        exchange_instance.exchange = Mock()
        exchange_instance.exchange.fetch_positions = AsyncMock(
            return_value=[
                {
                    "symbol": "BTC/USDT:USDT",
                    "contracts": 1.0,
                    "side": "long",
                    "entryPrice": 50000.0,
                    "markPrice": 51000.0,
                    "unrealizedPnl": 1000.0,
                    "leverage": 1,
                },
                {
                    "symbol": "AVL/USDT:USDT",  # ORPHAN!
                    "contracts": 86.0,
                    "side": "long",
                    "entryPrice": 0.1358,
                    "markPrice": 0.1360,
                    "unrealized_pnl": 1.72,
                    "leverage": 1,
                },
            ]
        )
        exchange_managers = {"bybit": exchange_instance}
        monitor = OrphanedPositionMonitor(
            repository=repository, exchange_managers=exchange_managers, position_manager=None, alert_callback=None
        )

        orphans = (await monitor.manual_scan())["bybit"]

        assert len(orphans) == 1
        assert orphans[0]["symbol"] == "AVLUSDT"
        assert orphans[0]["contracts"] == 86.0

    @pytest.mark.asyncio
    async def test_no_orphans_when_all_tracked(self):
        repository = Mock()
        repository.get_active_positions = AsyncMock(
            return_value=[{"symbol": "BTCUSDT", "quantity": 1.0}, {"symbol": "ETHUSDT", "quantity": 10.0}]
        )
        exchange_instance = Mock()
        exchange_instance.exchange = Mock()
        exchange_instance.exchange.fetch_positions = AsyncMock(
            return_value=[
                {
                    "symbol": "BTC/USDT:USDT",
                    "contracts": 1.0,
                    "side": "long",
                    "entryPrice": 50000.0,
                    "markPrice": 51000.0,
                    "unrealizedPnl": 1000.0,
                    "leverage": 1,
                },
                {
                    "symbol": "ETH/USDT:USDT",
                    "contracts": 10.0,
                    "side": "long",
                    "entryPrice": 3000.0,
                    "markPrice": 3100.0,
                    "unrealizedPnl": 1000.0,
                    "leverage": 1,
                },
            ]
        )
        exchange_managers = {"bybit": exchange_instance}
        monitor = OrphanedPositionMonitor(
            repository=repository, exchange_managers=exchange_managers, position_manager=None, alert_callback=None
        )

        orphans = (await monitor.manual_scan())["bybit"]

        assert len(orphans) == 0

    @pytest.mark.asyncio
    async def test_reconciliation_missing_on_exchange(self):
        repository = Mock()
        repository.get_active_positions = AsyncMock(
            return_value=[{"id": 123, "symbol": "BTCUSDT", "quantity": 1.0, "side": "long"}]
        )
        repository.update_position = AsyncMock()
        exchange_instance = Mock()
        exchange_instance.exchange = Mock()
        exchange_instance.exchange.fetch_positions = AsyncMock(return_value=[])
        exchange_managers = {"bybit": exchange_instance}
        reconciliation = PositionReconciliation(
            repository=repository, exchange_managers=exchange_managers, position_manager=None, alert_callback=None
        )

        mismatches = (await reconciliation.manual_reconcile())["bybit"]

        assert len(mismatches) == 1
        assert mismatches[0]["type"] == "missing_on_exchange"
        assert mismatches[0]["symbol"] == "BTCUSDT"
        repository.update_position.assert_called_once()

    @pytest.mark.asyncio
    async def test_reconciliation_quantity_mismatch(self):
        repository = Mock()
        repository.get_active_positions = AsyncMock(
            return_value=[{"id": 123, "symbol": "BTCUSDT", "quantity": 1.0, "side": "long"}]
        )
        exchange_instance = Mock()
        exchange_instance.exchange = Mock()
        exchange_instance.exchange.fetch_positions = AsyncMock(
            return_value=[{"symbol": "BTC/USDT:USDT", "contracts": 0.5, "side": "long", "entryPrice": 50000.0}]
        )
        exchange_managers = {"bybit": exchange_instance}
        reconciliation = PositionReconciliation(
            repository=repository, exchange_managers=exchange_managers, position_manager=None, alert_callback=None
        )

        mismatches = (await reconciliation.manual_reconcile())["bybit"]

        assert len(mismatches) == 1
        assert mismatches[0]["type"] == "quantity_mismatch"
        assert mismatches[0]["db_quantity"] == 1.0
        assert mismatches[0]["exchange_quantity"] == 0.5

    @pytest.mark.asyncio
    async def test_reconciliation_no_mismatches(self):
        repository = Mock()
        repository.get_active_positions = AsyncMock(
            return_value=[{"id": 123, "symbol": "BTCUSDT", "quantity": 1.0, "side": "long"}]
        )
        exchange_instance = Mock()
        exchange_instance.exchange = Mock()
        exchange_instance.exchange.fetch_positions = AsyncMock(
            return_value=[{"symbol": "BTC/USDT:USDT", "contracts": 1.0, "side": "long", "entryPrice": 50000.0}]
        )
        exchange_managers = {"bybit": exchange_instance}
        reconciliation = PositionReconciliation(
            repository=repository, exchange_managers=exchange_managers, position_manager=None, alert_callback=None
        )

        mismatches = (await reconciliation.manual_reconcile())["bybit"]

        assert len(mismatches) == 0
