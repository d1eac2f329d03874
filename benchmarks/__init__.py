"""tfee's benchmarks on the reference setup (shared/BENCHMARK.md)."""
