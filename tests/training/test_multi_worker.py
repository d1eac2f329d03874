"""Every training mode under MultiWorkerMirroredStrategy, two workers on
loopback: both end with the same weights, whether or not `fit` was called
inside `strategy.scope()`."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

# Run by `python3 dev.py test-long` and CI, not by the README's test command.
pytestmark = pytest.mark.long

WORKER = os.path.join(os.path.dirname(__file__), "multi_worker.py")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_end_with_the_same_weights_in_every_mode(tmp_path):
    ports = ",".join(map(str, _free_ports(2)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    workers = [
        subprocess.Popen(
            [sys.executable, WORKER, str(i), ports, str(tmp_path / f"w{i}.npz")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, log[-3000:]
    first, second = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert sorted(first.files) == ["distill_outside", "eenet_outside", "joint_outside"]
    for name in first.files:
        np.testing.assert_allclose(first[name], second[name], rtol=0, atol=1e-6)
