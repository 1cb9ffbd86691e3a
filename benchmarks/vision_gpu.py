"""The vision checks that need a GPU, as one short prepared script (CI has no GPU; run it where one
is at hand): images/s of the main CNN models in fp32, bf16 autocast and fp16 autocast with the
gradient scaler (the fp16 path of the trainer), and the image input layer on the GPU against the CPU.

Everything runs through :class:`polytask.train.trainer.Trainer` on generated uint8 images held in
a :class:`~polytask.data.table.TensorTable` (the data directory is not needed): two 10-way tasks,
one epoch per measurement after a warm-up epoch, batch 256 (faces: 128). Training images/s counts
the epoch's optimiser steps (``train_seconds`` of the trainer's record); inference images/s times
the model's forward passes over the same table in eval mode.

Run: ``python benchmarks/vision_gpu.py`` (``--device cpu`` runs the same code on the CPU, fp16
skipped, as a smoke test). Writes ``results/vision_gpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402
from vision import (ARCHITECTURES, SINGLE, SINGLE_MODEL, count_parameters, face_model,  # noqa: E402
                    face_resnet, images_per_second, matched)

def image_input_matches(device: str) -> float:
    """Largest difference between the image input layer's output on ``device`` and on the CPU (eval)."""
    import torch

    from polytask.nn.image_input import ImageInputs

    module = ImageInputs({"img": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.4], "flip": True, "crop": 2}}).eval()
    x = torch.randint(0, 256, (16, 3, 20, 20), dtype=torch.uint8)
    cpu = module({"dense:img": x})["dense:img"]
    other = module.to(device)({"dense:img": x.to(device)})["dense:img"].cpu()
    module.train()
    assert module({"dense:img": x.to(device)})["dense:img"].shape == x.shape
    return float((cpu - other).abs().max())


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rows", type=int, default=20480, help="generated training images per measurement")
    ap.add_argument("--name", default="vision_gpu")
    args = ap.parse_args()
    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu for a smoke test")
    target = count_parameters(SINGLE_MODEL)
    models = {SINGLE: (SINGLE_MODEL, (1, 28, 28), 256)}
    for label in ("Shared bottom", "MMoE (4 experts)", "Cross-stitch (per channel)"):
        models[label] = (matched(ARCHITECTURES[label], target)[0], (1, 28, 28), 256)
    models["Small CNN (faces)"] = (face_model(), (3, 48, 48), 128)
    models["Small ResNet (faces)"] = (face_resnet(), (3, 48, 48), 128)
    rows = []
    for amp in ("none", "bf16", "fp16") if on_gpu else ("none", "bf16"):
        for label, (model, image, batch) in models.items():
            r = images_per_second(model, image, device=args.device, amp=amp, rows=args.rows, batch=batch)
            rows.append({"model": label, "amp": amp, "image": "x".join(map(str, image)), **r})
            print(f"{label} {amp}: {r['train']:,.0f} train / {r['inference']:,.0f} inference images/s", flush=True)
    diff = image_input_matches(args.device)
    device_name = torch.cuda.get_device_name() if on_gpu else "cpu"
    lines = [f"# Vision on {device_name}: images/s by precision", "", __doc__.split("Run:")[0].strip(), "",
             "| model | image | amp | params | training images/s | inference images/s | last train loss |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['image']} | {r['amp']} | {r['parameters']:,} | {r['train']:,.0f} | "
                     f"{r['inference']:,.0f} | {r['final_train_loss']:.3f} |")
    lines += ["", f"Image input layer, {args.device} against the CPU (eval): max abs difference {diff:.2e}.", "",
              f"Command: `python benchmarks/vision_gpu.py {' '.join(sys.argv[1:])}`".rstrip()]
    text = "\n".join(lines) + "\n"
    print(text)
    write_results(args.name, {"environment": environment(), "device": device_name, "rows": rows,
                              "image_input_max_diff": diff}, text)


if __name__ == "__main__":
    main()
