"""Stand-in releases: folders laid out exactly as the public MTL-AQA, AQA-7, JIGSAWS and FineDiving
releases are, for a chosen subset of the real annotation keys, with tiny synthetic frames.

The videos of these datasets are not redistributable, so tests and the quickstart of
``docs/reproduce.md`` run on stand-ins. A stand-in release has two folders::

    ROOT/annotations/   the real annotation files, cut down to the chosen keys (same file names,
                        same formats: pickles, .mat)
    ROOT/media/         one frame folder (or video) per chosen key, named and numbered as the
                        release names them

Layouts (what the adapters in :mod:`data_pipelines.datasets` read):

=============  ===========================================================  ====================
dataset        media                                                        frames per sample
=============  ===========================================================  ====================
mtl_aqa        ``{video:02d}_{dive:02d}/{frame:06d}.jpg``, frames numbered    the dive's length
               from the dive's ``start_frame`` in its broadcast              (end - start + 1),
                                                                             at least 109
aqa7           ``{class}-out/{index:03d}/img_{i:05d}.jpg``, i = 1 … 103       103
jigsaws        ``{Task}/video/{trial}_capture1.avi`` (the official archive)   160
finediving     ``{event}/{index}/{frame:05d}.jpg``, numbered from the dive's   the labelled frames
               ``start_frame`` (coarse annotation), trimmed to the dive      (``frames_labels``)
=============  ===========================================================  ====================

Frames are ``size`` × ``size`` JPEGs (32 by default) whose brightness follows the sample's score
with a little noise. Defects can be planted, one sample each (:data:`DEFECTS`): a missing folder
or video, a missing frame in the middle of a folder, an unreadable frame (or video), a folder
numbered another way (``frame0.jpg, frame1.jpg …``). :func:`make_release` returns what it planted.

Pure numpy + Pillow (+ PyAV for JIGSAWS videos); no TensorFlow.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import shutil

import numpy as np

from data_pipelines.io import safe_pickle

DATASETS = ("mtl_aqa", "aqa7", "jigsaws", "finediving")
# Planted defects, named as `tpt prepare` names what it finds.
DEFECTS = ("missing", "missing_frame", "unreadable", "numbering")
VIDEO_DEFECTS = ("missing", "unreadable")  # a release of videos: no frame to drop or rename
ALLOWED_DEFECTS = {"jigsaws": VIDEO_DEFECTS}  # JIGSAWS ships videos; the others frame folders
# Frames the MTL-AQA protocol reads at most at training time: start 3 + jitter 3 + 103.
MTL_AQA_MIN_FRAMES = 109
AQA7_FRAMES = 103
JIGSAWS_FRAMES = 160


@dataclasses.dataclass(frozen=True)
class Defect:
    """One planted defect: its kind (:data:`DEFECTS`), the sample key and the path it touched."""

    kind: str
    key: str
    path: str


@dataclasses.dataclass
class Release:
    """A stand-in release on disk.

    Attributes:
        dataset: one of :data:`DATASETS`.
        root: its folder; ``annotations`` and ``media`` are inside it.
        keys: ``{split: [sample key, …]}`` as the adapters name samples (JIGSAWS: ``{task: […]}``).
        defects: the planted :class:`Defect` list.
    """

    dataset: str
    root: str
    keys: dict
    defects: list

    @property
    def annotations(self) -> str:
        return os.path.join(self.root, "annotations")

    @property
    def media(self) -> str:
        return os.path.join(self.root, "media")


# ---------------------------------------------------------------------------------------------
# Choosing keys: the first ones of each split, with every test group present in training
# ---------------------------------------------------------------------------------------------
def _choose(train: list, test: list, group_of, count: int) -> tuple[list, list]:
    """``count`` test keys and ``count`` training keys, in file order, such that every chosen test
    video has training exemplars of its group and groups hold pairs (the group-aware intervals
    need two training videos of one group): test keys from the groups most frequent in training
    first, then two training keys per chosen test group, then more of those groups, then others."""
    frequency = collections.Counter(group_of(key) for key in train)
    chosen_test = sorted(test, key=lambda key: -frequency[group_of(key)])[:count]
    groups = list(dict.fromkeys(group_of(key) for key in chosen_test))
    chosen_train = []
    for group in groups:
        for key in [k for k in train if group_of(k) == group][:2]:
            if len(chosen_train) < count:
                chosen_train.append(key)
    for key in sorted(train, key=lambda k: group_of(k) not in groups):
        if len(chosen_train) >= count:
            break
        if key not in chosen_train:
            chosen_train.append(key)
    trained = {group_of(key) for key in chosen_train}
    chosen_test = [key for key in chosen_test if group_of(key) in trained]
    in_order = lambda keys, source: sorted(keys, key=source.index)  # noqa: E731
    return in_order(chosen_train, train), in_order(chosen_test, test)


def _frame_image(value: float, index: int, size: int, rng) -> np.ndarray:
    """One uint8 (size, size, 3) frame: a grey level from ``value`` in [0, 1], a bar that moves
    with ``index``, and noise."""
    frame = np.full((size, size, 3), 40 + 160 * value, np.float32)
    column = (index * 3) % size
    frame[:, column:column + max(1, size // 8)] += 50
    frame += rng.normal(0, 6, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _write_frames(folder: str, names: list[str], value: float, size: int, rng) -> None:
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for index, name in enumerate(names):
        Image.fromarray(_frame_image(value, index, size, rng)).save(os.path.join(folder, name), quality=90)


def _write_video(path: str, num_frames: int, value: float, size: int, rng) -> None:
    """An MPEG-4 .avi of ``num_frames`` frames (PyAV)."""
    import av

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.height = stream.width = size
        stream.pix_fmt = "yuv420p"
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(_frame_image(value, index, size, rng), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _scaled(score: float, low: float, high: float) -> float:
    return float(np.clip((score - low) / max(high - low, 1e-9), 0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# The four releases: annotations cut to the chosen keys, then the media
# ---------------------------------------------------------------------------------------------
def _frame_pattern(dataset: str) -> str:
    """The release's frame file names, from the dataset registry (what ``tpt prepare`` checks)."""
    from data_pipelines import datasets

    return datasets.get(dataset).frame_pattern


