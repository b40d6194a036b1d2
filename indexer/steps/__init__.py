"""The indexing steps, arroyo-style: each a ``Step`` (submit / poll / join / close) that hands
its output to the next one. The live indexer (``indexer.steps.live``) and a reprocessing replay
(``reprocess.chain``) are two factories over these steps (docs/decisions/0225)."""
