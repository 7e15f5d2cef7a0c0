"""The package's import graph, read statically: no circle, and config never reaches the data layer."""
import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "arcface_keras"


def module_files():
    """{dotted module name: file} of every module of the package."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


@functools.cache
def import_graph():
    """{module: package modules it imports anywhere in its file}, function-level imports included."""
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                          for alias in node.names}
        graph[name] = {target for target in found if target in modules and target != name}
    return graph


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_no_module_imports_a_module_that_imports_it_back():
    graph = import_graph()
    assert "arcface_keras.config" in graph and "arcface_keras.data.prepare" in graph
    circles = sorted(f"{name} -> ... -> {name}" for name in graph if name in reachable(graph, name))
    assert circles == []


def test_config_reaches_nothing_of_the_data_layer():
    graph = import_graph()
    assert {"arcface_keras.config", "arcface_keras.data.sources"} <= reachable(graph, "arcface_keras.data.prepare")
    assert [m for m in reachable(graph, "arcface_keras.config") if m.startswith("arcface_keras.data")] == []


def test_the_package_alone_imports_no_keras_and_a_module_that_does_registers_every_class():
    """In a fresh interpreter: `import arcface_keras` imports neither Keras nor TensorFlow; a module of ours that
    imports Keras (and, through another module, itself back half-made) leaves every class registered."""
    import subprocess
    import sys

    import keras

    import arcface_keras  # noqa: F401  (registers this process's classes: the expected set)

    code = ("import sys, arcface_keras\n"
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'the package imported Keras'\n"
            "import arcface_keras.heads.metric, keras\n"
            "print(' '.join(sorted(keras.saving.get_custom_objects())))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ours = sorted(name for name in keras.saving.get_custom_objects() if name.startswith("arcface_keras"))
    assert ours and [name for name in done.stdout.split() if name.startswith("arcface_keras")] == ours
