"""The rules that hold the layers apart (docs/architecture.md), read from the source: no import
loops, ml without Django, the diagram as the code has it. That web processes never load
TensorFlow is proven by running one (test_web_process.py), and that serving never imports
fitting in ml/tests/test_artifacts.py."""

import ast

from classifier.tests.architecture import (
    REPO,
    diagram,
    documented_block,
    imports,
    layer_edges,
    layer_of,
    loops,
    modules,
)


def test_no_imports_go_round_in_a_loop():
    """Function bodies included: an import hidden inside a function is still a loop."""
    assert loops(imports()) == []


def test_a_loop_is_found_where_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert loops(graph) == [["a", "b", "c"]]


def test_ml_never_imports_django():
    wrong = []
    for name, path in modules().items():
        if not name.startswith("ml"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            named = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            named += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            wrong += [f"{name}: {module}" for module in named if module.split(".")[0] in ("django", "classifier")]
    assert wrong == []


def test_every_module_has_a_layer():
    assert {name: layer_of(name) for name in modules()}  # raises for a module in no layer


def test_the_architecture_diagram_is_the_code_s():
    """docs/architecture.md draws who imports whom between the layers; when the code changes,
    ``python -m classifier.tests.architecture`` prints the block to paste."""
    text = (REPO / "docs" / "architecture.md").read_text()
    assert documented_block(text) == diagram(layer_edges(imports()))
