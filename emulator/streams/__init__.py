"""Private WebSocket streams of the exchange emulator (Binance USDⓈ-M user data stream, Bybit v5 private),
driven by the accounts' change notifications; see ``emulator.exchange`` for paths, messages and faults."""

from emulator.streams.hub import StreamHub

__all__ = ["StreamHub"]
