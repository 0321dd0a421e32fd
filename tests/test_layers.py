"""The package's architecture, as pyproject.toml's import-linter contracts state it
(framework > runner > pipeline > upstream > worker > brainset > io > _compat > errors;
the workers' code imports neither Kedro, pandas nor rich), and the shape that keeps it
legible: no import cycles, no module over 400 lines, few function-local imports."""

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "brainsets_kedro"
MAX_LINES = 400
MAX_LOCAL_IMPORTS = 10


def test_the_import_contracts_hold():
    # In a process of its own: import-linter's logging configuration disables the
    # loggers that exist in the process it runs in.
    linter = [
        sys.executable,
        "-c",
        "from importlinter.cli import lint_imports_command; lint_imports_command()",
    ]
    result = subprocess.run(
        [*linter, "--no-cache"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    assert result.stdout.count(" KEPT") == len(contracts), result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in graph.modules or not imported.startswith(
                "brainsets_kedro"
            ):
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module.startswith("brainsets_kedro") and module not in index:
            visit(module)
    return found


def test_no_import_cycles():
    graph = grimp.build_graph("brainsets_kedro", exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def test_no_module_over_400_lines():
    long = {
        str(path.relative_to(SRC)): n
        for path in SRC.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def _reason(text: str) -> str:
    """A line's comment, less its ``noqa``."""
    if "#" not in text:
        return ""
    return text.split("#", 1)[1].replace("noqa: PLC0415", "").strip(" ,:-#()")


def _local_imports(path: Path) -> list[tuple[int, str, str]]:
    """The imports inside functions of ``path``: (line, its source, its reason: the
    comment after its noqa, or the comment lines right above it and the imports
    they explain)."""
    lines = path.read_text().splitlines()
    found = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    index = inner.lineno - 1
                    reason = _reason(lines[index])
                    above = index - 1
                    while not reason and above >= 0:
                        text = lines[above].strip()
                        if not (text.startswith(("#", "import ", "from "))):
                            break
                        reason = _reason(text)
                        above -= 1
                    found.add((inner.lineno, lines[index].strip(), reason))
    return sorted(found)


def test_few_function_local_imports_each_with_its_reason():
    local = {
        f"{path.relative_to(SRC)}:{line}": (text, reason)
        for path in SRC.rglob("*.py")
        if "pipelines" not in path.parts
        for line, text, reason in _local_imports(path)
    }
    assert len(local) <= MAX_LOCAL_IMPORTS, "\n".join(local)
    unexplained = {where: text for where, (text, reason) in local.items() if not reason}
    assert unexplained == {}, "a function-local import says why, in a comment"
