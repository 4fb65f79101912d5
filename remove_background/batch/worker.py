"""What each Ray actor runs: ``_Remover`` decodes, removes (the single-image API) and PNG-encodes each file."""

from __future__ import annotations

import io
import os
import time
from typing import Optional

from .job import PNG_LEVEL, build_options


def remove_one(image, options, models_dir, device, allow_download):
    """The single-image API, exactly as the CLI calls it."""
    from ..pipeline import remove

    return remove(image, options, models_dir=models_dir, device=device, allow_download=allow_download)


def encode_png(image, level: int = PNG_LEVEL) -> bytes:
    """PNG bytes of ``image`` at zlib ``level`` (``image.save(path)``'s bytes when ``level`` is 6)."""
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=level)
    return buf.getvalue()


class _Remover:
    """One per Ray actor: builds the options once, creates its session once (the process's session cache), then
    decodes, removes and encodes each file. A file that fails is returned with its error; the job goes on.

    ``images_at_once`` threads share each call's images, so one image's decoding and PNG encoding overlap another's
    model run. On CPUs (``cpu_runs``) the model runs stay one at a time in the actor, so its ORT threads (its share
    of the cores) are never oversubscribed; only the decoding and encoding go beside them.

    A model that does not load here (a GPU provider whose libraries fail, a graph that does not convert, a corrupt
    file without a published checksum) is not raised: Ray would restart the actor forever. Every row then carries
    that error with ``fatal`` set, and the driver stops the job with it."""

    def __init__(self, options: dict, models_dir, device, allow_download, ort_threads, png_level=PNG_LEVEL,
                 images_at_once: int = 1, cpu_runs: Optional[int] = None):
        if ort_threads:
            os.environ["OMP_NUM_THREADS"] = str(ort_threads)  # backends/run_gate.ort_threads reads it
        if cpu_runs:
            from ..backends.run_gate import CPU_GATE

            CPU_GATE.reset(cpu_runs)
        self.options = build_options(options)
        self.models_dir, self.device, self.allow_download = models_dir, device, allow_download
        self.mask_only = self.options.output_mode == "mask_only"
        self.png_level = png_level
        self.pool = None
        if images_at_once > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(images_at_once, thread_name_prefix="remove-background-image")
        self.setup_error = ""
        try:
            from ..pipeline import load_models

            load_models(self.options, models_dir, device, allow_download)  # the model, and its refiner if asked for
        except Exception as e:  # the driver stops the job with it (see the class docstring)
            self.setup_error = f"{type(e).__name__}: {e}"

    def _one(self, data: bytes) -> tuple[bytes, bytes, str, float]:
        from PIL import Image

        t0 = time.perf_counter()
        cut = mask = b""
        error = ""
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                result = remove_one(image, self.options, self.models_dir, self.device, self.allow_download)
            if not self.mask_only:
                cut = encode_png(result.image, self.png_level)
            mask = encode_png(result.mask, self.png_level)
        except Image.UnidentifiedImageError:
            error = "UnidentifiedImageError: not an image file that Pillow can read"
        except Exception as e:  # one bad file never stops the job: it goes to the failure manifest
            error = f"{type(e).__name__}: {e}"
        return cut, mask, error, time.perf_counter() - t0

    def __call__(self, batch: dict) -> dict:
        from ..backends.run_gate import CPU_GATE

        started = time.time()
        data = list(batch["bytes"])
        if self.setup_error:
            results = [(b"", b"", self.setup_error, 0.0)] * len(data)
        else:
            model_before = CPU_GATE.run_seconds
            results = list(self.pool.map(self._one, data) if self.pool and len(data) > 1 else map(self._one, data))
        model_share = 0.0 if self.setup_error else (CPU_GATE.run_seconds - model_before) / max(1, len(data))
        out: dict[str, list] = {"path": [str(p) for p in batch["path"]], "cutout": [], "mask": [], "error": [],
                                "seconds": [], "model_seconds": [], "started": [],
                                "fatal": [bool(self.setup_error)] * len(data)}
        for cut, mask, error, seconds in results:
            out["cutout"].append(cut)
            out["mask"].append(mask)
            out["error"].append(error)
            out["seconds"].append(seconds)
            out["model_seconds"].append(model_share)  # CPU model runs (0 on a GPU)
            out["started"].append(started)
        return out
