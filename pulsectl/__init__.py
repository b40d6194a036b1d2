"""The top of Pulse: the ``pulse`` command line and ``pulse up`` (the supervised local stack).

It imports every component to register their commands; nothing imports it (docs/architecture.md).
"""
