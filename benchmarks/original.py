"""The authors' PyTorch code, timed beside ours in the same run.

A benchmark given ``--original DIR`` (a checkout of the authors' TPT repository, which is not part
of this project) starts one child process per timed network with :func:`start`; the child builds
the network from ``DIR`` and times one call per line it reads, so that PyTorch and TensorFlow never
share a process and the sides can alternate call by call. Without ``--original`` a benchmark prints
no ratio against PyTorch: a ratio is only printed between two sides timed in the same run.

Needs PyTorch (``pip install torch``). The authors' ``model.py`` imports ``utils.util`` (OpenCV,
pandas) for a distributed helper that no forward pass uses; the child stands in an empty module
for it, so those packages are not needed.

Networks (``kind``):

* ``i3d-forward`` / ``i3d-backward``: the authors' ``I3D`` up to Mixed_5c on ``(batch, 3, frames,
  size, size)``, inference (``no_grad``, eval mode) or forward+backward of every parameter;
* ``head-step``: one training step of the authors' ``PairModel`` (decoder, pair encoder, two
  heads) on cached features, with a loss of the same terms the authors' trainer sums (interval
  NLL, per-interval MSE, the attention hinge and spread terms) and Adam.

    python benchmarks/original.py --check DIR      # builds both networks once, prints OK
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import types

MODEL_PACKAGE = "models_cluster_2layer_pairencode1_clsreg_decoder_1selfatt_self8head_ffn"


def _modules(folder: str):
    """The authors' ``model`` and ``i3d`` modules, imported from ``folder``."""
    if not os.path.isdir(os.path.join(folder, MODEL_PACKAGE)):
        raise SystemExit(f"{folder}: no {MODEL_PACKAGE}/ folder: pass a checkout of the authors' "
                         "TPT repository (git clone of baiyang4/aqa_tpt)")
    sys.path.insert(0, os.path.abspath(folder))
    utils = types.ModuleType("utils")
    util = types.ModuleType("utils.util")
    util.distributed_concat = None  # only used by multi-GPU evaluation
    utils.util = util
    sys.modules.setdefault("utils", utils)
    sys.modules.setdefault("utils.util", util)
    return (importlib.import_module(f"{MODEL_PACKAGE}.model"),
            importlib.import_module(f"{MODEL_PACKAGE}.i3d"))


def _i3d_step(i3d_module, backward: bool, batch: int, frames: int, size: int):
    import numpy as np
    import torch

    model = i3d_module.I3D(num_classes=400, modality="rgb")
    video = torch.from_numpy(np.random.RandomState(0).uniform(
        -1, 1, (batch, 3, frames, size, size)).astype(np.float32))
    if not backward:
        model.eval()

        def step():
            with torch.no_grad():
                return float(model(video).sum())
        return step
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]

    def step():
        loss = model(video).square().mean()
        gradients = torch.autograd.grad(loss, parameters)
        return float(sum(g.sum() for g in gradients))
    return step


def _head_step(model_module, batch: int, clips: int, d_model: int, num_parts: int,
               num_intervals: int = 16):
    """One Adam step of the authors' PairModel on random features of ``batch`` pairs."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    rng = np.random.RandomState(0)
    model = model_module.PairModel(types.SimpleNamespace(num_cluster=num_parts, d_model=d_model,
                                                         d_ffn=d_model))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=0.0005)
    query = torch.from_numpy(rng.uniform(-1, 1, (batch, clips, 1024)).astype(np.float32))
    exemplar = torch.from_numpy(rng.uniform(-1, 1, (batch, clips, 1024)).astype(np.float32))
    interval = torch.from_numpy(rng.randint(0, num_intervals, 2 * batch))
    offset = torch.from_numpy(rng.uniform(0, 1, 2 * batch).astype(np.float32))
    positions = torch.arange(1, clips + 1, dtype=torch.float32)[None, :, None]

    def attention_terms(attention):  # (2B, layers * T, K) → hinge over part centres, spread
        total = 0.0
        for maps in attention.split(clips, dim=1):  # (2B, T, K), each part's map sums to 1 over T
            centres = (maps * positions).sum(1)  # (2B, K)
            spread = ((positions - centres[:, None, :]).abs() * maps).sum(1)
            hinge = F.relu(1.0 - (centres[:, 1:] - centres[:, :-1])).mean() * (num_parts - 1)
            total = total + hinge + 0.05 * spread.mean()
        return total

    def step():
        probabilities, delta, attention = model(query, exemplar)
        loss = F.nll_loss(probabilities[0], interval)
        chosen = delta.gather(1, interval[:, None])[:, 0]
        loss = loss + F.mse_loss(chosen, offset) + attention_terms(attention)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return float(loss.detach())
    return step


def serve(folder: str, kind: str, sizes: dict) -> int:
    """The child: build the network, warm up, print ``ready``, then time one call per stdin line
    (``[wall s, process CPU s]`` per line)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    model_module, i3d_module = _modules(folder)
    torch.manual_seed(0)
    if kind in ("i3d-forward", "i3d-backward"):
        step = _i3d_step(i3d_module, kind == "i3d-backward", sizes["batch"], sizes["frames"],
                         sizes["size"])
    elif kind == "head-step":
        step = _head_step(model_module, sizes["batch"], sizes["clips"], sizes["d_model"],
                          sizes["parts"])
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    step()
    print(f"ready torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    for _ in sys.stdin:
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]), flush=True)
    return 0


class Side:
    """A running child: ``side.time()`` → (wall s, process CPU s) of one call; ``side.close()``."""

    def __init__(self, folder: str, kind: str, **sizes):
        command = [sys.executable, os.path.abspath(__file__), "--serve", folder, kind,
                   json.dumps(sizes)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            self.process.kill()
            raise RuntimeError(f"the authors' {kind} network did not start from {folder} "
                               "(is PyTorch installed? pip install torch)")
        self.description = line.split(" ", 1)[1].strip()

    def time(self) -> tuple[float, float]:
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        wall, cpu = json.loads(self.process.stdout.readline())
        return wall, cpu

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def start(folder: str, kind: str, **sizes) -> Side:
    """A child process serving timed calls of the authors' ``kind`` network built from ``folder``."""
    return Side(folder, kind, **sizes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", nargs=3, metavar=("DIR", "KIND", "SIZES"), help=argparse.SUPPRESS)
    parser.add_argument("--check", metavar="DIR", help="build both networks from DIR once")
    args = parser.parse_args(argv)
    if args.serve:
        folder, kind, sizes = args.serve
        return serve(folder, kind, json.loads(sizes))
    if args.check:
        for kind, sizes in (("i3d-forward", dict(batch=1, frames=8, size=64)),
                            ("head-step", dict(batch=2, clips=20, d_model=64, parts=5))):
            side = start(args.check, kind, **sizes)
            wall, _ = side.time()
            side.close()
            print(f"{kind}: OK ({side.description}; one call {wall:.3f} s)")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
