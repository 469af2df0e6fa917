"""The package's layout: no circle of imports between its modules."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vision_jax"


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The project modules `path` imports anywhere in it (at the top or inside a function), each
  resolved to a module: `from vision_jax import losses` names vision_jax.losses."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name in modules)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        child = f"{node.module}.{alias.name}"
        if child in modules:
          found.add(child)
        elif node.module in modules:
          found.add(node.module)
  return found


def import_graph() -> dict[str, set[str]]:
  paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
  return {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One circle of imports (a list of modules, the first repeated at the end), or None."""
  state = {}  # module -> "open" while on the current path, "done" once all it reaches is explored

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return path[path.index(nxt) :] + [node, nxt] if nxt in path else [node, nxt]
      if nxt not in state and (cycle := visit(nxt, path + [node])):
        return cycle
    state[node] = "done"
    return None

  for start in sorted(graph):
    if start not in state and (cycle := visit(start, [])):
      return cycle
  return None


def test_find_cycle_finds_a_circle_and_only_a_circle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_circle_of_imports():
  """A module that imports what imports it works only by the order of imports, and is a sign
  that something sits in the wrong room (a metric that trains, a model that imports a loss).
  Imports inside functions count: they close the same circle, only later."""
  graph = import_graph()
  assert "vision_jax.train.loop" in graph and graph["vision_jax.tasks.gan"]
  cycle = find_cycle(graph)
  assert cycle is None, "circle of imports: " + " -> ".join(cycle)
