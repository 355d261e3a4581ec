"""The package's dependency direction: building blocks import nothing above them, and only the
machinery and the task module import engine/ (user errors and the hub-cache reader, modules
that import nothing of the package but the errors, live at the package top); engine/'s modules
import one another without a circle."""

import ast
import graphlib
from pathlib import Path

import pytest

import {{ cookiecutter.package_name }} as package
import {{ cookiecutter.package_name }}.engine as engine

PACKAGE_DIR = Path(package.__file__).parent
SCRIPTS = ("train.py", "test.py", "predict.py", "export.py", "sweep.py")
BLOCKS = ("layers", "losses", "ops")
# What a building block may import beside its own folder: leaves of the package (a loss with
# pretrained weights reads them through hub_weights, as any task does).
LEAVES = ("errors", "hub_weights")


def package_imports(path: Path) -> set[str]:
    """The package modules `path` imports, as dotted names relative to the package."""
    here = path.relative_to(PACKAGE_DIR).with_suffix("").parts[:-1]  # its subpackage
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:  # relative: from . / from ..
            base = here[: len(here) - (node.level - 1)]
            if node.module:
                targets = [[*base, *node.module.split(".")]]
            else:  # `from .. import hub_weights`: the modules named are what it imports
                targets = [[*base, alias.name] for alias in node.names]
            names |= {".".join(part for part in target if part) for target in targets}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package.__name__):
            names.add(node.module.removeprefix(package.__name__).lstrip("."))
        elif isinstance(node, ast.Import):  # import <package>.engine.runs
            dotted = [alias.name for alias in node.names]
            prefix = f"{package.__name__}."
            names |= {name.removeprefix(prefix) for name in dotted if name.startswith(prefix)}
    return names


def modules_of(folder: str) -> list[Path]:
    return sorted((PACKAGE_DIR / folder).glob("*.py"))


@pytest.mark.parametrize("folder", BLOCKS)
def test_building_blocks_import_only_their_own_folder_and_the_package_leaves(folder):
    for path in modules_of(folder):
        outside = {
            name for name in package_imports(path) if name.split(".")[0] not in (folder, *LEAVES)
        }
        assert not outside, f"{path.name} imports {outside}"


def test_only_the_machinery_and_the_task_modules_import_the_engine():
    # task.py is the scripts' view of the task (flags, loss built on rank 0 first), and
    # predictions.py its part of predict.py (a Predictor runs, a PredictionBatch comes in),
    # output_files.py the shared base of the predictions that write files: they may use the
    # machinery; the model, its blocks and the data never do.
    users = ("task.py", "predictions.py", "output_files.py")
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR)
        if "engine" in relative.parts or relative.as_posix() in users:
            continue
        engine = {name for name in package_imports(path) if name.split(".")[0] == "engine"}
        assert not engine, f"{path.relative_to(PACKAGE_DIR)} imports {engine}"


@pytest.mark.parametrize("leaf", LEAVES)
def test_the_leaves_import_nothing_of_the_package_but_the_user_errors(leaf):
    assert package_imports(PACKAGE_DIR / f"{leaf}.py") <= {"errors"}


def engine_import_graph() -> dict[str, set[str]]:
    """engine/'s modules (by file stem) -> the engine modules each imports anywhere in it: at
    the top, inside a function, or under `if TYPE_CHECKING:` (ast.walk sees them all)."""
    stems = {path.stem for path in modules_of("engine")}
    graph = {}
    for path in modules_of("engine"):
        targets = set()
        for name in package_imports(path):
            parts = name.split(".")
            if parts[0] == "engine":  # `from . import X` of a name, not a module: __init__'s
                targets.add(parts[1] if len(parts) > 1 and parts[1] in stems else "__init__")
        graph[path.stem] = targets - {path.stem}
    return graph


def test_no_engine_module_imports_one_that_imports_it_back():
    # A circle makes the import order matter and each module unreadable without the other:
    # the lower module (tracking) must not reach up into the one built on it (reporting).
    try:
        graphlib.TopologicalSorter(engine_import_graph()).prepare()
    except graphlib.CycleError as error:
        circle = " imports ".join(f"{stem}.py" for stem in reversed(error.args[1]))
        pytest.fail(f"engine/ has an import circle: {circle}")


def test_the_engine_package_offers_what_the_scripts_use_and_nothing_else():
    # engine.<name> is the scripts' view of the machinery; anything else a module needs it
    # imports from the engine module that holds it (engine.inference, engine.config, ...).
    used = {
        node.attr
        for script in SCRIPTS
        for node in ast.walk(ast.parse((PACKAGE_DIR.parent / script).read_text()))
        if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "engine"
    }
    assert set(engine.__all__) == used, (
        f"engine/__init__.py offers {sorted(set(engine.__all__) - used)} that no script uses, "
        f"and lacks {sorted(used - set(engine.__all__))}"
    )
