"""The shape of the code: imports run one way, doors around one core.

    top     node.app, node.cli, node.config, node.logs, node.local_cluster, node.ecs_cli
    doors   node.http (and later node.memcached)
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
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def test_every_node_module_is_checked() -> None:
    names = {name for name, _ in NODE_MODULES}
    assert {"node.core.service", "node.http.kv", "node.cache.store", "node.app"} <= names


@pytest.mark.parametrize(("name", "path"), NODE_MODULES, ids=[name for name, _ in NODE_MODULES])
def test_imports_run_down_the_layers(name: str, path: Path) -> None:
    own_package = package_of(name)
    own_layer = layer_of(name)
    for target in imports_of(name, path):
        if not target.startswith("node.") or is_leaf(target):
            continue
        target_package = package_of(target)
        if target_package == own_package or (target_package not in LAYERS and own_layer == TOP):
            continue
        target_layer = layer_of(target)
        assert target_layer < own_layer or own_layer == TOP, (
            f"{name} (layer {own_layer}) imports {target} (layer {target_layer}): "
            "imports run one way, doors -> core -> parts"
        )
        if own_layer == 0:
            assert target_package in PART_IMPORTS[own_package], f"{name} imports {target}"


@pytest.mark.parametrize(("name", "path"), NODE_MODULES, ids=[name for name, _ in NODE_MODULES])
def test_leaves_import_no_other_node_module(name: str, path: Path) -> None:
    if name not in LEAVES:
        return
    node_imports = {t for t in imports_of(name, path) if t.startswith("node.")}
    others = {target for target in node_imports if not is_leaf(target)}
    assert not others, f"{name} is a leaf but imports {others}"


@pytest.mark.parametrize(("name", "path"), NODE_MODULES, ids=[name for name, _ in NODE_MODULES])
def test_only_the_doors_and_the_app_use_aiohttp_web(name: str, path: Path) -> None:
    uses_web = any(
        target in {"aiohttp.web", "aiohttp.web_protocol"} for target in imports_of(name, path)
    )
    if uses_web:
        assert name.startswith(WEB_ALLOWED), f"{name} imports aiohttp.web below the doors"


def test_the_client_never_imports_the_node() -> None:
    for name, path in modules("client"):
        node_imports = {t for t in imports_of(name, path) if t == "node" or t.startswith("node.")}
        assert not node_imports, f"{name} imports {node_imports}"


def test_the_core_is_protocol_free() -> None:
    for name, path in modules("node/core"):
        imported = imports_of(name, path)
        assert not {t for t in imported if t.startswith("aiohttp")}, f"{name} imports aiohttp"
