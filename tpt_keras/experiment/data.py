"""The data of an experiment: samples by split (annotation files, a manifest or synthetic),
cached I3D features, and the tf.data pipelines of a run (training pairs, evaluation batches).

Everything here is TensorFlow-free at import; the pipelines import it when they are built.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from data_pipelines import datasets
from data_pipelines.io.feature_cache import FeatureCache
from data_pipelines.samples import Sample
from data_pipelines.synthetic import features as synthetic_features, finediving as synthetic_finediving
from tpt_keras.config import TPTConfig
from tpt_keras.runtime import run_folder

BACKBONE_NAME = "i3d_kinetics400_mixed5c"


def _request(config: TPTConfig, path: str | None, media_root: str | None, check_paths: bool,
             cache_dir: str | None = None) -> datasets.LoadRequest:
    """The :class:`data_pipelines.datasets.LoadRequest` of ``config`` (its class defaulted by the
    registry). Paths are checked only where they are known: with a media root, or a manifest's
    own paths."""
    dataset = datasets.get(config.dataset)
    return datasets.LoadRequest(
        path=path, media_root=media_root,
        check_paths=check_paths and (media_root is not None or dataset.source == "manifest"),
        action_class=config.action_class or dataset.default_class, fold=config.fold,
        use_difficulty=config.use_difficulty, cache_dir=cache_dir, protocol=config.protocol,
        feature_dim=config.feature_dim, score_max=config.score_max)


def load_splits(config: TPTConfig, annotations: str, media_root: str | None = None,
                check_paths: bool = True) -> dict[str, list[Sample]]:
    """Samples by split for the config's dataset, read by its registered loader
    (:mod:`data_pipelines.datasets.registry`).

    Args:
        config: dataset, use_difficulty, action_class (AQA-7 class / JIGSAWS task), fold.
        annotations: annotation folder (MTL-AQA, AQA-7, JIGSAWS, FineDiving) or the manifest CSV (custom).
        media_root: frame folders / videos (not used by a manifest, whose paths are its own).
        check_paths: fail early, naming the row, when a sample's frames are missing.
    """
    dataset = datasets.get(config.dataset)
    if dataset.source == "synthetic":
        raise ValueError(f"dataset {config.dataset!r} has no annotation files; for built-in data "
                         "use run_splits() with a feature cache folder.")
    return dataset.load_splits(_request(config, annotations, media_root, check_paths))


def build_backbone(config: TPTConfig, weights="kinetics400", inference: bool = False):
    """Inception-I3D up to the pooled Mixed_5c feature, BN statistics frozen (SPEC §2).

    ``inference``: the faster network with the batch norm folded into the convolutions
    (feature extraction, serving); not trainable the same way, so never for fine-tuning."""
    from tpt_keras.models.i3d import InceptionI3D

    return InceptionI3D(include_top=False, weights=weights, freeze_bn_statistics=True,
                        folded_batch_norm=inference, name="backbone")


def default_features_dir(config: TPTConfig, output: str, features_dir: str | None = None) -> str | None:
    """``features_dir`` if given; for built-in synthetic data a cache inside the run folder
    ``output``; else None (the run reads frames)."""
    if features_dir:
        return features_dir
    if datasets.get(config.dataset).source == "synthetic":
        return os.path.join(output, "synthetic_features")
    return None


def run_splits(config: TPTConfig, *, annotations: str | None = None, manifest: str | None = None,
               media_root: str | None = None, features_dir: str | None = None,
               check_paths: bool = True) -> dict[str, list[Sample]]:
    """Samples by split for a run of ``config``, from whichever source its dataset reads: the
    annotation folder, a manifest CSV, or built-in synthetic data written to ``features_dir``.

    Raises ValueError naming the missing argument (as its command-line flag)."""
    dataset = datasets.get(config.dataset)
    given = {"--annotations": annotations, "--manifest": manifest}
    needed = [dataset.flag] if dataset.flag else []
    if dataset.needs_annotations:
        needed.append("--annotations")
    missing = [flag for flag in needed if not given[flag]]
    if dataset.source == "synthetic" and features_dir is None:
        missing.append("a feature cache folder (--features)")
    if missing:
        raise ValueError(f"the {config.dataset} dataset needs {' and '.join(missing)}")
    path = manifest if dataset.source == "manifest" else annotations
    if dataset.source != "synthetic":
        return load_splits(config, path, media_root, check_paths=check_paths)
    return dataset.load_splits(_request(config, path, None, False, cache_dir=features_dir))


def synthetic_splits(config: TPTConfig, cache_dir: str, num_train: int = synthetic_features.NUM_TRAIN,
                     num_test: int = synthetic_features.NUM_TEST, seed: int = 0,
                     num_phases: int = synthetic_features.NUM_PHASES) -> dict[str, list[Sample]]:
    """Built-in synthetic clip features (``data_pipelines.synthetic.features``) written to a
    feature cache, returned as samples — so synthetic runs use the same path as real ones.

    The data (``num_phases`` phases, ``seed``) does not depend on the model's settings, so a
    tuned K trains on the same videos; a cache made with other data settings is refused."""
    return synthetic_features.write_synthetic_cache(
        cache_dir, num_train, num_test, feature_dim=config.feature_dim,
        num_clips=config.num_clips, num_phases=num_phases, seed=seed,
        score_max=config.score_max, use_difficulty=config.use_difficulty)


def synthetic_finediving_splits(config: TPTConfig, annotations: str, cache_dir: str,
                                num_train: int | None = synthetic_finediving.NUM_TRAIN,
                                num_test: int | None = synthetic_finediving.NUM_TEST,
                                seed: int = 0) -> dict[str, list[Sample]]:
    """Synthetic clip features with the step timing, scores, difficulties and action types of
    real FineDiving dives (:mod:`data_pipelines.synthetic.finediving`; ``annotations`` the
    FineDiving folder), written to a feature cache and returned as samples with their steps: the
    first ``num_train`` training dives, the first ``num_test`` test dives of their action types."""
    return synthetic_finediving.write_from_annotations(
        cache_dir, annotations, config.protocol, config.feature_dim, num_train=num_train,
        num_test=num_test, seed=seed)


def save_samples(splits: dict[str, list[Sample]], path: str) -> None:
    """Write the samples by split to ``path`` (JSON, atomically)."""
    run_folder.write_json(path, {name: [dataclasses.asdict(s) for s in items]
                                 for name, items in splits.items()})


def load_samples(path: str) -> dict[str, list[Sample]]:
    """The samples written by :func:`save_samples`; a damaged file is named."""
    raw = run_folder.read_json(path)
    try:
        return {name: [Sample(**item) for item in items] for name, items in raw.items()}
    except (TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a samples file ({error})") from None


def validation_split(splits: dict[str, list[Sample]]) -> str:
    """The split that selects the best checkpoint: ``val`` if present, else ``test`` (what the
    original code does: it reports the best test ρ over epochs). It needs at least 2 videos:
    Spearman's ρ of one video is undefined."""
    for name in ("val", "test"):
        if splits.get(name):
            if len(splits[name]) < 2:
                raise ValueError(f"the {name!r} split has {len(splits[name])} video; Spearman's ρ "
                                 "needs at least 2 to select and report a model: add videos to it")
            return name
    raise ValueError(f"no 'val' or 'test' samples to validate on; splits: {sorted(splits)}")


