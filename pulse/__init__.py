"""Shared plumbing for Pulse: settings, engine clients, naming, the embedded stack and the CLI."""
