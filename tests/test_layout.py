"""The package layout: imports point down one table, public namespaces hide the rest.

The table is docs/architecture.md's (the layout of issue 13) written as data.
Every tfee module's imports are read with `ast`, those inside functions too,
because a lazy import is as much a dependency as one at the top.
"""

import ast
import importlib
import pathlib
import pkgutil
import re
import types

import pytest

import tfee

ROOT = pathlib.Path(tfee.__file__).resolve().parent

# Row: (its units: modules or packages, the other rows it may import). A
# module may always import its own unit (a package's modules each other).
# Rows are listed top (lowest) to bottom; every arrow points up this list.
# The rows below "stages and costs" may read networks through all of these:
_NETWORKS = ("base", "layers", "placement", "structure", "network", "stages and costs")
LAYOUT = {
    # Leaf helpers under everything. They may use each other (all of them go
    # through the Keras door). _macs counts one layer's MACs: tfee.network
    # places exits by MACs, so the counter sits below it (tfee.cost, which
    # reads whole networks, publishes it); tfee.rules is the one definition
    # of each confidence rule that every backend follows.
    "base": (
        (
            "tfee._keras",
            "tfee._tfmot",
            "tfee._graph",
            "tfee._macs",
            "tfee._checks",
            "tfee._files",
            "tfee._flatbuffer",
            "tfee.naming",
            "tfee.version",
            "tfee.rules",
        ),
        {"base"},
    ),
    # Flattening nested models, storing the input normalisation in one and
    # loading saved ones only replay Keras.
    "keras models": (
        ("tfee.flatten", "tfee.input_normalisation", "tfee.keras3", "tfee.saving"),
        {"base", "keras models"},
    ),
    # Exit heads are plain Keras layers: they know nothing of networks.
    "layers": (("tfee.layers",), {"base"}),
    # A placement rule picks attach layers from a context the network hands it.
    "placement": (("tfee.placement",), {"base", "layers"}),
    # Reading a network's structure (exits, sections, MACs per layer) from its
    # graph needs the heads' class, never placements or costs.
    "structure": (("tfee.structure",), {"base", "layers"}),
    # Attaching exits needs heads and placements, never costs.
    "network": (
        ("tfee.network",),
        {"base", "keras models", "layers", "placement", "structure"},
    ),
    # Stages and costs are built from a network's structure.
    "stages and costs": (
        ("tfee.stages", "tfee.cost"),
        {"base", "layers", "placement", "structure", "network"},
    ),
    # Policies decide from outputs and costs; calibration and evaluation
    # stay beside them, so every runtime shares one decision.
    "decision": (("tfee.policy",), {*_NETWORKS}),
    # One cascade engine runs a decision; it never makes its own.
    "runtime": (("tfee.runtime",), {*_NETWORKS, "decision"}),
    # Training fits Keras networks; it runs no cascade and loads no data.
    "training": (("tfee.training",), {*_NETWORKS, "decision"}),
    # Compression trains (distillation, fine-tuning) but never exports.
    "compress": (
        ("tfee.compress",),
        {*_NETWORKS, "decision", "runtime", "training"},
    ),
    # Export strips compressed models and checks files with the runtime.
    "export": (
        ("tfee.export",),
        {*_NETWORKS, "keras models", "decision", "runtime", "training", "compress"},
    ),
    # Data sets and reference backbones are inputs to a pipeline, not parts
    # of the library's machinery: only the top row wires them in.
    "leaves": (("tfee.data", "tfee.backbones"), {"base"}),
    # Reports, tuning, recipes and the namespace itself put everything together.
    "top": (
        ("tfee", "tfee.report", "tfee.tuning", "tfee.recipes"),
        {
            *_NETWORKS,
            "keras models",
            "decision",
            "runtime",
            "training",
            "compress",
            "export",
            "leaves",
            "top",
        },
    ),
}


def _module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    _module_name(path): path
    for path in sorted(ROOT.rglob("*.py"))
    if "__pycache__" not in path.parts
}
PUBLIC_PACKAGES = sorted(
    _module_name(path)
    for path in ROOT.rglob("__init__.py")
    if not any(part.startswith("_") for part in _module_name(path).split("."))
)


def _unit_of(module):
    """(row, unit) of a module: its longest unit in the table, or (None, None)."""
    best = (None, None)
    for row, (units, _) in LAYOUT.items():
        for unit in units:
            inside = module == unit or (
                unit != "tfee" and module.startswith(unit + ".")
            )
            if inside and (best[1] is None or len(unit) > len(best[1])):
                best = (row, unit)
    return best


def _package_of(module):
    is_package = MODULES.get(module, pathlib.Path()).name == "__init__.py"
    return module if is_package else module.rpartition(".")[0]


