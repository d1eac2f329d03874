"""The public namespace: explicit exports, nothing private reachable."""

import os

import tfee


def test_every_exported_name_exists():
    for name in tfee.__all__:
        assert hasattr(tfee, name), name


def test_private_modules_are_not_reachable_from_the_top_level():
    private = [n for n in dir(tfee) if n.startswith("_") and not n.startswith("__")]
    assert private == []


def test_version_comes_from_version_module():
    from tfee import version

    assert tfee.__version__ == version.__version__


def test_importing_tfee_selects_legacy_keras_for_tensorflow():
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert tfee.keras.__name__.startswith("tf_keras")
