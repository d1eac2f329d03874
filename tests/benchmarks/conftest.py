"""Quick-mode runs of the benchmarks share one tiny stand-in network."""

import pytest


@pytest.fixture(scope="session")
def quick_cache(tmp_path_factory):
    """A cache folder shared by the session, so the tiny network trains once."""
    return str(tmp_path_factory.mktemp("benchmark-cache"))


@pytest.fixture
def quick_flags(quick_cache, tmp_path):
    """Flag values for a quick run writing into this test's own folder."""
    return {"quick": True, "cache_dir": quick_cache, "results_dir": str(tmp_path)}
