"""``tpt prepare``: a downloaded release checked against its annotation files before any training.

For every annotated sample: is its frame folder (or video) there, are its frames numbered as the
release numbers them (no gap, the release's names), are there as many as the protocol reads, are
they readable and of one size. Headers only by default (a JPEG's or PNG's first bytes, a video's
packets: :mod:`data_pipelines.io.headers`); ``deep=True`` decodes every pixel. No TensorFlow.

Problems, per sample (a sample has each kind at most once):

=============  =======  ==================================================================
kind           blocks   meaning
=============  =======  ==================================================================
missing        yes      no frame folder / video where the annotations point
empty          yes      a frame folder without .jpg/.jpeg/.png frames
unreadable     yes      a frame or video that is not a readable image / video
sizes          yes      frames of different sizes in one folder (they cannot be stacked)
missing_frame  no       a gap in the frame numbers: later frames shift one place earlier
numbering      no       frames not named as the release names them (e.g. ``frame0.jpg`` where
                        AQA-7 has ``img_00001.jpg``), or not starting where it starts
short          no       fewer frames than a window protocol reads (MTL-AQA 109, AQA-7 103):
                        the window moves left (never an error, but not what the paper read)
=============  =======  ==================================================================

A split is *usable* when none of its samples has a blocking problem; :func:`decode_videos` turns
videos into the frame folders the presets read (parallel, resumable).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import os
import re

from data_pipelines import datasets
from data_pipelines.io import headers

BLOCKING = ("missing", "empty", "unreadable", "sizes")
WARNINGS = ("missing_frame", "numbering", "short")
FIRST_NAMES = 3  # names listed per problem kind and split in the summary


@dataclasses.dataclass
class SampleCheck:
    """What :func:`check_sample` found for one sample."""

    key: str
    split: str
    path: str
    frames: int | None = None
    size: tuple[int, int] | None = None
    problems: dict = dataclasses.field(default_factory=dict)  # kind → detail

    @property
    def blocking(self) -> bool:
        return any(kind in BLOCKING for kind in self.problems)


def required_frames(protocol) -> int | None:
    """The frames a video must have so that a window protocol never moves its window: its latest
    start (training start + jitter, test starts) plus the window (MTL-AQA: 3 + 3 + 103 = 109;
    AQA-7: 103). None for linspace sampling, which spreads its frames over any length (a video
    shorter than the window repeats frames by design)."""
    if protocol.sampling == "window":
        latest = max(protocol.train_start + protocol.train_jitter, protocol.test_query_start,
                     protocol.test_exemplar_start)
        return latest + protocol.num_frames
    return None


def dataset_samples(dataset: str, annotations: str, media_root: str) -> dict:
    """Every annotated sample of a release by split, paths under ``media_root`` (not checked):
    the registry's ``release_samples`` of ``dataset`` (MTL-AQA and FineDiving ``train`` /
    ``test``; AQA-7 ``train`` / ``test`` of all six classes; JIGSAWS one entry per task)."""
    return datasets.resolve(release(dataset).release_samples)(annotations, media_root)


def release(dataset: str):
    """The registry record of ``dataset``, refused (naming those there are) without a release."""
    record = datasets.get(dataset)
    if not record.release_samples:
        raise ValueError(f"{dataset} has no public release layout to check; the releases are "
                         f"{', '.join(datasets.releases())}")
    return record


def _number(name: str) -> int | None:
    runs = re.findall(r"\d+", name)
    return int(runs[-1]) if runs else None


def _check_numbering(names: list[str], dataset: str, need: int, check: SampleCheck) -> None:
    record = datasets.get(dataset)
    pattern, first = record.frame_regex, record.first_frame
    example = record.frame_pattern.format(123 if first is None else first)
    odd = [name for name in names if not re.fullmatch(pattern, name)]
    numbers = [_number(name) for name in names]
    if odd:
        check.problems["numbering"] = (f"{len(odd)} of {len(names)} frames not named like the "
                                       f"release ({example}): {', '.join(odd[:2])}")
    elif first is not None and numbers[0] != first:
        check.problems["numbering"] = f"frames start at {names[0]}, the release at {example}"
    if None in numbers or len(set(numbers)) != len(numbers):
        check.problems.setdefault("numbering", "frame names without distinct numbers")
        span = len(names)
    else:
        span = numbers[-1] - numbers[0] + 1
        gaps = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        if gaps:
            check.problems["missing_frame"] = (f"{len(gaps)} frame number(s) missing: "
                                               f"{', '.join(map(str, gaps[:5]))}")
    if need and span < need:
        check.problems["short"] = f"{span} frames, the protocol reads {need}"


def check_sample(sample, dataset: str, need: int, deep: bool = False) -> SampleCheck:
    """Check one sample's frame folder or video (see the module's table of problems)."""
    check = SampleCheck(sample.key, sample.split, sample.path)
    path = sample.path
    if not os.path.exists(path):
        check.problems["missing"] = f"{path} does not exist"
        return check
    if os.path.isfile(path):
        try:
            frames, width, height = headers.video_info(path, decode=deep)
        except headers.HeaderError as error:
            check.problems["unreadable"] = error.reason
            return check
        check.frames, check.size = frames, (width, height)
        if need and frames < need:
            check.problems["short"] = f"{frames} frames, the protocol reads {need}"
        return check
    names = sorted((n for n in os.listdir(path) if n.lower().endswith(headers.FRAME_EXTENSIONS)),
                   key=headers.frame_sort_key)
    if not names:
        check.problems["empty"] = f"{path} holds no .jpg/.jpeg/.png frames"
        return check
    check.frames = len(names)
    _check_numbering(names, dataset, need, check)
    read = headers.decode_image if deep else headers.image_size
    sizes, bad = collections.Counter(), []
    for name in names:
        try:
            sizes[read(os.path.join(path, name))] += 1
        except (headers.HeaderError, OSError) as error:
            bad.append(f"{name}: {getattr(error, 'reason', error)}")
    if bad:
        check.problems["unreadable"] = f"{len(bad)} frame(s): {bad[0]}"
    if len(sizes) > 1:
        check.problems["sizes"] = "frames of different sizes: " + ", ".join(
            f"{w}×{h} ({n})" for (w, h), n in sizes.most_common(3))
    if sizes:
        check.size = sizes.most_common(1)[0][0]
    return check


def check_release(dataset: str, annotations: str, media_root: str, *, deep: bool = False,
                  workers: int = 8, progress: bool = True) -> dict:
    """Check every annotated sample of a release (:func:`check_sample`, ``workers`` threads).

    Returns:
        the report: ``{"dataset", "annotations", "media_root", "deep", "required_frames",
        "splits": {name: {"samples", "present", "missing", "damaged", "warnings", "usable",
        "frames": [min, max], "frame_sizes": {"W×H": count}, "problems": {kind: [key, …]}}},
        "problems": [{"key", "split", "path", "kind", "detail"}], "usable": bool}``.
    """
    from tpt_keras.config import get_preset

    release(dataset)
    if not os.path.isdir(media_root):
        raise FileNotFoundError(f"{media_root}: media folder (--media-root) not found")
    need = required_frames(get_preset(release(dataset).presets[0]).protocol)
    splits = dataset_samples(dataset, annotations, media_root)
    samples = [s for items in splits.values() for s in items]
    split_of = {id(s): name for name, items in splits.items() for s in items}
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        futures = [pool.submit(check_sample, s, dataset, need, deep) for s in samples]
        iterator = concurrent.futures.as_completed(futures)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, total=len(futures), desc=f"checking {dataset}", unit="video",
                            leave=False)
        for _ in iterator:
            pass
    checks = [future.result() for future in futures]
    for sample, check in zip(samples, checks):
        check.split = split_of[id(sample)]
    return _report(dataset, annotations, media_root, deep, need, splits, checks)


def _report(dataset, annotations, media_root, deep, need, splits, checks) -> dict:
    by_split = {name: [] for name in splits}
    for check in checks:
        by_split[check.split].append(check)
    summary = {}
    for name, items in by_split.items():
        problems = collections.defaultdict(list)
        for check in items:
            for kind in check.problems:
                problems[kind].append(check.key)
        frames = [c.frames for c in items if c.frames is not None]
        sizes = collections.Counter(f"{c.size[0]}×{c.size[1]}" for c in items if c.size)
        damaged = sum(1 for c in items if c.blocking and "missing" not in c.problems)
        summary[name] = {
            "samples": len(items), "present": sum("missing" not in c.problems for c in items),
            "missing": len(problems.get("missing", [])), "damaged": damaged,
            "warnings": sum(1 for c in items if not c.blocking and c.problems),
            "usable": not any(c.blocking for c in items),
            "frames": [min(frames), max(frames)] if frames else None,
            "frame_sizes": dict(sizes.most_common()),
            "problems": {kind: keys for kind, keys in problems.items()}}
    flat = [{"key": c.key, "split": c.split, "path": c.path, "kind": kind, "detail": detail}
            for c in checks for kind, detail in c.problems.items()]
    return {"dataset": dataset, "annotations": os.path.abspath(annotations),
            "media_root": os.path.abspath(media_root), "deep": deep, "required_frames": need,
            "splits": summary, "problems": flat,
            "usable": all(s["usable"] for s in summary.values())}


def blocked_keys(report: dict) -> set[str]:
    """The keys of the samples that would stop training (missing or damaged)."""
    return {p["key"] for p in report["problems"] if p["kind"] in BLOCKING}


def format_report(report: dict) -> str:
    """The terminal summary of :func:`check_release`'s report."""
    check = "full decode" if report["deep"] else "headers"
    need = (f"the protocol reads {report['required_frames']} consecutive frames per video"
            if report["required_frames"] else "the protocol spreads its frames over each video")
    lines = [f"{report['dataset']}: {report['media_root']} against {report['annotations']} "
             f"({check}; {need})",
             f"{'split':<16} {'samples':>7} {'present':>7} {'missing':>7} {'damaged':>7} "
             f"{'warnings':>8}  {'frames':>9}  sizes"]
    for name, split in report["splits"].items():
        frames = "-" if not split["frames"] else f"{split['frames'][0]}–{split['frames'][1]}"
        sizes = ", ".join(f"{size} ({n})" for size, n in list(split["frame_sizes"].items())[:2])
        lines.append(f"{name:<16} {split['samples']:>7} {split['present']:>7} {split['missing']:>7} "
                     f"{split['damaged']:>7} {split['warnings']:>8}  {frames:>9}  {sizes or '-'}")
    for name, split in report["splits"].items():
        for kind in BLOCKING + WARNINGS:
            keys = split["problems"].get(kind, [])
            if keys:
                shown = ", ".join(keys[:FIRST_NAMES]) + (f", … ({len(keys)})" if len(keys) > FIRST_NAMES else "")
                lines.append(f"  {name}: {kind}: {shown}")
    for problem in report["problems"][:10]:
        lines.append(f"  {problem['key']} [{problem['kind']}] {problem['detail']}")
    if len(report["problems"]) > 10:
        lines.append(f"  … {len(report['problems']) - 10} more in the JSON report")
    unusable = [name for name, split in report["splits"].items() if not split["usable"]]
    if unusable:
        lines.append(f"not usable as it is: {', '.join(unusable)} (missing or damaged samples stop "
                     "training; fix them, or train with --skip-bad; `tpt reproduce` leaves them out)")
    else:
        lines.append("every split is usable" + (" (warnings: see above)" if report["problems"] else ""))
    return "\n".join(lines)


