"""A Python toolchain for this workspace's own interpreter, .venv/bin/python.

Without a registered toolchain, Bazel runs py_test targets with whatever
`python3` is on PATH (bazel_tools' py3wrapper.sh). This repository rule finds
the workspace's virtual environment (created by `python3 dev.py test`) and
declares a py_runtime for it, paired and exposed as a toolchain; WORKSPACE
registers it. Tests then see the environment's packages (TensorFlow, tf_keras,
tfmot, pytest) with no PYTHONPATH or --python_path.
"""

_BUILD = """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

package(default_visibility = ["//visibility:public"])

py_runtime(
    name = "py3_runtime",
    interpreter_path = "{python}",
    python_version = "PY3",
    # The launcher stub runs on this interpreter too, not on PATH's python3.
    stub_shebang = "#!{python}",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":py3_runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
"""

def _venv_python_impl(ctx):
    workspace = ctx.path(Label("@//:WORKSPACE")).dirname
    python = workspace.get_child(".venv").get_child("bin").get_child("python")
    if not python.exists:
        fail(("venv_python: %s does not exist; create it with " +
              "`python3 dev.py test` (dev.py bazel does it too)") % python)
    ctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % ctx.name)
    ctx.file("BUILD", _BUILD.format(python = python))

venv_python = repository_rule(
    implementation = _venv_python_impl,
    # The interpreter lives outside Bazel's view: re-read it on every fetch.
    local = True,
)
