"""The dataset registry: one :class:`Dataset` record per dataset, everything the library needs to
know about it, registered in one place.

A record says where the samples come from (an annotation folder, a manifest CSV, or built-in
synthetic data written into a feature cache) and which adapter reads them, which presets train it
and with which video protocol, its action classes / tasks and folds and their defaults, how its
contrastive groups are formed, which score scale it trains on, what ``tpt data-info`` adds about
it, whether its samples carry step labels, and how an evaluation row names a run of it.

The built-in datasets are registered at the end of this module. A user adds one with
:func:`register` (no library file edited)::

    from data_pipelines import datasets

    def load_my_data(request):        # a datasets.LoadRequest → {"train": [Sample], "test": [...]}
        return datasets.load("manifest", request.path, check_paths=request.check_paths)

    datasets.register(datasets.Dataset(
        name="my_data", load=load_my_data, source="manifest", protocol="custom",
        preset_settings={"my_data": {"epochs": 20}}))    # then: tpt train my_data --manifest …

Pure Python: no adapter, no numpy, no TensorFlow is imported here (adapters are named by module
and loaded on first use), so the config can validate dataset names, classes and folds cheaply.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from collections.abc import Callable, Mapping
from typing import Any

SOURCES = ("annotations", "manifest", "synthetic")
# The command-line flag that names each source's file or folder.
SOURCE_FLAGS = {"annotations": "--annotations", "manifest": "--manifest"}

# AQA-7's action classes, in the annotation files' order (class id 1..6).
AQA7_CLASSES = ("diving", "gym_vault", "ski_big_air", "snowboard_big_air", "sync_diving_3m", "sync_diving_10m")
JIGSAWS_TASKS = ("suturing", "needle_passing", "knot_tying")


@dataclasses.dataclass(frozen=True)
class LoadRequest:
    """What a dataset's loader is asked for (built by the experiment from a config).

    Attributes:
        path: the annotation folder (source ``"annotations"``, and built-in data made from real
            annotations) or the manifest CSV (source ``"manifest"``); None when not needed.
        media_root: folder of the frame folders / videos; None reads annotations only.
        check_paths: fail early, naming the row, when a sample's frames are missing.
        action_class: the class / task to load (already defaulted), or None.
        fold: the cross-validation fold.
        use_difficulty: group by difficulty and regress score / difficulty.
        cache_dir: the feature cache built-in data is written to (source ``"synthetic"``).
        protocol: the video protocol (``VideoProtocol``) of the run: its clip grid.
        feature_dim: clip feature size of the run.
        score_max: the run's largest |relative score|.
    """

    path: str | None = None
    media_root: str | None = None
    check_paths: bool = True
    action_class: str | None = None
    fold: int = 0
    use_difficulty: bool = True
    cache_dir: str | None = None
    protocol: Any = None
    feature_dim: int | None = None
    score_max: float | None = None


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset, as the library sees it.

    Attributes:
        name: the ``TPTConfig.dataset`` value.
        load: ``load(LoadRequest) -> {split: [Sample, ...]}``: a callable, or ``"module:function"``
            imported on first use.
        source: ``"annotations"`` (a folder, ``--annotations``), ``"manifest"`` (a CSV,
            ``--manifest``) or ``"synthetic"`` (built-in data written into a feature cache inside
            the run folder).
        protocol: name of its video protocol in ``data_pipelines.video.protocol.PROTOCOLS``.
        title: how messages name it (default ``name``).
        presets: names of the presets that train it, the default first (``tpt data-info`` uses
            the first whose ``use_difficulty`` matches ``--no-dd``).
        preset_settings: presets this record defines itself: ``{preset: {TPTConfig field: value}}``
            applied over the preset named by the optional ``"base"`` key (default ``"custom"``),
            with ``dataset`` and ``protocol`` set to this record's. Their names join ``presets``.
            A record with neither gets one preset named after the dataset.
        classes: the action classes (or tasks) a run may choose (``--class`` / ``--task``); empty
            when the dataset has none.
        default_class: the class loaded when the config names none.
        num_folds: cross-validation folds (``fold`` in 0..num_folds-1); None: no folds.
        group_rule: how samples are grouped for exemplar choice (words, for documentation and
            ``tpt data-info``).
        needs_annotations: built-in data made from real annotation files (``--annotations``).
        to_judges: ``to_judges(score, class) -> judges' score`` when the training scores are
            normalised (a callable or ``"module:function"``); None: one scale.
        training_scale: words for the training scale when ``to_judges`` is set.
        info_groups: ``(json key, title)``: ``tpt data-info`` also counts the distinct groups per
            split under this key (FineDiving's action types); None: not counted.
        has_steps: its samples carry per-frame step labels (the parsing metric applies).
        row_name: an evaluation row's name, formatted with ``name``, ``action_class``, ``fold``
            and ``dd`` (``"DD"`` / ``"no DD"``).
        release_samples: for a dataset with a public release, ``(annotations, media_root) ->
            {split: [Sample]}``, every annotated sample of the release with its expected path
            (``tpt prepare`` checks them; a callable or ``"module:function"``); None: no release.
        frame_pattern: the file names of the release's frame folders (``"{:06d}.jpg"``), as
            ``tpt prepare --decode-to`` writes them.
        frame_regex: the frame file names the release has (a regular expression; ``prepare``
            reports others as a numbering problem).
        first_frame: the number of a folder's first frame in the release; None: any (frame
            numbers of the source broadcast).
        decoded_folder: ``(sample, output) -> folder``: where ``tpt prepare --decode-to`` writes
            the frames of a sample shipped as a video; None: the sample's own path below
            ``output``.
    """

    name: str
    load: str | Callable
    source: str
    protocol: str
    title: str = ""
    presets: tuple[str, ...] = ()
    preset_settings: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    classes: tuple[str, ...] = ()
    default_class: str | None = None
    num_folds: int | None = None
    group_rule: str = "one group (all)"
    needs_annotations: bool = False
    to_judges: str | Callable | None = None
    training_scale: str = ""
    info_groups: tuple[str, str] | None = None
    has_steps: bool = False
    row_name: str = "{name}"
    release_samples: str | Callable | None = None
    frame_pattern: str | None = None
    frame_regex: str | None = None
    first_frame: int | None = None
    decoded_folder: str | Callable | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"a dataset name must be an identifier, e.g. 'my_data'; got {self.name!r}")
        if self.source not in SOURCES:
            raise ValueError(f"dataset {self.name!r}: source must be one of {SOURCES}; got {self.source!r}")
        if not (callable(self.load) or (isinstance(self.load, str) and ":" in self.load)):
            raise ValueError(f"dataset {self.name!r}: load must be a callable or 'module:function'")
        if self.classes and self.default_class not in self.classes:
            raise ValueError(f"dataset {self.name!r}: default_class {self.default_class!r} is not one "
                             f"of its classes {self.classes}")
        if self.num_folds is not None and (isinstance(self.num_folds, bool) or self.num_folds < 1):
            raise ValueError(f"dataset {self.name!r}: num_folds must be ≥ 1 or None")
        settings = {name: dict(values) for name, values in self.preset_settings.items()}
        if not self.presets and not settings:
            settings = {self.name: {}}
        object.__setattr__(self, "preset_settings", types.MappingProxyType(settings))
        object.__setattr__(self, "presets", tuple(self.presets) + tuple(
            name for name in settings if name not in self.presets))
        object.__setattr__(self, "title", self.title or self.name)

    # ------------------------------------------------------------------ derived
    @property
    def averages_runs(self) -> bool:
        """One model per class or fold: several runs of it are averaged by ``tpt evaluate``."""
        return bool(self.classes) or (self.num_folds or 1) > 1

    @property
    def flag(self) -> str | None:
        """The flag naming its source (``--annotations`` / ``--manifest``); None for built-in data."""
        return SOURCE_FLAGS.get(self.source)

    def load_splits(self, request: LoadRequest) -> dict:
        """The samples by split: this dataset's loader called with ``request``."""
        return resolve(self.load)(request)

    def judges_scale(self) -> Callable | None:
        """``to_judges`` as a function, or None when the dataset has one scale."""
        return resolve(self.to_judges) if self.to_judges else None

    def check_class(self, action_class: str | None) -> None:
        """ValueError unless ``action_class`` is None or one of :attr:`classes`."""
        if action_class is None:
            return
        if action_class not in self.classes:
            allowed = f"one of {self.classes}" if self.classes else "None (it has no classes)"
            raise ValueError(f"TPTConfig.action_class must be {allowed} for {self.title}; "
                             f"received {action_class!r}.")

    def check_fold(self, fold: int) -> None:
        """ValueError when the dataset has folds and ``fold`` is not one of them."""
        if self.num_folds is not None and fold >= self.num_folds:
            raise ValueError(f"TPTConfig.fold must be 0..{self.num_folds - 1} for {self.title}; "
                             f"received {fold!r}.")

    def run_name(self, action_class: str | None, fold: int, use_difficulty: bool) -> str:
        """An evaluation row's name: ``aqa7 diving``, ``jigsaws suturing fold 2``, ``mtl_aqa (DD)``."""
        return self.row_name.format(name=self.name, action_class=action_class or self.default_class,
                                    fold=fold, dd="DD" if use_difficulty else "no DD")


