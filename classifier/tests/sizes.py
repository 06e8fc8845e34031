"""How long the project's functions and modules are, read from the source (nothing imported).

``make sizes`` (``python -m classifier.tests.sizes``) prints the functions over ``FUNCTION_LINES``
lines and the modules over ``MODULE_LINES``; ``test_sizes.py`` holds the limits: no function over
``FUNCTION_MAX`` lines, at most ``LONG_FUNCTIONS_ALLOWED`` over ``FUNCTION_LINES``, and a module over
``MODULE_LINES`` lines says in its docstring why it stays whole (a paragraph that starts with
``KEPT_WHOLE``), or is split. Tests and migrations are left out; the benchmarks are in.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("ml", "classifier", "digitsite", "bench")
FUNCTION_LINES, FUNCTION_MAX, LONG_FUNCTIONS_ALLOWED = 50, 60, 5
MODULE_LINES = 400
KEPT_WHOLE = "Kept whole:"


def sources() -> list[Path]:
    found = []
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            if not {"tests", "migrations"} & set(path.relative_to(REPO).parts):
                found.append(path)
    return found


def long_functions(limit: int = FUNCTION_LINES) -> list[tuple[int, str]]:
    """(lines, "path:name") of every function or method over ``limit`` lines, longest first."""
    found = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append((lines, f"{path.relative_to(REPO)}:{node.name}"))
    return sorted(found, reverse=True)


def long_modules(limit: int = MODULE_LINES) -> list[tuple[int, str, bool]]:
    """(lines, path, whether its docstring says why it stays whole) of every module over ``limit``."""
    found = []
    for path in sources():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > limit:
            said = KEPT_WHOLE in (ast.get_docstring(ast.parse(text)) or "")
            found.append((lines, str(path.relative_to(REPO)), said))
    return sorted(found, reverse=True)


if __name__ == "__main__":
    print(f"Functions over {FUNCTION_LINES} lines (at most {LONG_FUNCTIONS_ALLOWED}, none over {FUNCTION_MAX}):")
    for lines, name in long_functions():
        print(f"  {lines:4d}  {name}")
    print(f"Modules over {MODULE_LINES} lines (each says why it stays whole):")
    for lines, name, said in long_modules():
        print(f"  {lines:4d}  {name}{'' if said else f'  <- no {KEPT_WHOLE!r} in its docstring'}")
