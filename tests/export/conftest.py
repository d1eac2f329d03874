"""The export tests' images: the tiny files' own (tests/tiny_files.py)."""

import pytest


@pytest.fixture(scope="session")
def images(tiny_images):
    return tiny_images
