"""The import rules of daemon/ and bridge_protocol/, checked on the source with `ast`.

Every import counts, including those inside functions and under `TYPE_CHECKING`: an
import cycle or an upward import is a design error even when Python tolerates it.
The rules are README.md's "Where things are", as code.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each module may import its own package and what its rule lists (prefixes).
RULES: dict[str, tuple[str, ...]] = {
    "bridge_protocol": ("bridge_protocol",),
    "daemon.profiles": (),
    "daemon.priorities": (),
    "daemon.models": (),
    "daemon.languages": (),
    "daemon.launcher": (),
    "daemon.allocator": (),
    "daemon.config": ("daemon.profiles", "daemon.languages"),
    "daemon.config_file": ("daemon.config", "daemon.profiles", "daemon.languages",
                           "daemon.models"),
    "daemon.model_fetch": ("daemon.models",),
    "daemon.engines.thread": (),
    "daemon.pipeline.text": (),
    "daemon.pipeline.timings": ("bridge_protocol",),
    "daemon.llm": ("daemon.priorities", "daemon.config", "daemon.profiles", "daemon.engines.thread",
                   "daemon.pipeline.text", "daemon.models"),
    "daemon.tts": ("daemon.priorities", "daemon.config", "daemon.profiles", "daemon.engines.thread",
                   "daemon.models", "daemon.languages"),
    "daemon.asr": ("daemon.config", "daemon.engines.thread", "daemon.models", "daemon.languages"),
    "daemon.pipeline": ("daemon.priorities", "bridge_protocol", "daemon.config", "daemon.profiles",
                        "daemon.llm.base", "daemon.llm.conversation", "daemon.tts.base"),
    "daemon.metrics": ("bridge_protocol", "daemon.pipeline"),
    "daemon.server": ("daemon.priorities", "bridge_protocol", "daemon.config",
                      "daemon.pipeline", "daemon.llm.base", "daemon.llm.conversation",
                      "daemon.llm.scene_prompt", "daemon.tts.base", "daemon.asr",
                      "daemon.metrics"),
    "daemon.engines": ("daemon.priorities", "daemon.config", "daemon.profiles",
                       "daemon.models", "daemon.languages", "daemon.llm", "daemon.tts",
                       "daemon.asr",
                       "daemon.pipeline.timings"),
    "daemon.app": ("daemon.config", "daemon.engines", "daemon.server", "daemon.metrics"),
    "daemon.cli": ("bridge_protocol", "daemon.allocator", "daemon.app", "daemon.launcher",
                   "daemon.bench.command",
                   "daemon.config", "daemon.config_file", "daemon.models",
                   "daemon.model_fetch", "daemon.metrics", "daemon.tts.xtts.engine"),
    "daemon.__main__": ("daemon.cli",),
    "daemon.bench": ("",),  # anything
    "daemon.testing": ("",),
}
SUPPORT = ("daemon.bench", "daemon.testing")
"""Benchmarks and test support: only the CLI (lazily), themselves and tests use them."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in [*ROOT.glob("daemon/**/*.py"), *ROOT.glob("bridge_protocol/*.py")]:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in its body)."""
    modules = _modules()
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
        graph.setdefault(name, set())
    return graph


def _rule_for(module: str) -> tuple[str, tuple[str, ...]]:
    matches = [key for key in RULES if module == key or module.startswith(key + ".")]
    assert matches, f"{module} has no import rule in tests/test_layering.py"
    key = max(matches, key=len)
    return key, RULES[key]


def _allowed(module: str, target: str) -> bool:
    key, allowed = _rule_for(module)
    own = key if key.count(".") >= 1 or key == "bridge_protocol" else module
    if target == own or target.startswith(own + ".") or own.startswith(target + "."):
        return True  # inside its own package (or that package's __init__)
    return any(target == prefix or target.startswith(prefix + ".") or prefix == ""
               for prefix in allowed)


def test_every_import_follows_the_layering() -> None:
    wrong = sorted(f"{module} -> {target}" for module, targets in import_graph().items()
                   for target in targets if not _allowed(module, target))
    assert wrong == [], "imports against the rules:\n" + "\n".join(wrong)


def test_there_is_no_import_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_service_never_imports_benchmarks_or_test_support() -> None:
    leaks = sorted(f"{module} -> {target}" for module, targets in import_graph().items()
                   for target in targets
                   if target.startswith(SUPPORT) and not module.startswith(SUPPORT)
                   and module != "daemon.cli")
    assert leaks == []


def test_llama_cpp_is_imported_by_the_module_that_wraps_it_only() -> None:
    importers = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llama_cpp"):
                importers.append(name)
            elif isinstance(node, ast.Import) and any(a.name.startswith("llama_cpp")
                                                      for a in node.names):
                importers.append(name)
    # llama: contexts and KV states; kv_shift: moving a context's KV cells; gguf: model
    # files (the quantizer, a file's predictions).
    assert sorted(set(importers) - {"daemon.bench.llm"}) == ["daemon.llm.gguf",
                                                              "daemon.llm.kv_shift",
                                                              "daemon.llm.llama"]