def _imported_modules(module, source):
    """The tfee modules `source` imports, with their line numbers."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(module).split(".")
                anchor = ".".join(package[: len(package) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # `from tfee import cost` imports the module tfee.cost, while
                # `from tfee.policy import calibrate` imports tfee.policy.
                candidate = f"{base}.{alias.name}"
                found.append((candidate if candidate in MODULES else base, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] == "tfee"]


def _violations(module, source):
    row, unit = _unit_of(module)
    if row is None:
        return [f"{module} has no row in the layout table"]
    allowed = LAYOUT[row][1]
    problems = []
    for target, line in _imported_modules(module, source):
        target_row, target_unit = _unit_of(target)
        if target_unit == unit or target_row in allowed:
            continue
        problems.append(
            f"{module} ({row}) line {line} imports {target} ({target_row}); "
            f"{row} may import only {sorted(allowed)} and itself"
        )
    return problems


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_point_down_the_layout(module):
    problems = _violations(module, MODULES[module].read_text())
    assert not problems, "\n".join(problems)


def test_a_lazy_backward_import_is_reported():
    source = "def f():\n    from tfee import cost\n    return cost\n"
    assert _violations("tfee.network", source) == [
        "tfee.network (network) line 2 imports tfee.cost (stages and costs); "
        "network may import only ['base', 'keras models', 'layers', 'placement', "
        "'structure'] and itself"
    ]


def test_a_relative_import_is_resolved_to_its_module():
    found = _imported_modules("tfee.policy.evaluation", "from .. import report\n")
    assert found == [("tfee.report", 1)]
    assert _violations("tfee.policy.evaluation", "from .. import report\n")


def test_only_the_top_row_may_import_data_or_backbones():
    importers = [row for row, (_, allowed) in LAYOUT.items() if "leaves" in allowed]
    assert importers == ["top"]


def _is_dunder(name):
    return name.startswith("__") and name.endswith("__")


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_public_namespace_holds_no_private_names(package):
    namespace = importlib.import_module(package)
    private = [n for n in dir(namespace) if n.startswith("_") and not _is_dunder(n)]
    exported = [
        n
        for n in getattr(namespace, "__all__", ())
        if n.startswith("_") and not _is_dunder(n)
    ]
    assert not private, f"{package} holds private names {private}"
    assert not exported, f"{package}.__all__ exports private names {exported}"


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_no_public_name_shadows_a_module_of_its_package(package):
    namespace = importlib.import_module(package)
    shadowing = [
        f"{package}.{info.name} is a {type(getattr(namespace, info.name)).__name__}"
        for info in pkgutil.iter_modules(namespace.__path__)
        if hasattr(namespace, info.name)
        and not isinstance(getattr(namespace, info.name), types.ModuleType)
    ]
    assert not shadowing, "\n".join(shadowing)


def _reachable_private_modules(package):
    """Walks public names from `package` through tfee modules; returns the
    paths that end at a private module."""
    start = importlib.import_module(package)
    queue, seen, found = [(package, start)], {package}, []
    while queue:
        path, module = queue.pop()
        for name in dir(module):
            if name.startswith("_"):
                continue
            value = getattr(module, name)
            if not isinstance(value, types.ModuleType):
                continue
            if value.__name__.split(".")[0] != "tfee":
                continue  # tf, keras, numpy: not ours to walk
            if any(part.startswith("_") for part in value.__name__.split(".")):
                found.append(f"{path}.{name} is {value.__name__}")
            elif value.__name__ not in seen:
                seen.add(value.__name__)
                queue.append((f"{path}.{name}", value))
    return found


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_no_private_module_is_reachable_by_public_names(package):
    found = _reachable_private_modules(package)
    assert not found, "\n".join(found)


def _bazel_sources():
    """{path: py_library name} of every tfee source BUILD lists, globs expanded."""
    build = (ROOT.parent / "BUILD").read_text()
    owners = {}
    for name, body in re.findall(
        r'py_library\(\s*name = "(\w+)",(.*?)\n\)', build, flags=re.S
    ):
        sources = re.search(r"srcs = (.*?)\n    \w+ =|srcs = (.*)", body, flags=re.S)
        text = sources.group(1) or sources.group(2) if sources else ""
        for pattern in re.findall(r'"(tfee/[^"]+)"', text):
            paths = (
                ROOT.parent.glob(pattern) if "*" in pattern else [ROOT.parent / pattern]
            )
            for path in paths:
                owners.setdefault(path.relative_to(ROOT.parent).as_posix(), []).append(
                    name
                )
    return owners


def test_every_tfee_module_belongs_to_one_bazel_library():
    owners = _bazel_sources()
    modules = {path.relative_to(ROOT.parent).as_posix() for path in MODULES.values()}
    assert {m: owners.get(m) for m in modules if len(owners.get(m, ())) != 1} == {}
    assert sorted(set(owners) - modules) == []
