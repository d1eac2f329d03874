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


# A quoted path ending in a file suffix names a file, not an attribute.
_FILE_SUFFIXES = ("py", "json", "txt", "md", "h", "cc", "tflite", "keras", "h5")


def _resolves(path):
    import importlib

    parts = path.split(".")
    value = tfee
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(value, part):
            value = getattr(value, part)
            continue
        fields = getattr(value, "__dataclass_fields__", {})
        if part in fields and i == len(parts) - 1:
            return True  # A dataclass field (no class attribute without a default).
        try:
            value = importlib.import_module(".".join(parts[: i + 1]))
        except ImportError:
            return False
    return True


def test_every_tfee_path_the_code_quotes_exists():
    """Errors and docstrings send users to `tfee.x.y`: each must resolve
    (issue 33: `tfee.front`, `tfee.ExitOutputs`, `tfee.Policy.from_json`)."""
    import pathlib
    import re

    pattern = re.compile(r"\btfee(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
    root = pathlib.Path(tfee.__file__).parent
    missing = []
    for source in sorted(root.rglob("*.py")):
        text = source.read_text()
        for match in pattern.finditer(text):
            path = match.group(0)
            if path.rsplit(".", 1)[-1] in _FILE_SUFFIXES or _resolves(path):
                continue
            line = text[: match.start()].count("\n") + 1
            missing.append(f"{source.relative_to(root.parent)}:{line} {path}")
    assert not missing, missing
