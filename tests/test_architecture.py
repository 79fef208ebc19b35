"""The house rules of the import graph, read from the source with ``ast`` (ARCHITECTURE.md draws it).

Rooms, lowest first; a module may import its own room and lower rooms, never a higher one:

====  ==========================================  =============================================
rank  room                                        holds
====  ==========================================  =============================================
0     ``data_pipelines``                          files → samples → clips → tf.data (no model)
1     ``tpt_keras.config``                        settings and presets
2     ``tpt_keras.runtime``                       devices, strategies, precision, run folders
3     ``tpt_keras.ops``                           pure maths: losses, intervals, metrics
4     ``tpt_keras.visualize``, ``tpt_keras.report``  pictures (matplotlib); HTML report pages
5     ``tpt_keras.layers``                        Keras layers of the method
6     ``tpt_keras.models``                        I3D, TPTModel, optimizer, loader
7     ``tpt_keras.experiment``                    training, bank, evaluation
8     ``tpt_keras.serving``, ``tpt_keras.tuning``    SavedModel and scoring; Keras Tuner
9     ``tpt_keras.tools``                         demo, parity check, argument types
10    ``tpt_keras.cli``                           the ``tpt`` command line
11    ``tpt_keras`` (the package's public names)
====  ==========================================  =============================================

Besides the ranks:

* the model side (ops, layers, models) never imports ``data_pipelines`` — with one declared
  exception: the I3D checkpoint is a pickle, read with the data layer's restricted unpickler;
* ``tpt_keras.experiment`` is the only room that joins the pipelines and the model: anywhere else,
  a module that imports ``tpt_keras.layers`` or ``tpt_keras.models`` imports no ``data_pipelines``;
* ``tpt_keras.config`` takes from the data layer only the protocol and the dataset constants (no
  adapter, no TensorFlow);
* ``keras_tuner`` is imported by ``tpt_keras.tuning`` alone.

Imports inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("data_pipelines", "tpt_keras")
RANKS = {
    "data_pipelines": 0,
    "tpt_keras.config": 1,
    "tpt_keras.runtime": 2,
    "tpt_keras.ops": 3,
    "tpt_keras.visualize": 4,
    "tpt_keras.report": 4,
    "tpt_keras.layers": 5,
    "tpt_keras.models": 6,
    "tpt_keras.experiment": 7,
    "tpt_keras.serving": 8,
    "tpt_keras.tuning": 8,
    "tpt_keras.tools": 9,
    "tpt_keras.cli": 10,
    "tpt_keras": 11,
}
MODEL_SIDE = ("tpt_keras.ops", "tpt_keras.layers", "tpt_keras.models")
MODEL_CODE = ("tpt_keras.layers", "tpt_keras.models")
JOIN = "tpt_keras.experiment"
CONFIG_MAY_IMPORT = ("data_pipelines.video.protocol", "data_pipelines.datasets")  # exactly these
DECLARED = {  # (importer, imported): why
    ("tpt_keras.models.i3d_weights", "data_pipelines.io.safe_pickle"):
        "the Kinetics-400 checkpoint is a pickle, read with the restricted unpickler",
}


def room(module: str) -> str:
    """The longest room prefix of a dotted module name."""
    matches = [name for name in RANKS if module == name or module.startswith(name + ".")]
    return max(matches, key=len)


def within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def import_graph(root: pathlib.Path) -> set[tuple[str, str]]:
    """Every (importer, imported module) among the project's packages under ``root``; ``from X
    import name`` counts as an import of ``X.name`` when that is a module, else of ``X``."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
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
                         if target.split(".")[0] in PACKAGES + ("keras_tuner",))
    return edges


def violations(edges) -> list[str]:
    """The broken rules, one line each (empty when the house is in order)."""
    found = []
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
        if RANKS[target] > RANKS[source] or (RANKS[target] == RANKS[source] and source != target):
            found.append(f"{importer} → {imported}: {source} (rank {RANKS[source]}) may not import "
                         f"{target} (rank {RANKS[target]})")
        if within(importer, MODEL_SIDE) and within(imported, ("data_pipelines",)):
            found.append(f"{importer} → {imported}: the model side imports no data pipeline")
        if importer == "tpt_keras.config" and within(imported, ("data_pipelines",)) and (
                imported not in CONFIG_MAY_IMPORT):
            found.append(f"{importer} → {imported}: config takes only the protocol and dataset "
                         "constants from the data layer")
    for importer, imported in by_module.items():
        if within(importer, (JOIN, "data_pipelines")):
            continue
        data = sorted(m for m in imported if within(m, ("data_pipelines",))
                      and (importer, m) not in DECLARED)
        model = sorted(m for m in imported if within(m, MODEL_CODE))
        if data and model:
            found.append(f"{importer} joins the pipelines ({data[0]}) and the model ({model[0]}): "
                         f"only {JOIN} may")
    return found


def test_the_import_graph_keeps_the_house_rules():
    assert violations(import_graph(REPO)) == []


def test_every_module_lives_in_a_room():
    for importer, _ in import_graph(REPO):
        assert room(importer) in RANKS


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("files, expected", [
    # a back-edge: the data layer importing the model
    ({"data_pipelines/reader.py": "from tpt_keras.models import tpt_model\n"},
     "data_pipelines.reader → tpt_keras.models.tpt_model: data_pipelines (rank 0) may not import "
     "tpt_keras.models (rank 6)"),
    # a lazy back-edge: the model importing the training code inside a function
    ({"tpt_keras/models/tpt_model.py": "def f():\n    from tpt_keras.experiment import distribute\n"},
     "tpt_keras.models.tpt_model → tpt_keras.experiment.distribute: tpt_keras.models (rank 6) may "
     "not import tpt_keras.experiment (rank 7)"),
    # a relative import that resolves to the model side
    ({"tpt_keras/serving/export.py": "from ..models import tpt_model\nfrom data_pipelines.video import video_ops\n"},
     "tpt_keras.serving.export joins the pipelines (data_pipelines.video.video_ops) and the model "
     "(tpt_keras.models.tpt_model): only tpt_keras.experiment may"),
    ({"tpt_keras/models/tpt_model.py": "import keras_tuner\n"},
     "tpt_keras.models.tpt_model imports keras_tuner (only tpt_keras.tuning may)"),
    ({"tpt_keras/config.py": "from data_pipelines.datasets import aqa7\n"},
     "tpt_keras.config → data_pipelines.datasets.aqa7: config takes only the protocol and dataset "
     "constants from the data layer"),
])
def test_a_deliberate_back_edge_is_caught(tmp_path, files, expected):
    """The checker on a small tree with one broken rule: it names the edge."""
    _write(tmp_path, {
        "data_pipelines/__init__.py": "", "data_pipelines/datasets/__init__.py": "",
        "data_pipelines/datasets/aqa7.py": "", "data_pipelines/video/__init__.py": "",
        "data_pipelines/video/video_ops.py": "", "data_pipelines/reader.py": "",
        "tpt_keras/__init__.py": "", "tpt_keras/config.py": "", "tpt_keras/models/__init__.py": "",
        "tpt_keras/models/tpt_model.py": "", "tpt_keras/experiment/__init__.py": "",
        "tpt_keras/experiment/distribute.py": "", "tpt_keras/serving/__init__.py": "",
        "tpt_keras/serving/export.py": "",
    })
    assert violations(import_graph(tmp_path)) == []
    _write(tmp_path, files)
    assert violations(import_graph(tmp_path)) == [expected]
