"""Benchmark 6: what DHO's second head costs (the paper's Table 9), on the harness's own
students for 1000 classes: parameters, multiply-accumulates per image and inference
throughput of the single-head student (CE / KD) against the dual-head one (DHO), with the
paper's numbers beside.

    python -m benchmarks.heads_cost                                  # every Table 9 student, CPU
    python -m benchmarks.heads_cost --students resnet18 --device cuda --batch 256 --rounds 5

- parameters: counted on the model ``dho train`` builds (``build_student``, random init,
  ``heads`` 1 or 2), in millions;
- GMACs: ``torch.utils.flop_counter`` FLOPs of one forward at the student's input size,
  halved: the paper's "GFLOPs" are multiply-accumulates (torchvision's convention: its
  ResNet-18 is 1.81 "GFLOPS" at 224 px);
- throughput: images per second of an inference forward (no gradient) at ``--batch``,
  the two students interleaved round by round (median of ``--rounds``), so their ratio is
  the figure to compare; the paper's are on an RTX 4090.

The harness's ViT students are CLIP image towers (a 512-/768-d projection before the
heads), the paper's Table 9 ViT rows match torchvision's ImageNet ViT-B/16 and ViT-L/16
(86.57 M / 304.33 M parameters with one 1000-class head); their absolute parameters and
MACs therefore differ, the second head's increment is the comparable figure.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from .common import machine, machine_line, table, write_json

NUM_CLASSES = 1000
# harness student -> Table 9's student name (dho/results/reported.csv)
PAPER_NAMES = {"mobilenet_v2": "mobilenet_v2", "resnet18": "ResNet-18", "dino_resnet50": "ResNet-50",
               "clip_vit_b16": "ViT-B/16", "clip_vit_l14_336": "ViT-L/16 (as printed)"}
METRICS = ("params_M", "gflops", "throughput_img_per_s_rtx4090")


def paper_values(reported, student: str, method: str) -> dict[str, float]:
    """Table 9's numbers of ``student`` / ``method`` from the reported table (``paper_<metric>``)."""
    from dho.results.reported import lookup

    return {f"paper_{k}": lookup(reported, "Tab9", k, student=PAPER_NAMES[student], method=method) for k in METRICS}


def build(student: str, heads: int, device):
    from dho.models.students import build_student

    model = build_student(student, NUM_CLASSES, heads=heads, pretrained=False, progress=False)
    return model.to(device).eval()


def gmacs(model, device) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, model.image_size, model.image_size, device=device)
    # with autograd on: under no_grad an eval nn.MultiheadAttention takes PyTorch's fused
    # fast path, whose projections the counter misses (ViT-B/16: 11.3 GMACs instead of 17.6)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2 / 1e9


def images_per_s(model, batch: int, device) -> float:
    import torch

    x = torch.rand(batch, 3, model.image_size, model.image_size, device=device)
    with torch.no_grad():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return batch / (time.perf_counter() - t0)


def measure(student: str, batch: int, rounds: int, device, reported) -> list[dict[str, Any]]:
    models = {"single head": build(student, 1, device), "dho": build(student, 2, device)}
    speeds: dict[str, list[float]] = {m: [] for m in models}
    for model in models.values():  # warm-up (allocator, kernels)
        images_per_s(model, batch, device)
    for _ in range(rounds):
        for method, model in models.items():
            speeds[method].append(images_per_s(model, batch, device))
    rows = []
    for method, model in models.items():
        rows.append({"student": student, "method": method,
                     "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
                     "gmacs": gmacs(model, device), "img_per_s": statistics.median(speeds[method]),
                     **paper_values(reported, student, method)})
    rows[1]["throughput_ratio"] = rows[1]["img_per_s"] / rows[0]["img_per_s"]
    rows[1]["paper_throughput_ratio"] = rows[1]["paper_throughput_img_per_s_rtx4090"] / \
        rows[0]["paper_throughput_img_per_s_rtx4090"]
    return rows


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", nargs="+", default=list(PAPER_NAMES), choices=list(PAPER_NAMES))
    p.add_argument("--batch", type=int, default=16, help="images per timed forward (default 16)")
    p.add_argument("--rounds", type=int, default=3, help="timed forwards per student and head count (median)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(machine_line(args.device))
    from dho.results.reported import load_reported

    reported = load_reported()  # read once
    rows = [r for s in args.students for r in measure(s, args.batch, args.rounds, device, reported)]
    print(f"Table 9 on the harness's students, {NUM_CLASSES} classes, batch {args.batch}, {args.device} "
          f"(paper: RTX 4090)")
    def shown(r: dict[str, Any]) -> dict[str, Any]:
        two = ("params_M", "paper_params_M", "gmacs", "paper_gflops")
        three = ("throughput_ratio", "paper_throughput_ratio")
        return {**r, **{k: f"{r[k]:.2f}" for k in two}, **{k: f"{r[k]:.3f}" for k in three if k in r},
                "img_per_s": f"{r['img_per_s']:.1f}"}

    print(table([shown(r) for r in rows],
                ["student", "method", "params_M", "paper_params_M", "gmacs", "paper_gflops", "img_per_s",
                 "throughput_ratio", "paper_throughput_img_per_s_rtx4090", "paper_throughput_ratio"]))
    write_json(args.json, {"machine": machine(args.device), "batch": args.batch, "rounds": args.rounds,
                           "device": args.device, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
