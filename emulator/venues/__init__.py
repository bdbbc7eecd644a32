"""The emulated venues, one module each; adding a venue means adding its module and one line here."""

from emulator.venues.base import Route, VenueApi, VenueError
from emulator.venues.binance import BinanceApi
from emulator.venues.bybit import BybitApi

VENUE_APIS: dict[str, type[VenueApi]] = {api.name: api for api in (BinanceApi, BybitApi)}

__all__ = ["VENUE_APIS", "BinanceApi", "BybitApi", "Route", "VenueApi", "VenueError"]
