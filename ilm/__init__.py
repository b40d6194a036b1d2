"""Index lifecycle: templates, ISM policies, and the curator-like manager for engines without ISM."""
