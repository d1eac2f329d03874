"""tfee.compress's namespace: no public function hides a module of the package."""

import pkgutil
import types

import tfee.compress
from tfee.compress import clustering
from tfee.compress import pruning


def test_no_public_name_of_tfee_compress_shadows_one_of_its_modules():
    modules = {info.name for info in pkgutil.iter_modules(tfee.compress.__path__)}
    shadowing = [
        name
        for name in tfee.compress.__all__
        if name in modules
        and not isinstance(getattr(tfee.compress, name), types.ModuleType)
    ]
    assert shadowing == []


def test_prune_and_cluster_come_from_the_pruning_and_clustering_modules():
    assert tfee.compress.prune is pruning.prune
    assert tfee.compress.cluster is clustering.cluster
