"""The package layout: one direction of dependency, no import cycles, a light ``import psfkit``."""

import ast
import pathlib
import subprocess
import sys

import psfkit

PACKAGE = pathlib.Path(psfkit.__file__).parent

# Layers, lowest first: a module may import its own layer and those below it, never one above.
LAYERS = [
    {"psfkit._validation", "psfkit._fft", "psfkit.metrics", "psfkit.io", "psfkit.tiling"},
    {"psfkit.optics", "psfkit.data"},
    {"psfkit.forward"},
    {"psfkit.learned", "psfkit.baselines"},
    {"psfkit.restoration"},
    {"psfkit.identification"},
    {"psfkit.pipeline"},
    {"psfkit.training", "psfkit.batch", "psfkit.cli", "psfkit.napari"},
]


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_psfkit_modules(name, path, known):
    """Every psfkit module ``name`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # "from package import submodule" imports the submodule
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t == "psfkit" or t.startswith("psfkit."))
    # lazy_loader.attach(submod_attrs=...) in a package __init__ is an import too
    if is_package and "lazy_loader" in path.read_text():
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key in node.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        found.add(f"{name}.{key.value}")
    found.discard(name)
    return {m for m in found if m in known}


def layer_of(name):
    for rank, layer in enumerate(LAYERS):
        if any(name == top or name.startswith(top + ".") for top in layer):
            return rank
    return None


def import_graph():
    known = modules()
    return {name: imported_psfkit_modules(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer():
    unplaced = [name for name in modules() if name != "psfkit" and layer_of(name) is None]
    assert unplaced == []


def test_lower_layers_never_import_higher_ones():
    upward = [
        (name, target)
        for name, targets in import_graph().items()
        if name != "psfkit"
        for target in targets
        if target != "psfkit" and layer_of(target) > layer_of(name)
    ]
    assert upward == []


def test_no_import_cycles():
    graph = import_graph()
    graph["psfkit"] = set()  # the top-level lazy table names everything by design; it runs nothing
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "active"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "active":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_the_walk_sees_a_cycle_and_an_upward_import(tmp_path):
    # the checks above must be able to fail: feed them a fake package with both defects
    fake = tmp_path / "psfkit"
    (fake / "optics").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "optics" / "__init__.py").write_text("")
    (fake / "optics" / "a.py").write_text("from psfkit.optics import b\n")
    (fake / "optics" / "b.py").write_text("def f():\n    from psfkit.optics.a import x\n    from psfkit.cli import main\n")
    (fake / "cli.py").write_text("")
    known = {module_name_in(fake, p): p for p in fake.rglob("*.py")}
    b = imported_psfkit_modules("psfkit.optics.b", fake / "optics" / "b.py", known)
    a = imported_psfkit_modules("psfkit.optics.a", fake / "optics" / "a.py", known)
    assert a == {"psfkit.optics.b"} and b == {"psfkit.optics.a", "psfkit.cli"}
    assert layer_of("psfkit.cli") > layer_of("psfkit.optics.b")


def module_name_in(root, path):
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_at_most_two_private_modules_at_the_top():
    flat = sorted(p.name for p in PACKAGE.glob("_*.py") if p.name != "__init__.py")
    assert len(flat) <= 2, flat


def test_public_api_resolves_and_import_psfkit_does_not_import_torch():
    code = (
        "import sys, time; t = time.perf_counter(); import psfkit; t = time.perf_counter() - t; "
        "assert 'torch' not in sys.modules; "
        "[getattr(psfkit, n) for n in psfkit.__all__ if n not in ('learned',)]; "
        "psfkit.zernike_psf({4: 0.1}, cutoff=0.2, size=9); "
        "assert 'torch' not in sys.modules, 'a NumPy function imported torch'; print(t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # generous bound: the target is 0.3 s; a loaded CI machine must not make this flaky
    assert float(out.stdout) < 1.0
