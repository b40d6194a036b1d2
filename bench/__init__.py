"""End-to-end benchmarks (freshness, consumer lag, CPU per component) and the capacity model."""