def extract_features(config: TPTConfig, samples, cache_dir: str, weights="kinetics400",
                     batch_size: int = 1, skip_bad: bool = False, progress: bool = True):
    """Run the Kinetics I3D over every sample's clips (test transform) into a feature cache.

    Resumable: keys already in the cache are skipped. A video that cannot be decoded raises an
    error naming it, or with ``skip_bad`` is reported and skipped.

    Returns:
        (cache, :class:`data_pipelines.io.feature_cache.ExtractionReport`).
    """
    from data_pipelines.io import feature_cache as features
    from data_pipelines.tfdata import reader
    from tpt_keras.models import i3d

    cache = FeatureCache(cache_dir, feature_dim=i3d.FEATURE_DIM, num_clips=config.num_clips,
                         backbone=BACKBONE_NAME, extra={"protocol": config.protocol.to_dict()},
                         create=True)
    backbone = build_backbone(config, weights, inference=True)

    def extract_fn(clips):
        return np.asarray(i3d.clip_features(backbone, clips))

    report = features.extract_to_cache(samples, cache, extract_fn,
                                       reader.make_clips_fn(config.protocol, role="query"),
                                       skip_bad=skip_bad, progress=progress, batch_size=batch_size)
    return cache, report


FEATURE_SOURCES = ("i3d", "synthetic", "precomputed")


