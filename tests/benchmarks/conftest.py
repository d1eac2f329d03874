"""Quick-mode runs of the benchmarks share one tiny stand-in network."""

import shutil

import pytest
from absl import flags
from absl.testing import flagsaver

from benchmarks import common
from tests import tiny_files


def _stand_in_path(folder):
    with flagsaver.flagsaver(quick=True, cache_dir=str(folder)):
        flags.FLAGS.mark_as_parsed()
        return common.network_path()


def _train_stand_in(folder):
    with flagsaver.flagsaver(quick=True, cache_dir=str(folder)):
        flags.FLAGS.mark_as_parsed()
        common.reference()
    return _stand_in_path(folder)


@pytest.fixture(scope="session")
def quick_cache(tmp_path_factory):
    """A cache folder shared by the session's benchmark runs, holding the
    tiny stand-in network, trained once on disk for every worker
    (tests/tiny_files.py: `shared`)."""
    folder = tmp_path_factory.mktemp("benchmark-cache")
    trained = tiny_files.shared(
        "benchmark_stand_in", _train_stand_in, depends=[common.__file__]
    )
    shutil.copyfile(trained, _stand_in_path(folder))
    return str(folder)


@pytest.fixture
def quick_flags(quick_cache, tmp_path):
    """Flag values for a quick run writing into this test's own folder."""
    return {"quick": True, "cache_dir": quick_cache, "results_dir": str(tmp_path)}
