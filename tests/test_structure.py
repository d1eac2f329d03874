"""tfee.read_structure: one walk of the graph per public call, handed down."""

import collections
import dataclasses

import numpy as np
import pytest

import tfee
import tfee.compress
import tfee.export
from tfee import _graph
from tfee import tf

# Every walk over a network's graph goes through these two: the forward walk
# in topological order, and the backward walk from one tensor.
_WALKERS = ("ordered_nodes", "ancestors")


@pytest.fixture
def walks(monkeypatch):
    """Counts calls of the graph walkers while a test runs."""
    counts = collections.Counter()
    for name in _WALKERS:
        walker = getattr(_graph, name)

        def counted(*args, walker=walker, name=name, **kwargs):
            counts[name] += 1
            return walker(*args, **kwargs)

        monkeypatch.setattr(_graph, name, counted)
    return counts


@pytest.fixture
def network(tiny_cnn):
    return tfee.attach_exits(tiny_cnn, ["block1_out"], with_confidence=True)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((32, 8, 8, 1), dtype="float32"), rng.integers(0, 3, 32)


def test_the_structure_holds_what_the_graph_says(network):
    structure = tfee.read_structure(network)
    assert [info.name for info in structure.exits] == ["exit_1", "exit_2"]
    assert [s.exit_name for s in structure.sections] == ["exit_1", "exit_2"]
    assert structure.num_classes == 3
    assert structure.learned == (True, False)
    assert structure.tensors[0].features is network.get_layer("block1_out").output
    assert structure.tensors[0].head is network.get_layer("exit_1_head")
    assert structure.tensors[1].head is None
    assert structure.exit_macs == tuple(
        e.cumulative_macs for e in tfee.cost.analyze(network).exits
    )
    assert sum(structure.layer_macs.values()) == tfee.cost.model_macs(network)
    assert [n.position for n in structure.nodes] == list(range(len(structure.nodes)))


def test_the_structure_is_frozen_and_not_stored_on_the_model(network):
    structure = tfee.read_structure(network)
    with pytest.raises(dataclasses.FrozenInstanceError):
        structure.exits = ()
    assert tfee.read_structure(network) is not structure
    assert not any(
        isinstance(value, tfee.Structure) for value in vars(network).values()
    )


def test_reading_a_model_without_exits_is_refused_by_name(tiny_cnn):
    with pytest.raises(ValueError, match=r"tfee.read_structure: `network` is not"):
        tfee.read_structure(tiny_cnn)


def test_stage_models_are_built_once_per_structure(network):
    structure = tfee.read_structure(network)
    first, again = tfee.stage_models(structure), tfee.stage_models(structure)
    assert all(a is b for a, b in zip(first, again))
    assert tfee.stage_models(network)[0] is not first[0]


def _public_calls(network, data, directory):
    images, labels = data
    outputs = tfee.collect_outputs(network, data)
    policy = tfee.calibrate(outputs, max_accuracy_drop=0.05)
    return {
        "tfee.read_structure": lambda: tfee.read_structure(network),
        "tfee.exits": lambda: tfee.exits(network),
        "tfee.sections": lambda: tfee.sections(network),
        "tfee.stage_models": lambda: tfee.stage_models(network),
        "tfee.cost.analyze": lambda: tfee.cost.analyze(network, sparse=True),
        "tfee.collect_outputs": lambda: tfee.collect_outputs(network, data),
        "tfee.calibrate": lambda: tfee.calibrate(network, data, max_accuracy_drop=0.05),
        "tfee.DynamicPredictor": lambda: tfee.DynamicPredictor(network, policy).predict(
            images
        ),
        "tfee.export.tflite float32": lambda: tfee.export.tflite(
            network, str(directory / "net.tflite"), policy=policy
        ),
        "tfee.export.tflite int8": lambda: tfee.export.tflite(
            network,
            str(directory / "net_int8.tflite"),
            quantize="int8",
            representative=images,
        ),
        "tfee.export.micro": lambda: tfee.export.micro(
            network, str(directory / "micro"), representative=images, policy=policy
        ),
        "tfee.compress.pruning_plan": lambda: tfee.compress.pruning_plan(
            network, 0.5, order="ordered", phase_steps=4, batch_norm_data=images
        ),
        "tfee.compress.cluster_weights": lambda: tfee.compress.cluster_weights(
            network, 4
        ),
        "tfee.compress.ClusteringPlan": lambda: tfee.compress.ClusteringPlan(
            network, 4
        ),
        "tfee.compress.sparsity_report": lambda: tfee.compress.sparsity_report(network),
    }


def test_every_public_call_walks_the_graph_once(network, data, tmp_path, walks):
    calls = _public_calls(network, data, tmp_path)
    counted = {}
    for name, call in calls.items():
        walks.clear()
        call()
        counted[name] = dict(walks)
    assert counted == {name: {"ordered_nodes": 1} for name in calls}


def test_a_structure_passed_on_is_not_read_again(network, walks):
    structure = tfee.read_structure(network)
    walks.clear()
    tfee.stage_models(structure)
    tfee.cost.analyze(structure)
    tfee.cost.analyze(structure, sparse=True)
    assert not walks


def test_one_pass_dependencies_equal_the_backward_walk_of_every_tensor(tiny_resnet):
    network = tfee.attach_exits(tiny_resnet, tfee.FlopsFractions([0.3, 0.6]))
    nodes = _graph.ordered_nodes(network)
    depends_on = _graph.dependencies(nodes)
    tensors = [t for node in nodes for t in tf.nest.flatten(node.node.outputs)]
    assert len(tensors) > 20
    for tensor in tensors:
        assert depends_on(tensor) == _graph.ancestors(tensor)


def test_a_policy_meets_a_network_through_its_structure_by_exits_and_classes(
    network, data
):
    from tfee.policy import compatibility

    policy = tfee.calibrate(tfee.collect_outputs(network, data), max_accuracy_drop=0.05)
    structure = tfee.read_structure(network)
    assert compatibility.check_policy_for(policy, structure, "api") is policy
    other = tfee.attach_exits(
        tfee.backbones.small_cnn(num_classes=4, input_shape=(8, 8, 1), widths=(4, 8)),
        ["block1_out"],
        with_confidence=True,
    )
    with pytest.raises(ValueError, match="api: "):
        compatibility.check_policy_for(policy, tfee.read_structure(other), "api")
