"""`python -m indexer`: the same as `pulse indexer` (one component, as Kubernetes runs it)."""

from indexer.cli import indexer_cmd

if __name__ == "__main__":
    indexer_cmd()
