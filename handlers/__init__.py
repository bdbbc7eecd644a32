"""aiogram routers, one module per concern."""
