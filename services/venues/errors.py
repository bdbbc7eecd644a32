"""Typed venue failures: callers decide by class (fatal at start-up, retry later, settle by re-read), never by
matching message text. Every ``reason`` is one line, free of secrets, fit to show an operator."""

from __future__ import annotations

from collections.abc import Iterable

import ccxt.async_support as ccxt

from services.redaction import redact


class VenueError(Exception):
    """The account could not be read or changed this time; ``reason`` says why in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AuthFailed(VenueError):
    """The venue rejected the keys or their permissions: retrying will not help, a human must act."""


class RateLimited(VenueError):
    """The venue asked us to slow down; the request was not processed."""


class Unavailable(VenueError):
    """The venue did not answer in time or answered with a server error."""


class BadAnswer(VenueError):
    """The venue answered something reconbot cannot trust: empty, unparseable, or rows that contradict
    themselves. Never read as "no positions"."""


class Rejected(VenueError):
    """The venue understood the request and refused it (an invalid order, an unknown symbol)."""


class AnswerLost(VenueError):
    """A change was sent but its answer never came back: it may or may not have been applied, so only a
    re-read can tell."""


def _detail(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]


def from_ccxt(exc: BaseException, timeout_s: float | None = None, secrets: Iterable[str] = ()) -> VenueError:
    """Name a ccxt failure the way an operator thinks of it, as the matching typed error."""
    detail = _detail(exc)
    error: VenueError
    if isinstance(exc, VenueError):
        error = exc
    elif isinstance(exc, ccxt.AuthenticationError):
        error = AuthFailed(f"authentication failed (check the API key and secret): {detail}")
    elif isinstance(exc, ccxt.PermissionDenied):
        error = AuthFailed(f"permission denied (the API key lacks a permission): {detail}")
    elif isinstance(exc, ccxt.AccountSuspended):
        error = AuthFailed(f"account suspended: {detail}")
    elif isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        error = RateLimited(f"rate limited: {detail}")
    elif isinstance(exc, ccxt.RequestTimeout):
        error = Unavailable(f"timed out after {timeout_s:g}s" if timeout_s else "timed out")
    elif isinstance(exc, ccxt.BadResponse | ccxt.NullResponse):
        error = BadAnswer(f"bad response: {detail}")
    elif isinstance(exc, ccxt.OnMaintenance):
        error = Unavailable(f"exchange under maintenance: {detail}")
    elif isinstance(exc, ccxt.ExchangeNotAvailable):
        error = Unavailable(f"exchange not available: {detail}")
    elif isinstance(exc, ccxt.NetworkError):
        error = Unavailable(f"network error: {detail}")
    elif isinstance(exc, ccxt.OperationFailed):
        error = Unavailable(f"exchange failed to answer: {detail}")
    elif isinstance(exc, ccxt.InvalidOrder | ccxt.BadSymbol | ccxt.BadRequest | ccxt.InsufficientFunds):
        error = Rejected(f"refused by the exchange: {detail}")
    elif isinstance(exc, ccxt.ExchangeError):
        error = Unavailable(f"exchange error: {detail}")
    else:
        error = BadAnswer(f"unexpected {type(exc).__name__}: {detail}")
    secrets = tuple(secrets)
    if secrets:
        error.reason = redact(error.reason, secrets)
        error.args = (error.reason,)
    return error


def order_error(exc: BaseException, timeout_s: float | None = None, secrets: Iterable[str] = ()) -> VenueError:
    """Like ``from_ccxt``, for a request that changes something: a lost answer is not a refusal.

    A timeout, a dropped connection or a server error after sending (ccxt's ``OperationFailed`` family, which
    Binance's "unable to process your request" -1001 joins) means the venue may have applied the order, so it
    becomes ``AnswerLost``; a rate limit means it was not processed, a rejection that it was refused."""
    error = from_ccxt(exc, timeout_s, secrets)
    if isinstance(exc, ccxt.OperationFailed) and not isinstance(exc, ccxt.DDoSProtection):
        return AnswerLost(f"the exchange's answer was lost ({error.reason})")
    return error