def _write_annotations(root: str, annotation_file: str, annotations: dict, split_files: dict,
                       train: list, test: list) -> None:
    """The annotation pickle cut to the chosen keys, and one split pickle per split."""
    _write_pickle(os.path.join(root, "annotations", annotation_file),
                  {key: annotations[key] for key in train + test})
    chosen = {"train": train, "test": test}
    for split, name in split_files.items():
        _write_pickle(os.path.join(root, "annotations", name), chosen[split])


def _mtl_aqa(source: str, root: str, count: int, size: int, rng) -> tuple[dict, dict]:
    from data_pipelines.datasets import mtl_aqa

    annotations = safe_pickle.load(os.path.join(source, mtl_aqa.ANNOTATION_FILE))
    splits = {split: [tuple(int(v) for v in pair) for pair in safe_pickle.load(os.path.join(source, name))]
              for split, name in mtl_aqa.SPLIT_FILES.items()}
    train, test = _choose(splits["train"], splits["test"],
                          lambda key: float(annotations[key]["difficulty"]), count)
    _write_annotations(root, mtl_aqa.ANNOTATION_FILE, annotations, mtl_aqa.SPLIT_FILES, train, test)
    pattern = _frame_pattern("mtl_aqa")
    folders = {}
    for key in train + test:
        record = annotations[key]
        length = max(MTL_AQA_MIN_FRAMES, int(record["end_frame"]) - int(record["start_frame"]) + 1)
        first = int(record["start_frame"])
        folder = os.path.join(root, "media", mtl_aqa.dive_key(*key))
        _write_frames(folder, [pattern.format(first + i) for i in range(length)],
                      _scaled(float(record["final_score"]), 0, 110), size, rng)
        folders[mtl_aqa.dive_key(*key)] = folder
    return {"train": [mtl_aqa.dive_key(*k) for k in train],
            "test": [mtl_aqa.dive_key(*k) for k in test]}, folders