def features_source(cache_dir: str | None) -> str | None:
    """Where the features of the cache ``cache_dir`` come from: ``"i3d"`` (extracted by
    :func:`extract_features`: the video protocol is recorded), ``"synthetic"`` (built-in data) or
    ``"precomputed"`` (written elsewhere with :class:`FeatureCache`, no video protocol recorded:
    a model trained on them has no frame backbone); None without a cache."""
    if not cache_dir:
        return None
    metadata = FeatureCache(cache_dir).metadata
    if "protocol" in metadata:
        return "i3d"
    if metadata.get("backbone") in datasets.names("synthetic"):
        return "synthetic"
    return "precomputed"


def config_for_features(config: TPTConfig, features_dir: str | None) -> tuple[TPTConfig, str | None]:
    """``config`` for training on the feature cache ``features_dir``, and a one-line notice when
    it changed. Precomputed features (:func:`features_source`) under a config with the I3D
    backbone imply a run without a frame backbone: ``backbone="none"``, and the feature size and
    clip count come from the cache (a user's 2048-d or 768-d features work as they are). Any
    other cache leaves the config as it is (I3D features are checked against its protocol)."""
    if (not features_dir or config.backbone == "none"
            or datasets.get(config.dataset).source == "synthetic"
            or features_source(features_dir) != "precomputed"):
        return config, None
    cache = FeatureCache(features_dir)
    changes = {"backbone": "none", "feature_dim": cache.feature_dim}
    if cache.num_clips != config.num_clips:
        changes["protocol.num_clips"] = cache.num_clips
    made_by = cache.metadata.get("backbone")
    notice = (f"{features_dir}: precomputed features ({cache.num_clips} clips × {cache.feature_dim}"
              f"{f', made by {made_by}' if made_by else ''}; no video protocol recorded): the model "
              "trains on them with no frame backbone (backbone=none), so it scores features, not videos")
    return config.replace(**changes), notice


def feature_cache_backbone(cache_dir: str) -> str | None:
    """The backbone name recorded in a feature cache's metadata."""
    return FeatureCache(cache_dir).metadata.get("backbone")


def open_feature_cache(config: TPTConfig, features_dir: str) -> FeatureCache:
    """The feature cache ``features_dir`` opened read-only for ``config``: refused, naming the
    differing fields, when its feature size, clip count or (for I3D features) the video protocol it
    was extracted with differ from the config's — a model must be trained, evaluated and exported
    with the preprocessing its features came from."""
    extra = {"protocol": config.protocol.to_dict()} if config.backbone == "i3d" else None
    return FeatureCache(features_dir, feature_dim=config.feature_dim, num_clips=config.num_clips,
                        extra=extra)


def steps_per_epoch(config: TPTConfig, num_train: int) -> int:
    """Batches of ``config.batch_size`` pairs that make one epoch over ``num_train`` samples
    (the last one partial with ``config.keep_last_batch``)."""
    from data_pipelines.tfdata import reader

    return reader.steps_per_epoch(num_train, config.batch_size, config.keep_last_batch)


