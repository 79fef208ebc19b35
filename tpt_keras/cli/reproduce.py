"""``tpt prepare``, ``tpt reproduce`` and ``tpt export-preset``: parsers and handlers (thin: the
library is :mod:`tpt_keras.experiment.prepare` and :mod:`tpt_keras.experiment.reproduce`)."""

from __future__ import annotations

import json
import os

from tpt_keras.tools.arguments import positive_int

def cmd_prepare(args) -> int:
    from tpt_keras.experiment import prepare

    media_root = args.media_root
    if args.decode_to:
        done = prepare.decode_videos(args.dataset, args.annotations, args.media_root, args.decode_to,
                                     workers=args.workers, progress=not args.json)
        print(f"videos → frames in {args.decode_to}: {len(done['decoded'])} decoded, "
              f"{len(done['skipped_existing'])} already there, {len(done['no_video'])} without a "
              f"video, {len(done['failed'])} failed")
        for key, message in done["failed"][:5]:
            print(f"  failed {key}: {message}")
        media_root = args.decode_to
    report = prepare.check_release(args.dataset, args.annotations, media_root, deep=args.deep,
                                   workers=args.workers, progress=not args.json)
    path = args.report or f"prepare_{args.dataset}.json"
    prepare.write_report(report, path)
    print(json.dumps(report, indent=2) if args.json else prepare.format_report(report))
    if not args.json:
        print(f"report: {path}")
    return 0 if report["usable"] else 1


def cmd_reproduce(args) -> int:
    import logging

    from tpt_keras import experiment
    from tpt_keras.experiment import reproduce

    # one run after another evaluates many models: TensorFlow's retracing notices say nothing here
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    results = reproduce.reproduce(
        args.table, args.annotations, args.media_root, args.output, seeds=args.seeds,
        epochs=args.epochs, overrides=experiment.parse_overrides(args.overrides),
        end_to_end=args.end_to_end,
        weights=args.weights, deep=args.deep, batch_size=args.batch_size,
        num_bootstrap=args.bootstrap, verbose=0 if args.json else args.verbose,
        log=(lambda line: None) if args.json else print)
    picture = reproduce.plot_table(results, args.plot or os.path.join(args.output,
                                                                      results["name"] + ".png"))
    results["plot"] = picture
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(reproduce.format_table(results))
        print(f"picture: {picture}; JSON: {os.path.join(args.output, results['name'] + '.json')}")
    return 0


def cmd_export_preset(args) -> int:
    from tpt_keras.experiment import reproduce

    metadata = reproduce.export_preset(args.run, args.preset_dir, which=args.checkpoint,
                                       evaluate=not args.no_evaluate)
    test = metadata.get("test")
    figures = (f" (test ρ {test['spearman']:.4f}, R-ℓ2 {test['r_l2']:.3f} on {test['videos']} videos)"
               if test else "")
    print(f"preset written to {args.preset_dir}{figures}; load it with "
          f"tpt_keras.load_preset({args.preset_dir!r})")
    return 0


def add_prepare_command(commands) -> None:
    """The ``tpt prepare`` subcommand."""
    parser = commands.add_parser("prepare", help="check a downloaded release before training")
    from data_pipelines import datasets

    parser.add_argument("dataset", choices=datasets.releases(), help="which release")
    parser.add_argument("--annotations", required=True, help="the release's annotation folder")
    parser.add_argument("--media-root", required=True,
                        help="folder of the frame folders / videos, as the release lays them out")
    parser.add_argument("--report", help="JSON report path (default ./prepare_DATASET.json)")
    parser.add_argument("--deep", action="store_true",
                        help="decode every frame (default: headers only, fast)")
    parser.add_argument("--decode-to", metavar="FOLDER",
                        help="first decode the release's videos into frame folders here (parallel, "
                             "resumable), then check FOLDER")
    parser.add_argument("--workers", type=positive_int, default=8, help="parallel checks / decodes")
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    parser.set_defaults(handler=cmd_prepare, needs_tensorflow=False)


def add_reproduce_command(commands) -> None:
    """The ``tpt reproduce`` subcommand."""
    parser = commands.add_parser("reproduce", help="a paper table: prepare → extract → train → "
                                                   "evaluate, beside the published numbers")
    from tpt_keras.experiment.reproduce import TABLES

    parser.add_argument("table", choices=TABLES, help="mtl_aqa (w/ and w/o DD), aqa7 (six classes), "
                                                        "jigsaws (3 tasks × 4 folds), finediving")
    parser.add_argument("--annotations", required=True, help="the release's annotation folder")
    parser.add_argument("--media-root", required=True, help="folder of the frame folders / videos")
    parser.add_argument("--output", required=True,
                        help="folder of features, runs, report and picture (resumes if it exists)")
    parser.add_argument("--seeds", type=positive_int, default=1, help="seeds per run (default 1)")
    parser.add_argument("--epochs", type=positive_int, help="override the presets' epochs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration field of every run (repeatable)")
    parser.add_argument("--end-to-end", action="store_true",
                        help="fine-tune I3D from frames (the paper's setting; slow) instead of "
                             "training on cached features")
    parser.add_argument("--weights", metavar="PRESET_DIR",
                        help="evaluate released weights (a preset directory) instead of training")
    parser.add_argument("--deep", action="store_true", help="prepare: decode every frame")
    parser.add_argument("--batch-size", type=positive_int, default=4,
                        help="videos per I3D call when extracting features")
    parser.add_argument("--bootstrap", type=positive_int, default=1000,
                        help="resamples of the 95%% interval (default 1000)")
    parser.add_argument("--plot", help="picture path (default OUTPUT/reproduce_TABLE.png; with "
                                       "--weights OUTPUT/reproduce_TABLE_weights.png)")
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2],
                        help="Keras fit verbosity (default 2: one line per epoch)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=cmd_reproduce, needs_tensorflow=False,  # after the checks
                        must_exist={"annotations": "folder", "media_root": "folder",
                                    "weights": "folder"})


def add_export_preset_command(commands) -> None:
    """The ``tpt export-preset`` subcommand."""
    parser = commands.add_parser("export-preset", help="a trained run as a preset directory "
                                                       "(keras-hub layout) to publish")
    parser.add_argument("run", help="run folder")
    parser.add_argument("preset_dir", help="the preset directory to write")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"],
                        help="which model of the run (default best)")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="do not put the run's test figures in metadata.json")
    parser.set_defaults(handler=cmd_export_preset)
