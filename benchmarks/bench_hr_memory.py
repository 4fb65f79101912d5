"""What a 2048² BiRefNet costs in memory on the CPU, ONNX Runtime against the torch route, side by side.

The real BiRefNet_HR file (1.1 GB) cannot be fetched here, so the graph is a BiRefNet-shaped test network with its
operators (tests/support/torch_nets.py: a Swin-v1 stage with shifted windows and relative position bias, BiRefNet's
deformable convolutions exported through deform-conv2d-onnx-exporter, as BiRefNet's own notebook exports them) and
a decoder back to the input's size, exported at 1024² and at 2048² with fixed axes, as the authors' files are. Each
column runs in a fresh process: load the model, run it once on a real photo through ``remove()``; the peak resident
memory of that process (ru_maxrss) less its resident memory just before loading (runtimes imported) is printed, with the 2048²/1024² ratio
and torch/ORT ratio.

    bash benchmarks/run.sh bench_hr_memory          # (needs torch, onnx2torch, torchvision, deform-conv2d-onnx-exporter)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SIDES = (1024, 2048)


def export(side: int, folder: Path) -> Path:
    import torch
    import torchvision  # noqa: F401  (imported before the export traces deform_conv2d)
    from torch import nn

    from support import torch_nets  # the test networks

    torch_nets.register_deform_conv2d_exporter()

    class BiRefNetShaped(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.encoder = torch_nets.SwinNet(dim=16, heads=2, window=8)
            self.squeeze = nn.Conv2d(32, 4, 1)
            self.deform = torch_nets.DeformNet(channels=4, width=8)
            self.head = nn.Conv2d(4, 1, 3, padding=1)

        def forward(self, image):
            x = self.deform(self.squeeze(self.encoder(image)))
            x = nn.functional.interpolate(x, size=image.shape[-2:], mode="bilinear", align_corners=True)
            return self.head(x)

    path = folder / f"birefnet-shaped-{side}.onnx"
    torch_nets.export(BiRefNetShaped(), [torch.rand(1, 3, side, side)], path, ["input_image"], ["output_image"])
    return path


def measure(path: Path, provider: str) -> dict:
    """In this (fresh) process: peak RSS growth of loading ``path`` as a custom BiRefNet and running it once."""
    import numpy as np
    from PIL import Image

    from remove_background import remove

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1536, 2048, 3), np.uint8))
    import onnxruntime  # noqa: F401  (imports before the baseline: what is measured is the model and its run)

    if provider == "torch":
        import onnx2torch  # noqa: F401
        import torch  # noqa: F401
    before = _resident_kb()
    remove(image, model_path=path, model_family="birefnet", provider=provider)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"MB": (peak - before) / 1024}


def _resident_kb() -> int:
    """This process's resident memory now, in KiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--measure":
        print(json.dumps(measure(Path(sys.argv[2]), sys.argv[3])))
        return
    with tempfile.TemporaryDirectory() as work:
        rows = {}
        for side in SIDES:
            path = export(side, Path(work))
            for provider in ("cpu", "torch"):
                out = subprocess.run([sys.executable, __file__, "--measure", str(path), provider],
                                     capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
                if out.returncode:
                    raise SystemExit(out.stderr[-2000:])
                rows[(side, provider)] = json.loads(out.stdout.strip().splitlines()[-1])["MB"]
    print(f"{'input':>7} {'ORT (MB)':>9} {'torch (MB)':>11} {'torch/ORT':>10}")
    for side in SIDES:
        ort_mb, torch_mb = rows[(side, "cpu")], rows[(side, "torch")]
        print(f"{side:>6}² {ort_mb:9.0f} {torch_mb:11.0f} {torch_mb / ort_mb:10.2f}")
    for provider in ("cpu", "torch"):
        print(f"2048²/1024² on {provider}: {rows[(2048, provider)] / rows[(1024, provider)]:.2f}")


if __name__ == "__main__":
    main()
