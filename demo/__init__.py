"""The demo: reconbot's real pipeline against simulated exchanges and a seeded embedded database."""