def resolve(reference: str | Callable) -> Callable:
    """A callable itself, or ``"package.module:function"`` imported."""
    if callable(reference):
        return reference
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


_REGISTRY: dict[str, Dataset] = {}
REGISTRY: Mapping[str, Dataset] = types.MappingProxyType(_REGISTRY)  # read-only, live


def register(dataset: Dataset, *, replace: bool = False) -> Dataset:
    """Add ``dataset`` to the registry (``replace=True`` to redefine a name). Its preset names
    must not belong to another dataset. Returns it."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"register() takes a Dataset; got {type(dataset).__name__}")
    if dataset.name in _REGISTRY and not replace:
        raise ValueError(f"dataset {dataset.name!r} is already registered (pass replace=True)")
    for other in _REGISTRY.values():
        taken = set(other.presets) & set(dataset.presets)
        if other.name != dataset.name and taken:
            raise ValueError(f"dataset {dataset.name!r}: preset {sorted(taken)[0]!r} belongs to "
                             f"dataset {other.name!r}")
    _REGISTRY[dataset.name] = dataset
    return dataset


def unregister(name: str) -> None:
    """Remove a registered dataset (a no-op for an unknown name)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> Dataset:
    """The registered dataset ``name``; ValueError listing the registered ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(_REGISTRY)}") from None


def names(*sources: str) -> tuple[str, ...]:
    """Registered dataset names (of the given ``sources`` only, when given), in registration
    order: ``names("annotations", "manifest")`` are those read from files."""
    return tuple(name for name, dataset in _REGISTRY.items() if not sources or dataset.source in sources)


def releases() -> tuple[str, ...]:
    """The registered datasets with a public release layout that ``tpt prepare`` checks."""
    return tuple(name for name, dataset in _REGISTRY.items() if dataset.release_samples)


def preset_owner(preset: str) -> Dataset | None:
    """The dataset whose ``preset_settings`` define ``preset``, or None."""
    return next((d for d in _REGISTRY.values() if preset in d.preset_settings), None)


# ---------------------------------------------------------------------------------------------
# The built-in datasets
# ---------------------------------------------------------------------------------------------
_ADAPTERS = "data_pipelines.datasets"
for _record in (
    Dataset(name="mtl_aqa", title="MTL-AQA", load=f"{_ADAPTERS}.mtl_aqa:from_request",
            source="annotations", protocol="mtl_aqa", presets=("mtl_aqa_dd", "mtl_aqa_nodd"),
            group_rule="the difficulty degree with DD (e.g. '3.2'), else one group (all)",
            row_name="{name} ({dd})", release_samples=f"{_ADAPTERS}.mtl_aqa:release_samples",
            frame_pattern="{:06d}.jpg", frame_regex=r"\d+\.jpg"),
    Dataset(name="aqa7", title="AQA-7", load=f"{_ADAPTERS}.aqa7:from_request", source="annotations",
            protocol="aqa7", presets=("aqa7",), classes=AQA7_CLASSES, default_class="diving",
            group_rule="the action class", to_judges=f"{_ADAPTERS}.aqa7:denormalise_score",
            training_scale="per-class normalised 0–100", row_name="{name} {action_class}",
            release_samples=f"{_ADAPTERS}.aqa7:release_samples", frame_pattern="img_{:05d}.jpg",
            frame_regex=r"img_\d{5}\.jpg", first_frame=1),
    Dataset(name="jigsaws", title="JIGSAWS", load=f"{_ADAPTERS}.jigsaws:from_request",
            source="annotations", protocol="jigsaws", presets=("jigsaws",), classes=JIGSAWS_TASKS,
            default_class="suturing", num_folds=4, row_name="{name} {action_class} fold {fold}",
            release_samples=f"{_ADAPTERS}.jigsaws:release_samples", frame_pattern="img_{:05d}.jpg",
            frame_regex=r"img_\d{5}\.jpg", first_frame=1,
            decoded_folder=f"{_ADAPTERS}.jigsaws:decoded_folder"),
    Dataset(name="finediving", title="FineDiving", load=f"{_ADAPTERS}.finediving:from_request",
            source="annotations", protocol="finediving", presets=("finediving",),
            group_rule="the action type (dive number, e.g. '407c')", has_steps=True,
            info_groups=("action_types", "action types (dive numbers, the groups)"),
            release_samples=f"{_ADAPTERS}.finediving:release_samples", frame_pattern="{:05d}.jpg",
            frame_regex=r"\d{5,}\.jpg"),  # {frame:05d}: at least 5 digits
    Dataset(name="custom", title="a manifest", load=f"{_ADAPTERS}.manifest:from_request",
            source="manifest", protocol="custom", presets=("custom",),
            group_rule="the manifest's group column (default all)"),
    Dataset(name="synthetic", title="synthetic data", load="data_pipelines.synthetic.features:from_request",
            source="synthetic", protocol="custom", presets=("synthetic",),
            group_rule="the difficulty (as MTL-AQA with DD)"),
    Dataset(name="synthetic_finediving", title="synthetic FineDiving",
            load="data_pipelines.synthetic.finediving:from_request", source="synthetic",
            protocol="finediving", presets=("synthetic_finediving",), needs_annotations=True,
            group_rule="the action type of the real dive", has_steps=True),
):
    register(_record)
del _record
