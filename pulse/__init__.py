"""Shared plumbing for Pulse: settings, naming, engine clients, embedded engines, logging, time.

Every package may import it; it imports no other Pulse package (docs/architecture.md). The
command line and the local stack live one layer up, in ``pulsectl``.
"""
