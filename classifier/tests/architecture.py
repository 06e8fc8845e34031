"""The import graph of the project's own code, read from the source (function bodies included),
and the layers of ``docs/architecture.md``'s diagram.

``python -m classifier.tests.architecture`` prints the diagram's block as the code has it today;
``test_architecture.py`` fails when the document says otherwise, or when imports go round in a
loop. No Django and nothing imported: the files are only parsed.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("ml", "classifier", "digitsite")
DIAGRAM_START = "<!-- layers: made by `python -m classifier.tests.architecture`, checked by a test -->"
DIAGRAM_END = "<!-- end of layers -->"

# Each layer of the diagram, by the modules' names: the first prefix that matches wins.
LAYERS = (
    ("commands", ("classifier.management",)),
    ("worker", ("classifier.tasks", "classifier.queueing.worker")),
    ("celery", ("digitsite.celery", "digitsite.brokers")),
    ("queueing", ("classifier.queueing",)),
    ("services", ("classifier.services",)),
    ("data", ("classifier.models", "classifier.selectors", "classifier.permissions")),
    ("ml_serving", ("ml.serving",)),
    ("ml_fitting", ("ml.fitting",)),
    ("web", ("classifier", "digitsite")),  # views, forms, API, admin, URLs, settings
)
LABELS = {
    "web": "web: views, forms, API, admin, settings",
    "commands": "manage.py commands",
    "worker": "worker: tasks, and the hooks of its life (warm-up, claims, heartbeats, recovery)",
    "celery": "the Celery app and the embedded broker",
    "queueing": "queueing: send tasks by name, claims, heartbeats, stranded work",
    "services": "services: every write, model versions, retraining",
    "data": "models, selectors, permissions",
    "ml_serving": "ml serving: Predictor, preprocessing, segmentation, verdicts, Grad-CAM",
    "ml_fitting": "ml fitting: training, detector and temperature fitting, synthetic data, evaluation",
}


def modules() -> dict[str, Path]:
    """Every module of the project's packages but tests and migrations, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            relative = path.relative_to(REPO)
            if {"tests", "migrations"} & set(relative.parts):
                continue
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _owner(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports() -> dict[str, set[str]]:
    """module -> the project's modules it imports, anywhere in its source."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            for target in targets:
                owner = _owner(target, known)
                if owner and owner != name:
                    graph[name].add(owner)
    return graph


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> str:
    if module == "ml":  # the package itself: a docstring
        return "ml_serving"
    for layer, prefixes in LAYERS:
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return layer
    raise ValueError(f"{module} is in no layer")


def layer_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (layer_of(module), layer_of(target))
        for module, targets in graph.items()
        for target in targets
        if layer_of(module) != layer_of(target)
    }


def diagram(edges: set[tuple[str, str]]) -> str:
    """The Mermaid block of the layers and who imports whom."""
    lines = [DIAGRAM_START, "```mermaid", "flowchart TD"]
    lines += [f'    {layer}["{LABELS[layer]}"]' for layer, _ in LAYERS]
    lines += [f"    {source} --> {target}" for source, target in sorted(edges)]
    lines += ["```", DIAGRAM_END]
    return "\n".join(lines)


def documented_block(text: str) -> str:
    start, end = text.index(DIAGRAM_START), text.index(DIAGRAM_END) + len(DIAGRAM_END)
    return text[start:end]


if __name__ == "__main__":
    print(diagram(layer_edges(imports())))
