"""The house rules of the import graph, read from the source with ``ast`` (ARCHITECTURE.md draws it).

Every module lives in a room named in ``RANKS`` (lowest first); a module may import its own room
and lower rooms, never a higher one, and two different rooms of the same rank do not import each
other. The two packages are cut finer than their subpackages: ``data_pipelines`` into samples, io,
video, datasets, tf.data and synthetic data; ``tpt_keras.experiment`` module by module.

Besides the ranks:

* no cycle anywhere: not between rooms, not between two modules of one room (a package's
  ``__init__`` re-exporting a module that imports the package back is a cycle too);
* a module in no named room fails: a new subpackage or a new ``experiment`` module must be given
  its rank here (``PACKAGE_ROOMS`` are the packages whose members must each be named);
* the model side (ops, layers, models) never imports ``data_pipelines`` — with one declared
  exception: the I3D checkpoint is a pickle, read with the data layer's restricted unpickler;
* ``tpt_keras.experiment`` is the only room that joins the pipelines and the model: anywhere else,
  a module that imports ``tpt_keras.layers`` or ``tpt_keras.models`` imports no ``data_pipelines``;
* ``tpt_keras.config`` takes from the data layer only the protocol and the dataset registry (no
  adapter, no TensorFlow);
* ``keras_tuner`` is imported by ``tpt_keras.tuning`` alone.

Imports inside functions count: a lazy import is still a dependency. The checker proves itself on
small planted trees (``test_a_planted_defect_is_caught``) and on the real graph's size.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("data_pipelines", "tpt_keras")
RANKS = {
    # data_pipelines: files → samples → clips → tf.data, no model
    "data_pipelines.samples": 0,
    "data_pipelines.io": 1,
    "data_pipelines.video": 2,
    "data_pipelines.datasets": 3,
    "data_pipelines.tfdata": 4,
    "data_pipelines.synthetic": 5,
    "data_pipelines": 6,
    # tpt_keras: the model and everything built on it
    "tpt_keras.config": 7,
    "tpt_keras.runtime": 8,
    "tpt_keras.ops": 9,
    "tpt_keras.visualize": 10,
    "tpt_keras.report": 10,
    "tpt_keras.layers": 11,
    "tpt_keras.models": 12,
    # experiment, the join, module by module
    "tpt_keras.experiment.score_scale": 13,
    "tpt_keras.experiment.report": 13,
    "tpt_keras.experiment.exemplar_bank": 13,
    "tpt_keras.experiment.callbacks": 13,
    "tpt_keras.experiment.prepare": 13,
    "tpt_keras.experiment.data": 14,
    "tpt_keras.experiment.training": 15,
    "tpt_keras.experiment.evaluation": 16,
    "tpt_keras.experiment.launch": 17,
    "tpt_keras.experiment.reproduce": 18,
    "tpt_keras.experiment": 19,
    "tpt_keras.serving": 20,
    "tpt_keras.tuning": 20,
    "tpt_keras.tools": 21,
    "tpt_keras.cli": 22,
    "tpt_keras": 23,
}
# Packages whose every member (module or subpackage) must be a room of its own in RANKS: only the
# package's own __init__ belongs to the package's room.
PACKAGE_ROOMS = ("data_pipelines", "tpt_keras", "tpt_keras.experiment")
MODEL_SIDE = ("tpt_keras.ops", "tpt_keras.layers", "tpt_keras.models")
MODEL_CODE = ("tpt_keras.layers", "tpt_keras.models")
JOIN = "tpt_keras.experiment"
CONFIG_MAY_IMPORT = ("data_pipelines.video.protocol", "data_pipelines.datasets",
                     "data_pipelines.datasets.registry")
DECLARED = {  # (importer, imported): why
    ("tpt_keras.models.i3d_weights", "data_pipelines.io.safe_pickle"):
        "the Kinetics-400 checkpoint is a pickle, read with the restricted unpickler",
}
# The real graph is far larger than this; a checker that reads nothing passes every rule.
MIN_EDGES = 150
KNOWN_EDGES = (
    ("tpt_keras.experiment.data", "data_pipelines.tfdata.reader"),
    ("data_pipelines.tfdata.reader", "data_pipelines.video.video_ops"),
    ("tpt_keras.models.tpt_model", "tpt_keras.layers.part_encoders"),
)


def room(module: str) -> str | None:
    """The room of a dotted module name: its longest prefix in RANKS, or None when it lives in
    no named room (a member of a PACKAGE_ROOMS package that is not listed)."""
    matches = [name for name in RANKS if module == name or module.startswith(name + ".")]
    if not matches:
        return None
    best = max(matches, key=len)
    if best in PACKAGE_ROOMS and module != best:
        return None
    return best


def within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def modules_under(root: pathlib.Path) -> dict[str, tuple[pathlib.Path, bool]]:
    """Every module of the project's packages under ``root``: name → (path, is a package)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_graph(root: pathlib.Path) -> set[tuple[str, str]]:
    """Every (importer, imported module) among the project's packages under ``root``; ``from X
    import name`` counts as an import of ``X.name`` when that is a module, else of ``X``."""
    modules = modules_under(root)
    edges = set()
    for name, (path, is_package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = name.split(".") if is_package else name.split(".")[:-1]
                    parent = parent[: len(parent) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            edges.update((name, target) for target in targets
                         if target.split(".")[0] in PACKAGES + ("keras_tuner",)
                         and target != name)
    return edges


def cycles(edges) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for importer, imported in edges:
        graph.setdefault(importer, set()).add(imported)
        graph.setdefault(imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node):  # recursive: the graph has a few hundred modules
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for following in sorted(graph[node]):
            if following not in index:
                visit(following)
                low[node] = min(low[node], low[following])
            elif following in on_stack:
                low[node] = min(low[node], index[following])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def violations(edges, modules=()) -> list[str]:
    """The broken rules, one line each (empty when the house is in order)."""
    found = [f"{module} lives in no room: give it a rank in tests/test_architecture.py RANKS "
             "(and ARCHITECTURE.md)" for module in sorted(modules) if room(module) is None]
    by_module: dict[str, set[str]] = {}
    for importer, imported in sorted(edges):
        by_module.setdefault(importer, set()).add(imported)
        if imported.split(".")[0] == "keras_tuner":
            if not within(importer, ("tpt_keras.tuning",)):
                found.append(f"{importer} imports keras_tuner (only tpt_keras.tuning may)")
            continue
        if (importer, imported) in DECLARED:
            continue
        source, target = room(importer), room(imported)
        if source is None or target is None:
            continue  # reported above
        if RANKS[target] > RANKS[source] or (RANKS[target] == RANKS[source] and source != target):
            found.append(f"{importer} → {imported}: {source} (rank {RANKS[source]}) may not import "
                         f"{target} (rank {RANKS[target]})")
        if within(importer, MODEL_SIDE) and within(imported, ("data_pipelines",)):
            found.append(f"{importer} → {imported}: the model side imports no data pipeline")
        if importer == "tpt_keras.config" and within(imported, ("data_pipelines",)) and (
                imported not in CONFIG_MAY_IMPORT):
            found.append(f"{importer} → {imported}: config takes only the protocol and the dataset "
                         "registry from the data layer")
    for importer, imported in by_module.items():
        if within(importer, (JOIN, "data_pipelines")):
            continue
        data = sorted(m for m in imported if within(m, ("data_pipelines",))
                      and (importer, m) not in DECLARED)
        model = sorted(m for m in imported if within(m, MODEL_CODE))
        if data and model:
            found.append(f"{importer} joins the pipelines ({data[0]}) and the model ({model[0]}): "
                         f"only {JOIN} may")
    found += [f"import cycle: {' ↔ '.join(component)}" for component in cycles(
        (a, b) for a, b in edges if b.split(".")[0] in PACKAGES)]
    return found


def test_the_import_graph_keeps_the_house_rules():
    edges = import_graph(REPO)
    assert violations(edges, modules_under(REPO)) == []


def test_the_checker_reads_the_real_graph():
    """A reader that found nothing would pass every rule: the real graph is large and holds
    edges known from the source."""
    edges = import_graph(REPO)
    assert len(edges) >= MIN_EDGES
    for edge in KNOWN_EDGES:
        assert edge in edges
    assert len(modules_under(REPO)) >= 60


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


PLANTED_TREE = {
    "data_pipelines/__init__.py": "", "data_pipelines/samples.py": "",
    "data_pipelines/datasets/__init__.py": "",
    "data_pipelines/datasets/aqa7.py": "", "data_pipelines/video/__init__.py": "",
    "data_pipelines/video/video_ops.py": "", "data_pipelines/tfdata/__init__.py": "",
    "data_pipelines/tfdata/reader.py": "",
    "tpt_keras/__init__.py": "", "tpt_keras/config.py": "", "tpt_keras/models/__init__.py": "",
    "tpt_keras/models/tpt_model.py": "", "tpt_keras/experiment/__init__.py": "",
    "tpt_keras/experiment/data.py": "", "tpt_keras/experiment/training.py": "",
    "tpt_keras/runtime/__init__.py": "", "tpt_keras/runtime/distribute.py": "",
    "tpt_keras/serving/__init__.py": "", "tpt_keras/serving/export.py": "",
}


@pytest.mark.parametrize("files, expected", [
    # a back-edge: the data layer importing the model
    ({"data_pipelines/tfdata/reader.py": "from tpt_keras.models import tpt_model\n"},
     ["data_pipelines.tfdata.reader → tpt_keras.models.tpt_model: data_pipelines.tfdata (rank 4) "
      "may not import tpt_keras.models (rank 12)"]),
    # a back-edge inside the data layer: video ops reading tf.data
    ({"data_pipelines/video/video_ops.py": "from data_pipelines.tfdata import reader\n"},
     ["data_pipelines.video.video_ops → data_pipelines.tfdata.reader: data_pipelines.video "
      "(rank 2) may not import data_pipelines.tfdata (rank 4)"]),
    # a lazy back-edge: the model importing the training code inside a function
    ({"tpt_keras/models/tpt_model.py": "def f():\n    from tpt_keras.experiment import training\n"},
     ["tpt_keras.models.tpt_model → tpt_keras.experiment.training: tpt_keras.models (rank 12) may "
      "not import tpt_keras.experiment.training (rank 15)"]),
    # a back-edge inside experiment: the data of a run importing the training loop
    ({"tpt_keras/experiment/data.py": "from tpt_keras.experiment import training\n"},
     ["tpt_keras.experiment.data → tpt_keras.experiment.training: tpt_keras.experiment.data "
      "(rank 14) may not import tpt_keras.experiment.training (rank 15)"]),
    # a relative import that resolves to the model side
    ({"tpt_keras/serving/export.py": "from ..models import tpt_model\nfrom data_pipelines.video import video_ops\n"},
     ["tpt_keras.serving.export joins the pipelines (data_pipelines.video.video_ops) and the model "
      "(tpt_keras.models.tpt_model): only tpt_keras.experiment may"]),
    ({"tpt_keras/models/tpt_model.py": "import keras_tuner\n"},
     ["tpt_keras.models.tpt_model imports keras_tuner (only tpt_keras.tuning may)"]),
    ({"tpt_keras/config.py": "from data_pipelines.datasets import aqa7\n"},
     ["tpt_keras.config → data_pipelines.datasets.aqa7: config takes only the protocol and the "
      "dataset registry from the data layer"]),
    # a cycle inside one room: a package re-exporting a module that imports the package back
    ({"data_pipelines/datasets/__init__.py": "from data_pipelines.datasets import aqa7\n",
      "data_pipelines/datasets/aqa7.py": "import data_pipelines.datasets\n"},
     ["import cycle: data_pipelines.datasets ↔ data_pipelines.datasets.aqa7"]),
    # a new subpackage nobody ranked
    ({"tpt_keras/newroom/__init__.py": "", "tpt_keras/newroom/thing.py": ""},
     ["tpt_keras.newroom lives in no room: give it a rank in tests/test_architecture.py RANKS "
      "(and ARCHITECTURE.md)",
      "tpt_keras.newroom.thing lives in no room: give it a rank in tests/test_architecture.py "
      "RANKS (and ARCHITECTURE.md)"]),
])
def test_a_planted_defect_is_caught(tmp_path, files, expected):
    """The checker on a small tree with one broken rule: it names exactly that."""
    _write(tmp_path, PLANTED_TREE)
    assert violations(import_graph(tmp_path), modules_under(tmp_path)) == []
    _write(tmp_path, files)
    assert violations(import_graph(tmp_path), modules_under(tmp_path)) == expected
