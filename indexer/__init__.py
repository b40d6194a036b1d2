"""The indexer: Kafka events.raw -> validate -> batch -> bulk into daily raw indices -> commit."""
