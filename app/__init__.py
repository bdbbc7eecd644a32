"""The composition root: builds the process from settings. ``main`` → ``app`` → ``handlers`` → ``bot`` →
``services``, and only this package knows every layer."""
