"""The package's parts import downward only, and only keraffe.keras_graph touches private Keras.

Read from the code (an AST walk over src/keraffe, every import statement,
those inside functions too), so a contract breaks here before it breaks for a
user who installs keraffe without TensorFlow or pycaffe. The parts, bottom to
top, are drawn in the README's Development section.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "keraffe"

#: Parts of the package, bottom to top: a part may import only parts listed before it (and itself).
LAYERS = (
    ("errors",),
    ("files", "limits", "names"),
    ("caffe", "layout", "windows", "keras_graph", "host_memory"),
    ("keras_layers", "keras_legacy", "passes"),
    ("keras_io", "targets"),  # targets: NPU toolchain profiles, their rules over Caffe nets, and fitting
    ("convert", "pruning"),
    ("verify",),
    ("api",),  # keraffe/__init__.py: the public functions
    ("cli",),
)
RANK = {part: level for level, parts in enumerate(LAYERS) for part in parts}

#: Keras' private attributes of graphs, nodes and tensors: only keras_graph may read them.
PRIVATE_KERAS = {"_keras_history", "_inbound_nodes", "_outbound_nodes", "_nodes_by_depth", "_functional",
                 "_inputs_struct", "_outputs_struct", "_operations", "_layers"}
THIRD_PARTY_KERAS = ("keras", "tensorflow", "jax", "torch")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(module: str) -> bool:
    return (SRC / Path(*module.split(".")) / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in a file; ``from pkg import sub`` counts as pkg.sub."""
    tree = ast.parse(path.read_text(), str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = _is_package(candidate) or (SRC / Path(*candidate.split("."))).with_suffix(".py").is_file()
                found.append((candidate if is_module else base, node.lineno))
    return found


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "keraffe":
        return None
    if len(parts) == 1:
        return "api"
    return parts[1]


def _files():
    return sorted(PACKAGE.rglob("*.py"))


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _files():
        module = _module_name(path)
        for imported, _ in _imports(path):
            if imported.startswith("keraffe"):
                graph[module].add(imported)
    return graph


def _violations(rule) -> list[str]:
    bad = []
    for path in _files():
        module = _module_name(path)
        for imported, line in _imports(path):
            reason = rule(module, imported)
            if reason:
                bad.append(f"{path.relative_to(SRC)}:{line}: {module} imports {imported} ({reason})")
    return bad


def test_every_part_is_placed_in_the_layers():
    parts = {_part(_module_name(path)) for path in _files()}
    assert parts <= set(RANK), f"parts with no place in LAYERS: {sorted(parts - set(RANK))}"


def test_parts_import_downward_only():
    def rule(module, imported):
        mine, theirs = _part(module), _part(imported)
        if theirs is None or mine == theirs:
            return None
        if RANK[theirs] >= RANK[mine]:
            return f"part '{mine}' may not import part '{theirs}', which is not below it"
        return None

    assert _violations(rule) == []


def test_caffe_format_imports_no_keras_and_no_other_part():
    def rule(module, imported):
        if _part(module) != "caffe":
            return None
        if imported.split(".")[0] in THIRD_PARTY_KERAS + ("cv2",):
            return "the Caffe format needs no deep-learning framework"
        if _part(imported) not in (None, "caffe", "errors", "files", "limits"):
            return "the Caffe format may use only errors, files and limits"
        return None

    assert _violations(rule) == []


def test_keras_layers_never_import_the_converters():
    def rule(module, imported):
        return "a Keras layer must not depend on a converter" if (
            _part(module) == "keras_layers" and _part(imported) == "convert") else None

    assert _violations(rule) == []


def test_pruning_is_pure_keras():
    def rule(module, imported):
        if _part(module) != "pruning":
            return None
        if _part(imported) in ("caffe", "convert", "verify", "api", "passes"):
            return "pruning is pure Keras: no Caffe format, converters or verify"
        return None

    assert _violations(rule) == []


def test_nothing_below_the_cli_imports_it():
    def rule(module, imported):
        return "only the CLI itself may import the CLI" if (
            _part(imported) == "cli" and _part(module) != "cli") else None

    assert _violations(rule) == []


def test_passes_need_no_keras():
    def rule(module, imported):
        if _part(module) == "passes" and imported.split(".")[0] in THIRD_PARTY_KERAS:
            return "a pass rewrites Caffe nets"
        return None

    assert _violations(rule) == []


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def test_only_keras_graph_touches_private_keras():
    bad = []
    for path in _files():
        if path.name == "keras_graph.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE_KERAS:
                bad.append(f"{path.relative_to(SRC)}:{node.lineno}: .{node.attr}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras.src"):
                bad.append(f"{path.relative_to(SRC)}:{node.lineno}: from {node.module}")
            elif isinstance(node, ast.Import) and any(a.name.startswith("keras.src") for a in node.names):
                bad.append(f"{path.relative_to(SRC)}:{node.lineno}: import keras.src")
    assert bad == []


@pytest.mark.parametrize("source, expected", [
    ("import keras\nfrom keraffe.convert.keras_to_caffe import keras_layer\n",
     ["keras", "keraffe.convert.keras_to_caffe"]),
    ("from keraffe import keras_layers\n", ["keraffe.keras_layers"]),
    ("from keraffe.errors import KeraffeError\n", ["keraffe.errors"]),
])
def test_the_import_reader_resolves_submodules(tmp_path, source, expected, monkeypatch):
    """The reader this test relies on names the module an import loads, not the package it comes from."""
    path = PACKAGE / "caffe" / "__init__.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert [name for name, _ in _imports(path)] == expected


def test_a_forbidden_import_is_caught(monkeypatch):
    """The contract checks fail on a violation (so they cannot pass by reading nothing)."""
    original = _imports

    def with_leak(path):
        found = original(path)
        if path.name == "prototxt.py":
            found.append(("keras", 1))
        return found

    monkeypatch.setitem(globals(), "_imports", with_leak)
    with pytest.raises(AssertionError):
        test_caffe_format_imports_no_keras_and_no_other_part()


# ------------------------------------------------------------------ what importing and the Caffe-only commands load


_FRAMEWORKS = ("keras", "tensorflow", "jax", "torch", "cv2")


def _loaded_by(code: str) -> dict:
    """Run ``code`` in a fresh interpreter on this checkout; the frameworks then in sys.modules, and the environment."""
    import json
    import os
    import subprocess
    import sys

    probe = (f"{code}\nimport json, os, sys\n"
             f"print(json.dumps({{'modules': sorted({{m.split('.')[0] for m in sys.modules}} & set({_FRAMEWORKS!r})),"
             f" 'environ': dict(os.environ)}}))")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = str(SRC)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["environ_before"] = env
    return result


def test_importing_keraffe_loads_no_framework_and_sets_no_environment():
    result = _loaded_by("import keraffe")
    assert result["modules"] == []
    assert result["environ"] == result["environ_before"]


def test_the_caffe_format_loads_no_framework():
    modules = sorted(_module_name(p) for p in (PACKAGE / "caffe").rglob("*.py"))
    assert _loaded_by("\n".join(f"import {m}" for m in modules))["modules"] == []


@pytest.mark.parametrize("command", ["inspect", "upgrade"])
def test_caffe_only_commands_load_no_framework(command, tmp_path):
    net = tmp_path / "net.prototxt"
    net.write_text('name: "n"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
                   'layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" '
                   'convolution_param { num_output: 4 kernel_size: 3 } }\n')
    argv = [command, str(net)] + (["-o", str(tmp_path / "new.prototxt")] if command == "upgrade" else [])
    result = _loaded_by(f"from keraffe.cli.main import main\nassert main({argv!r}) == 0")
    assert result["modules"] == []