def _aqa7(source: str, root: str, count: int, size: int, rng) -> tuple[dict, dict]:
    import scipy.io

    from data_pipelines.datasets import aqa7

    matrices = {split: aqa7.read_list(os.path.join(source, name)) for split, name in aqa7.SPLIT_FILES.items()}
    keys, folders = {"train": [], "test": []}, {}
    rows = {"train": [], "test": []}
    for class_id, name in enumerate(aqa7.CLASSES, start=1):
        by_split = {split: [row for row in matrix if int(row[0]) == class_id] for split, matrix in matrices.items()}
        for split in ("train", "test"):
            rows[split].extend(by_split[split][:count])
    low_high = aqa7.SCORE_RANGES
    for split, chosen in rows.items():
        stem = os.path.splitext(aqa7.SPLIT_FILES[split])[0]
        path = os.path.join(root, "annotations", aqa7.SPLIT_FILES[split])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        scipy.io.savemat(path, {stem: np.asarray(chosen, np.float64)})
        for class_id, index, score in chosen:
            name = aqa7.CLASSES[int(class_id) - 1]
            key = f"{name}_{int(index):03d}"
            folder = os.path.join(root, "media", f"{name}-out", f"{int(index):03d}")
            _write_frames(folder, [_frame_pattern("aqa7").format(i) for i in range(1, AQA7_FRAMES + 1)],
                          _scaled(score / 100.0, *low_high[name]), size, rng)
            keys[split].append(key)
            folders[key] = folder
    return keys, folders


def _jigsaws(source: str, root: str, count: int, size: int, rng) -> tuple[dict, dict]:
    from data_pipelines.datasets import jigsaws

    labels = safe_pickle.load(os.path.join(source, "label.pkl"))
    splits = safe_pickle.load(os.path.join(source, "splits.pkl"))
    chosen = {task: [list(fold)[:count] for fold in folds] for task, folds in splits.items()}
    trials = [trial for folds in chosen.values() for fold in folds for trial in fold]
    _write_pickle(os.path.join(root, "annotations", "label.pkl"), {t: labels[t] for t in trials})
    _write_pickle(os.path.join(root, "annotations", "splits.pkl"), chosen)
    folders = {}
    for task, folds in chosen.items():
        for trial in (t for fold in folds for t in fold):
            path = os.path.join(root, "media", task, "video", f"{trial}_capture1.avi")
            _write_video(path, JIGSAWS_FRAMES, _scaled(float(sum(labels[trial])), 6, 30), size, rng)
            folders[trial] = path
    keys = {task: [t for fold in folds for t in fold] for task, folds in chosen.items()}
    assert set(keys) <= set(jigsaws.TASKS)
    return keys, folders


def _finediving(source: str, root: str, count: int, size: int, rng) -> tuple[dict, dict]:
    from data_pipelines.datasets import finediving

    annotations = safe_pickle.load(os.path.join(source, finediving.ANNOTATION_FILE))
    coarse_path = os.path.join(source, "FineDiving_coarse_annotation.pkl")
    coarse = safe_pickle.load(coarse_path) if os.path.isfile(coarse_path) else {}
    splits = {split: [(str(e), int(i)) for e, i in safe_pickle.load(os.path.join(source, name))]
              for split, name in finediving.SPLIT_FILES.items()}
    annotations = {(str(e), int(i)): v for (e, i), v in annotations.items()}
    train, test = _choose(splits["train"], splits["test"],
                          lambda key: str(annotations[key]["action_type"]), count)
    _write_annotations(root, finediving.ANNOTATION_FILE, annotations, finediving.SPLIT_FILES,
                       train, test)
    pattern = _frame_pattern("finediving")
    folders = {}
    for key in train + test:
        record = annotations[key]
        first = int((coarse.get(key) or {}).get("start_frame", 0))
        folder = os.path.join(root, "media", key[0], str(key[1]))
        names = [pattern.format(first + i) for i in range(len(record["frames_labels"]))]
        _write_frames(folder, names, _scaled(float(record["dive_score"]), 0, 110), size, rng)
        folders[finediving.dive_key(*key)] = folder
    return {"train": [finediving.dive_key(*k) for k in train],
            "test": [finediving.dive_key(*k) for k in test]}, folders


_BUILDERS = {"mtl_aqa": _mtl_aqa, "aqa7": _aqa7, "jigsaws": _jigsaws, "finediving": _finediving}


def _write_pickle(path: str, value) -> None:
    import pickle

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(value, handle, protocol=4)


# ---------------------------------------------------------------------------------------------
# Defects
# ---------------------------------------------------------------------------------------------
def _frame_files(folder: str) -> list[str]:
    from data_pipelines.io.headers import frame_sort_key

    return sorted(os.listdir(folder), key=frame_sort_key)


