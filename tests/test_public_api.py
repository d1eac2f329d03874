"""The public namespace: explicit exports, nothing private reachable."""

import os

import tfee


def test_every_exported_name_exists():
    for name in tfee.__all__:
        assert hasattr(tfee, name), name


def test_version_comes_from_version_module():
    from tfee import version

    assert tfee.__version__ == version.__version__


def test_importing_tfee_selects_legacy_keras_for_tensorflow():
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert tfee.keras.__name__.startswith("tf_keras")