def write_report(report: dict, path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")


# ---------------------------------------------------------------------------------------------
# Videos → frame folders
# ---------------------------------------------------------------------------------------------
def _video_of(sample) -> str | None:
    """The video of a sample: its path if it is a video file, else a video named like its frame
    folder (``01_12.mp4`` beside the missing ``01_12/``), else None."""
    if os.path.isfile(sample.path) and headers.is_video(sample.path):
        return sample.path
    for extension in headers.VIDEO_EXTENSIONS:
        if os.path.isfile(sample.path + extension):
            return sample.path + extension
    return None


def frame_folder_for(sample, dataset: str, media_root: str, output: str) -> str:
    """Where :func:`decode_videos` writes a sample's frames: the registry's ``decoded_folder``
    (JIGSAWS ``output/{trial}_capture1/``), else the sample's folder relative to ``media_root``."""
    record = release(dataset)
    if record.decoded_folder:
        return datasets.resolve(record.decoded_folder)(sample, output)
    video = _video_of(sample) or sample.path
    relative = os.path.relpath(os.path.splitext(video)[0] if os.path.isfile(video) else video, media_root)
    return os.path.join(output, relative)


def _decode_one(video: str, folder: str, pattern: str, first: int) -> int:
    import shutil

    import av
    from PIL import Image

    partial = folder + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    count = 0
    with av.open(video) as container:
        for count, frame in enumerate(container.decode(video=0), start=1):
            Image.fromarray(frame.to_ndarray(format="rgb24")).save(
                os.path.join(partial, pattern.format(first + count - 1)), quality=95)
    os.replace(partial, folder)
    return count


def decode_videos(dataset: str, annotations: str, media_root: str, output: str, *,
                  workers: int = 4, progress: bool = True) -> dict:
    """Decode every annotated sample's video into a frame folder under ``output`` named and
    numbered as the presets read (the registry's ``frame_pattern``; :func:`frame_folder_for`).

    Parallel (``workers`` threads); resumable: a folder is written as ``NAME.partial`` and renamed
    when complete, so finished folders are skipped and a killed one is redone.

    Returns:
        ``{"decoded": [key], "skipped_existing": [key], "no_video": [key], "failed": [(key, msg)]}``.
    """
    record = release(dataset)
    pattern, first = record.frame_pattern, record.first_frame or 0
    samples = [s for items in dataset_samples(dataset, annotations, media_root).values() for s in items]
    result = {"decoded": [], "skipped_existing": [], "no_video": [], "failed": []}
    jobs = {}
    for sample in dict((s.key, s) for s in samples).values():
        video = _video_of(sample)
        folder = frame_folder_for(sample, dataset, media_root, output)
        if video is None:
            result["no_video"].append(sample.key)
        elif os.path.isdir(folder):
            result["skipped_existing"].append(sample.key)
        else:
            jobs[sample.key] = (video, folder)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        futures = {pool.submit(_decode_one, video, folder, pattern, first): key
                   for key, (video, folder) in jobs.items()}
        iterator = concurrent.futures.as_completed(futures)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, total=len(futures), desc="decoding videos", unit="video")
        for future in iterator:
            key = futures[future]
            try:
                future.result()
                result["decoded"].append(key)
            except Exception as error:  # noqa: BLE001 (any decoder failure is reported per video)
                result["failed"].append((key, f"{jobs[key][0]}: {type(error).__name__}: {error}"))
    return result
