"""Fits shared by several compression tests: each runs once per session."""

import pytest

import tfee.compress
from tests.compress import _tiny


@pytest.fixture(scope="session")
def global_pruning():
    """(input network, its weights before, pruned model): "together", global
    scope, 60% sparsity, one epoch, traced like a user's `fit`."""
    net = _tiny.network()
    before = net.get_weights()
    pruned = tfee.compress.prune(
        net, _tiny.dataset(), 0.6, scope="global", epochs=1, verbose=0
    )
    return net, before, pruned
