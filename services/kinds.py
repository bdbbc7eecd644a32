"""The one table of how each kind of finding is named, shared by the terminal report, the console, e-mail and
Telegram, so a new kind is described in one place."""

from __future__ import annotations

from dataclasses import dataclass

from services.model import FindingKind


@dataclass(frozen=True, slots=True)
class KindLabels:
    title: str  # upper case, for the terminal report: ORPHAN
    noun: str  # one: orphan
    plural: str  # several: orphans
    short: str  # in a subject or a list: Orphan
    headline: str  # what it means, one line
    emoji: str
    alert: str  # an alert's title: Orphan position
    chat: str = ""  # in a chat's counts, when shorter than ``noun``: size mismatch
    chat_plural: str = ""
    todo: str = ""  # what an operator can do about it, one line
    column: str = ""  # in a table's KIND column: a word or two

    @property
    def column_word(self) -> str:
        return self.column or self.noun

    @property
    def chat_noun(self) -> str:
        return self.chat or self.noun


KINDS: dict[FindingKind, KindLabels] = {
    FindingKind.ORPHAN: KindLabels(
        "ORPHAN",
        "orphan",
        "orphans",
        "Orphan",
        "open on the exchange, not tracked in the DB",
        "🚨",
        "Orphan position",
        todo="Adopt it into the DB, or close it on the exchange.",
    ),
    FindingKind.GHOST: KindLabels(
        "GHOST",
        "ghost",
        "ghosts",
        "Ghost",
        "active in the DB, not on the exchange",
        "👻",
        "Ghost position",
        todo="Mark it closed once you know it is gone.",
    ),
    FindingKind.QUANTITY_MISMATCH: KindLabels(
        "QUANTITY MISMATCH",
        "quantity mismatch",
        "quantity mismatches",
        "Size mismatch",
        "exchange and DB disagree on the size",
        "⚖️",
        "Quantity mismatch",
        "size mismatch",
        "size mismatches",
        column="size≠",
        todo="Set the DB size to the exchange's, or fix the position by hand.",
    ),
    FindingKind.UNKNOWN_SYMBOL: KindLabels(
        "UNKNOWN SYMBOL",
        "unknown symbol",
        "unknown symbols",
        "Unknown symbol",
        "a DB row whose symbol is no market of its venue: it cannot be compared",
        "❔",
        "Unknown symbol",
        column="symbol?",
        todo="Map the symbol in positions.symbols.",
    ),
    FindingKind.UNPROTECTED: KindLabels(
        "UNPROTECTED",
        "unprotected position",
        "unprotected positions",
        "Unprotected",
        "tracked, but no stop-loss covers its whole size",
        "🛡️",
        "Unprotected position",
        column="no-stop",
        todo="Place a stop-loss on the exchange.",
    ),
    FindingKind.STRAY_ORDER: KindLabels(
        "STRAY ORDER",
        "stray order",
        "stray orders",
        "Stray order",
        "a resting stop or take-profit with no position to close: it can open one when it triggers",
        "🧹",
        "Stray order",
        column="stray",
        todo="Cancel it unless something should open there.",
    ),
}


def labels(kind: FindingKind) -> KindLabels:
    return KINDS[kind]


def count_text(kind: FindingKind, n: int, *, chat: bool = False) -> str:
    """``3 orphans``, ``1 quantity mismatch`` (``1 size mismatch`` in a chat)."""
    names = KINDS[kind]
    if chat and names.chat:
        return f"{n} {names.chat if n == 1 else names.chat_plural}"
    return f"{n} {names.noun if n == 1 else names.plural}"


SYMBOL_MAPPING_HINT = (
    "map the trading bot's symbols to the venue's with positions.symbols (README: Connecting to a trading bot's "
    "database)"
)


def unknown_symbol_text(row_ids: list[str] | tuple[str, ...], symbol: str, exchange: str) -> str:
    """``DB row #17 symbol 'BTC-USDT' is no market of binanceusdm``."""
    rows = ", ".join(f"#{pid}" for pid in row_ids)
    noun = "row" if len(row_ids) == 1 else "rows"
    return f"DB {noun} {rows} symbol {symbol!r} is no market of {exchange}"
