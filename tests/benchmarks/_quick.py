"""Runs a benchmark's main in quick mode with absl flags, as its test does."""

import json
import os

from absl import flags
from absl.testing import flagsaver


def run_main(module, flag_values):
    """Calls `module.main` under `flag_values`; restores every flag after."""
    with flagsaver.flagsaver(**flag_values):
        flags.FLAGS.mark_as_parsed()
        module.main([module.__name__])


def read_json(directory, name):
    with open(os.path.join(directory, name)) as f:
        return json.load(f)
