"""Index lifecycle: templates, ISM policies, and a curator-like manager for engines without ISM."""
