"""aiogram wiring: bot, dispatcher, middlewares, keyboards and message texts."""
