"""The package's structure: every import points down, no cycles, no private names across modules.

Read from the source with ``ast`` (nothing is imported), so the test also sees imports
deferred inside functions, which Python would let form a loop. To see the graph:
``ARTLAB_STRUCTURE_REPORT=1 python -m pytest tests/test_structure.py -q -s -k report``.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "artlab"

#: The tiers, top to bottom. A module may import modules of its own tier (no cycles) or of a
#: lower tier, never of a higher one. Names are module prefixes ("artlab.transfer" covers
#: its package and every submodule).
TIERS: list[tuple[str, list[str]]] = [
    ("apps", ["artlab.cli", "artlab.demo", "artlab.explore", "artlab.widgets", "artlab.catalogue", "artlab.lessons"]),
    ("studies", ["artlab.activations", "artlab.gram", "artlab.transfer", "artlab.embed",
                 "artlab.predict", "artlab.stylegan", "artlab.explain"]),
    ("ground", ["artlab.figures", "artlab.optimize", "artlab.data", "artlab.paint", "artlab.models",
                "artlab.architectures", "artlab.efficientnet", "artlab.video", "artlab.runs", "artlab.images", "artlab.weights", "artlab"]),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _target(name: str) -> str | None:
    """The artlab module a dotted name lives in (the longest known prefix), None outside artlab."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> list[tuple[str, int, str | None]]:
    """(imported artlab module, line, the name taken or None) for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: list[tuple[str, int, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _target(alias.name)
                if target:
                    found.append((target, node.lineno, None))
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            for alias in node.names:
                # "from artlab.activations import pooled" imports a submodule; anything else is a name
                sub = f"{source}.{alias.name}"
                target = sub if sub in MODULES else _target(source)
                if target:
                    found.append((target, node.lineno, None if sub in MODULES else alias.name))
    return found


def _private_attribute_uses(module: str) -> list[tuple[str, int, str]]:
    """``alias._name`` where ``alias`` is an imported artlab module (a private name reached across modules)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and _target(alias.name) == alias.name:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in MODULES:
                    aliases[alias.asname or alias.name] = sub
    uses = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            uses.append((aliases[node.value.id], node.lineno, node.attr))
    return uses


def _tier(module: str) -> int:
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(TIERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank is not None, f"{module} is in no tier: add it to TIERS in {__file__}"
    return rank


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _ in _imports(module):
            if target != module:
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_face(importer: str, target: str) -> bool:
    """A package's ``__init__`` re-exporting its own submodules (a face, not a dependency)."""
    return MODULES[importer].name == "__init__.py" and target.startswith(importer + ".")


def test_every_module_is_in_a_tier():
    for module in MODULES:
        _tier(module)


def test_no_import_cycle():
    graph = {m: {t for t in targets if not _is_face(m, t)} for m, targets in _graph().items()}
    assert _cycles(graph) == [], "import cycles (each list imports itself through the others)"


def test_no_package_cycle():
    """Packages as wholes do not import each other in a circle either (the picture drawn from imports)."""
    def unit(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 else module

    graph: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        graph.setdefault(unit(module), set())
        for target in targets:
            if unit(target) != unit(module):
                graph[unit(module)].add(unit(target))
                graph.setdefault(unit(target), set())
    assert _cycles(graph) == []


def test_every_import_points_down():
    upward = []
    for module in MODULES:
        for target, line, _ in _imports(module):
            if _tier(target) < _tier(module):  # a smaller index is a higher tier
                upward.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}")
    assert upward == []


def test_no_private_name_crosses_a_module():
    crossing = []
    for module in MODULES:
        for target, line, name in _imports(module):
            if name and name.startswith("_") and not name.startswith("__") and target != module:
                crossing.append(f"{MODULES[module].relative_to(ROOT)}:{line} takes {name} from {target}")
        for target, line, name in _private_attribute_uses(module):
            if target != module:
                crossing.append(f"{MODULES[module].relative_to(ROOT)}:{line} uses {target}.{name}")
    assert crossing == []


def test_core_never_imports_widgets():
    for module in MODULES:
        if module.startswith("artlab.widgets") or _tier(module) == 0:
            continue
        assert not [t for t, _, _ in _imports(module) if t.startswith("artlab.widgets")], module


def test_the_checks_can_fail():
    """The detectors find what they look for (a test that cannot fail proves nothing)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _tier("artlab.widgets.kit") == 0 and _tier("artlab.images") == 2
    node = ast.parse("from ..models import x").body[0]
    assert _resolve("artlab.stylegan.generate", node) == "artlab.models"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("artlab.widgets.")))
def test_widget_modules_stay_small(module):
    """A widget reads its controls, calls one core function and updates its view: ~300 lines at most."""
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= 320, f"{module} has {lines} lines: move computation into the core, plumbing into kit.py"


#: modules allowed over ~700 lines because they hold one idea (and why)
ONE_IDEA: dict[str, str] = {
    "artlab.images": "the image boundary: untrusted files, arrays and tensors in, the one convention out "
                     "(its safe decoding, pixel limits and conversions share their checks)",
    "artlab.stylegan.networks": "the StyleGAN2-ADA generator, layer by layer as the format spec lists it",
}


def test_modules_hold_one_idea():
    big = {}
    for module, path in MODULES.items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > 750 and module not in ONE_IDEA:
            big[module] = lines
    assert big == {}, "split these along their seams, or list them in ONE_IDEA with the reason"


def test_report(capsys):
    """Prints the module graph by tier, with line counts (see the module docstring for how)."""
    if not os.environ.get("ARTLAB_STRUCTURE_REPORT"):
        pytest.skip("set ARTLAB_STRUCTURE_REPORT=1 (and pass -s) to print the module graph")
    graph = _graph()
    with capsys.disabled():
        for rank, (name, _) in enumerate(TIERS):
            print(f"\n[{name}]")
            for module in sorted(m for m in MODULES if _tier(m) == rank):
                lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
                print(f"  {module} ({lines}) -> {', '.join(sorted(graph[module])) or '-'}")
