"""The shape of the code: imports run one way, doors around one core.

    top     node.app, node.cli, node.config, node.logs, node.local_cluster, node.ecs_cli
    doors   node.http, node.memcached
    core    node.core
    parts   node.cache, node.peers, node.cluster
    leaves  node.errors, node.results, node.request_id

A module may import its own package, anything below its layer, and the
leaves; never a layer above, and never a sibling door. ``node.cache`` is
pure: it imports only leaves. Only the doors and the app assembly import
``aiohttp.web``. ``client`` never imports ``node``. The imports are read
from the source with ``ast``, so nothing is executed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LEAVES = {"node.errors", "node.results", "node.request_id"}
# Lower number, lower layer.
LAYERS = {
    "node.cache": 0,
    "node.peers": 0,
    "node.cluster": 0,
    "node.core": 1,
    "node.http": 2,
    "node.memcached": 2,
}
TOP = 3
# Parts that may use another part: the peer layer speaks the store's entry
# format when moving entries, the core's placement reads the membership.
PART_IMPORTS = {"node.peers": {"node.cache"}, "node.cluster": set(), "node.cache": set()}
WEB_ALLOWED = ("node.http", "node.app", "node.cli")


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def imports_of(name: str, path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative ones resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def package_of(module: str) -> str:
    """The layer package a node module belongs to ("node.app" for the top)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def is_leaf(module: str) -> bool:
    """A leaf module, or a name imported from one (``node.errors.BadKey``)."""
    return any(module == leaf or module.startswith(leaf + ".") for leaf in LEAVES)


def layer_of(module: str) -> int:
    if is_leaf(module):
        return -1
    return LAYERS.get(package_of(module), TOP)


NODE_MODULES = list(modules("node"))


@cache
def node_imports() -> Mapping[str, frozenset[str]]:
    """Each node module's imports, parsed once for all the rules."""
    return {name: frozenset(imports_of(name, path)) for name, path in NODE_MODULES}


def layer_violation(name: str, target: str) -> str | None:
    """Why module ``name`` may not import ``target``; None when it may."""
    if not target.startswith("node.") or is_leaf(target):
        return None
    own_package, own_layer = package_of(name), layer_of(name)
    target_package = package_of(target)
    if own_layer == TOP or target_package == own_package:
        return None
    target_layer = layer_of(target)
    if target_layer >= own_layer:
        return f"{name} (layer {own_layer}) imports {target} (layer {target_layer})"
    if own_layer == 0 and target_package not in PART_IMPORTS[own_package]:
        return f"{name} (a part) imports {target} (a part it may not use)"
    return None


# Each rule below reads every module it applies to and names every offender,
# so that one run shows them all.


def test_every_layer_and_leaf_has_modules_to_check() -> None:
    # A package or leaf renamed away would leave its rule nothing to check.
    names = {name for name, _ in NODE_MODULES}
    assert {"node.core.service", "node.http.kv", "node.cache.store", "node.app"} <= names
    assert set(LAYERS) <= {package_of(name) for name in names if "." in name}
    assert names >= LEAVES


def test_imports_run_down_the_layers() -> None:
    offenders = [
        problem
        for name, imported in node_imports().items()
        for target in sorted(imported)
        if (problem := layer_violation(name, target)) is not None
    ]
    assert not offenders, "imports run one way, doors -> core -> parts:\n" + "\n".join(offenders)


def test_leaves_import_no_other_node_module() -> None:
    imports = node_imports()
    offenders = {
        leaf: others
        for leaf in sorted(LEAVES)
        if (others := {t for t in imports[leaf] if t.startswith("node.") and not is_leaf(t)})
    }
    assert not offenders, f"leaves that import other node modules: {offenders}"


def test_only_the_doors_and_the_app_use_aiohttp_web() -> None:
    offenders = [
        name
        for name, imported in node_imports().items()
        if imported & {"aiohttp.web", "aiohttp.web_protocol"} and not name.startswith(WEB_ALLOWED)
    ]
    assert not offenders, f"these import aiohttp.web below the doors: {offenders}"


def test_the_client_never_imports_the_node() -> None:
    client = list(modules("client"))
    assert client, "no client modules found"
    offenders = {
        name: node
        for name, path in client
        if (node := {t for t in imports_of(name, path) if t == "node" or t.startswith("node.")})
    }
    assert not offenders, f"client modules that import the node: {offenders}"


def test_the_core_is_protocol_free() -> None:
    core = {name: imported for name, imported in node_imports().items() if layer_of(name) == 1}
    assert "node.core.service" in core
    offenders = {
        name: web
        for name, imported in core.items()
        if (web := {t for t in imported if t.startswith("aiohttp")})
    }
    assert not offenders, f"core modules that import aiohttp: {offenders}"
