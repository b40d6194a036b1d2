"""The storage layer: what is stored where, shared by every component that reads or writes it.

Index templates and idempotent bootstrap (``templates``), where a raw event goes and which
generation serves a day (``targets``, ``registry``), per-day arrival bounds (``arrivals``),
which alias members can hold a time range (``served``), the rollup document schema
(``rollup_schema``) and the reprocess bookkeeping index (``reprocess_index``). It imports only
the plumbing (``pulse``); the components import it instead of each other (docs/architecture.md).
"""
