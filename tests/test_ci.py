"""CI runs exactly the test commands the README gives a new user."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _readme_commands():
    readme = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", readme, flags=re.S):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command:
                commands.append(command)
    return commands


def test_ci_runs_the_readmes_test_commands_and_nothing_else():
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    run = [
        line.strip()
        for line in script
        if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))
    ]
    readme = _readme_commands()
    assert run == [c for c in readme if c.startswith("python3 dev.py test")]
    assert run == ["python3 dev.py test", "python3 dev.py test-long"]
