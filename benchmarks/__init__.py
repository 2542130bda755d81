"""Benchmarks: the satellite measured against the bare engines in the same run (issue 6)."""
