"""Loopback stand-ins for the outside world: the exchanges' REST APIs and the Telegram Bot API."""