def _plant(kind: str, key: str, path: str) -> Defect:
    """Damage the sample at ``path`` (a frame folder or a video) as ``kind`` says."""
    if kind == "missing":
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
        return Defect(kind, key, path)
    if kind == "unreadable":
        target = path if os.path.isfile(path) else os.path.join(path, _frame_files(path)[len(_frame_files(path)) // 2])
        with open(target, "wb") as handle:
            handle.write(b"this is not an image" * 8)
        return Defect(kind, key, target)
    if kind == "missing_frame":
        names = _frame_files(path)
        target = os.path.join(path, names[len(names) // 2])
        os.remove(target)
        return Defect(kind, key, target)
    if kind == "numbering":
        for index, name in enumerate(_frame_files(path)):
            os.replace(os.path.join(path, name), os.path.join(path, f"frame{index}{os.path.splitext(name)[1]}"))
        return Defect(kind, key, path)
    raise ValueError(f"unknown defect {kind!r}; expected one of {DEFECTS}")


def make_release(dataset: str, source: str, root: str, *, per_split: int = 4, defects=(),
                 size: int = 32, seed: int = 0) -> Release:
    """Write a stand-in release of ``dataset`` into ``root`` (created; must not hold one yet).

    Args:
        dataset: one of :data:`DATASETS`.
        source: the real annotation folder (e.g. ``../shared/data/MTL-AQA``).
        root: the release folder to create (``annotations/`` and ``media/`` inside).
        per_split: samples per split (AQA-7: per split and class; JIGSAWS: trials per fold and task).
        defects: kinds from :data:`DEFECTS` (``"all"``: each kind the dataset allows), each
            planted on its own training sample, in order.
        size: frame side in pixels.
        seed: the frames' noise.

    Returns:
        the :class:`Release`, its ``defects`` listing exactly what was planted.
    """
    if dataset not in _BUILDERS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    if per_split < 2:
        raise ValueError(f"per_split must be at least 2 (Spearman's ρ needs 2 test videos), got {per_split}")
    allowed = ALLOWED_DEFECTS.get(dataset, DEFECTS)
    kinds = list(allowed) if defects == "all" else list(defects)
    for kind in kinds:
        if kind not in allowed:
            raise ValueError(f"{dataset}: cannot plant {kind!r}; this release allows {allowed}")
    if os.path.exists(os.path.join(root, "media")):
        raise FileExistsError(f"{root}: already holds a release (media/); choose an empty folder")
    rng = np.random.default_rng(seed)
    keys, paths = _BUILDERS[dataset](source, root, per_split, size, rng)
    first_split = next(iter(keys.values()))
    if len(kinds) > len(first_split):
        raise ValueError(f"{len(kinds)} defects need as many samples in {next(iter(keys))}; "
                         f"raise per_split")
    planted = [_plant(kind, key, paths[key]) for kind, key in zip(kinds, first_split)]
    return Release(dataset, os.path.abspath(root), keys, planted)


def main(argv=None) -> int:
    """``python -m data_pipelines.synthetic.releases DATASET SOURCE ROOT [--per-split N] [--defects all]``"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m data_pipelines.synthetic.releases",
                                     description="write a stand-in release (tiny synthetic frames, "
                                                 "real annotation keys)")
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("source", help="the real annotation folder, e.g. ../shared/data/MTL-AQA")
    parser.add_argument("root", help="the folder to write (annotations/ and media/ inside)")
    parser.add_argument("--per-split", type=int, default=4, help="samples per split (default 4)")
    parser.add_argument("--size", type=int, default=32, help="frame side in pixels (default 32)")
    parser.add_argument("--defects", nargs="*", default=[],
                        help=f"defects to plant: any of {', '.join(DEFECTS)}, or 'all'")
    args = parser.parse_args(argv)
    defects = "all" if args.defects == ["all"] else args.defects
    release = make_release(args.dataset, args.source, args.root, per_split=args.per_split,
                           defects=defects, size=args.size)
    counts = ", ".join(f"{len(v)} {k}" for k, v in release.keys.items())
    print(f"{release.dataset} stand-in release in {release.root}: {counts}")
    print(f"  --annotations {release.annotations} --media-root {release.media}")
    for defect in release.defects:
        print(f"  planted {defect.kind}: {defect.key} ({defect.path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