def pair_dataset(config: TPTConfig, train_samples, features_dir: str | None, *, first_epoch: int = 0,
                 batch_size: int | None = None, input_context=None, skip_bad: bool = False):
    """Training pairs (infinite; ``steps_per_epoch`` batches make an epoch)."""
    from data_pipelines.tfdata import reader

    batch_size = batch_size or config.batch_size
    boundaries = training_step_boundaries(config, train_samples)
    if features_dir:
        return reader.feature_pair_dataset(
            open_feature_cache(config, features_dir), train_samples, batch_size,
            config.use_difficulty, seed=config.seed, first_epoch=first_epoch,
            input_context=input_context, step_boundaries=boundaries,
            keep_last_batch=config.keep_last_batch)
    return reader.video_pair_dataset(train_samples, batch_size, config.use_difficulty,
                                     protocol=config.protocol, seed=config.seed,
                                     first_epoch=first_epoch, input_context=input_context,
                                     skip_bad=skip_bad, step_boundaries=boundaries,
                                     keep_last_batch=config.keep_last_batch)


def sample_boundaries(config: TPTConfig, sample: Sample):
    """A sample's annotated step boundaries in clip units on the config's clip grid
    (:func:`data_pipelines.video.steps.protocol_boundaries`), or None without step labels."""
    from data_pipelines.video import steps

    if not sample.steps:
        return None
    spec = config.protocol
    return steps.protocol_boundaries(sample.steps, spec.num_clips, spec.clip_len, spec.clip_stride,
                                     spec.sampling, spec.test_query_start)


def training_step_boundaries(config: TPTConfig, train_samples):
    """Per training sample, its step boundaries, when step supervision is on
    (``config.step_weight`` > 0); None when it is off. Step supervision needs step labels on
    every training sample (FineDiving): anything else is refused, naming a sample without."""
    if not config.step_weight:
        return None
    missing = [s.key for s in train_samples if not s.steps]
    if missing:
        raise ValueError(f"step_weight={config.step_weight:g} needs step labels on every training "
                         f"sample (FineDiving); {len(missing)} have none, e.g. {missing[0]!r}")
    return [sample_boundaries(config, s) for s in train_samples]


def eval_dataset(config: TPTConfig, test_samples, train_samples, features_dir: str | None, *,
                 batch_size: int = 8, with_keys: bool = False, input_context=None):
    """Test queries with up to ``num_exemplars`` same-group training exemplars (SPEC §6)."""
    from data_pipelines.tfdata import reader

    if features_dir:
        return reader.feature_eval_dataset(
            open_feature_cache(config, features_dir), test_samples,
            train_samples, batch_size, config.use_difficulty, num_exemplars=config.num_exemplars,
            seed=config.seed, with_keys=with_keys, input_context=input_context,
            empty_group=config.empty_group)
    return reader.video_eval_dataset(test_samples, train_samples, batch_size,
                                     config.use_difficulty, protocol=config.protocol,
                                     num_exemplars=config.num_exemplars, seed=config.seed,
                                     with_keys=with_keys, input_context=input_context,
                                     empty_group=config.empty_group)


def skip_unreadable(splits: dict[str, list[Sample]], config: TPTConfig,
                    features_dir: str | None = None) -> tuple[dict, list]:
    """The splits without the samples that cannot be read, and ``[(key, message)]`` of those
    skipped, each once: a video that cannot be decoded (end to end) or a key missing from the
    feature cache ``features_dir`` (skipped at extraction). Done once, before training, so that a
    skipped sample is skipped everywhere (training query, exemplar, validation video) and every
    epoch plans the same samples (a resumed run sees the batches the uninterrupted one saw)."""
    from data_pipelines.io import decode

    unique = list({s.key: s for items in splits.values() for s in items}.values())
    if features_dir:
        cache = open_feature_cache(config, features_dir)
        bad = {key: f"no features in {features_dir}" for key in cache.missing([s.key for s in unique])}
    else:
        by_path = decode.unreadable([s.path for s in unique])
        bad = {s.key: by_path[s.path] for s in unique if s.path in by_path}
    kept = {name: [s for s in items if s.key not in bad] for name, items in splits.items()}
    return kept, sorted(bad.items())
