"""Each method component's and metric's name is written once, by the object that owns
it (#25): a regularizer class (`GlobalError.name`), `VANILLA`, a task's `Metric`. The
rest of the package refers to the object, so renaming or adding one touches one place."""

import ast
from pathlib import Path

import nderegs
from nderegs.config.regularization import COMPONENTS, RegularizationConfig
from nderegs.regularization import VANILLA
from nderegs.tasks import AbstractTask, Metric

PACKAGE = Path(nderegs.__file__).parent

#: The same words naming something else: (file, line's text) -> what it names.
OTHER_MEANINGS = {
    ("regularization/method.py", 'aux["stiffness"] = h.stiffness'): "the heuristic h.stiffness",
    ("report/sweep.py", '"error",'): "sweep.csv's column of a failed run's error",
    ("report/sweep.py", '"error": trial.result.error or "",'): "the same column",
}


def _owners() -> dict[str, set[str]]:
    """name -> where it may be written: the owning class's name, or the module-level
    constant (`VANILLA`, `ACCURACY`, ...) that holds it."""
    owners: dict[str, set[str]] = {}
    for component in COMPONENTS:
        # The class that sets `name` (and its coefficient keys), e.g. GlobalError.
        owners.setdefault(component.name, set()).add(component.__name__)
    owners.setdefault(VANILLA, set()).add("VANILLA")
    for name in _shipped_metric_names():
        owners.setdefault(name, set()).add("Metric(")
    return owners


def _shipped_metric_names() -> set[str]:
    """The metrics of the package's own tasks (not of toy tasks other tests define)."""
    names, classes = set(), [AbstractTask]
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        metric = vars(cls).get("metric")
        if isinstance(metric, Metric) and cls.__module__.startswith("nderegs."):
            names.add(metric.name)
    return names


def _literals(path: Path, names: set[str]):
    """(line number, value, enclosing class or assigned constant) of each string constant
    in `names` outside docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }

    def visit(node, owner):
        if isinstance(node, ast.ClassDef):
            owner = node.name
        elif isinstance(node, ast.Assign) and owner is None:
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            owner = targets[0] if targets else None
            if isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "Metric":
                owner = "Metric("
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in names
            and id(node) not in docstrings
        ):
            yield node.lineno, node.value, owner
        for child in ast.iter_child_nodes(node):
            yield from visit(child, owner)

    yield from visit(tree, None)


def test_each_component_and_metric_name_is_written_only_by_its_owner():
    owners = _owners()
    assert {"error", "rnode", "vanilla", "accuracy", "nll"} <= set(owners)  # the scan sees them
    strays = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        where = path.relative_to(PACKAGE).as_posix()
        for lineno, value, owner in _literals(path, set(owners)):
            if owner in owners[value] or (where, lines[lineno - 1].strip()) in OTHER_MEANINGS:
                continue
            strays.append(f"{where}:{lineno}: {value!r} ({lines[lineno - 1].strip()})")
    assert not strays, "names written outside their owners:\n" + "\n".join(strays)


def test_the_keys_a_component_reads_are_keys_of_the_regularization_section():
    """`coefficient_keys` name fields of `RegularizationConfig` (a typo would otherwise
    surface as an AttributeError when a config is built)."""
    fields = set(RegularizationConfig.model_fields)
    for component in COMPONENTS:
        for argument, keys in component.coefficient_keys.items():
            assert keys and set(keys) <= fields, (component.__name__, argument, keys)
