"""The Ray Data batch path on a local Ray (2 CPUs) with the real u2netp weights: outputs equal to the single-image
API's byte for byte, resume after deleted and half-written outputs, the failure manifest, untouched inputs, and
errors for a missing model or provider before any work. (The output bookkeeping alone: test_batch_outputs.py; a
two-node cluster: test_batch_cluster.py; killed workers, a killed driver, an unwritable folder:
test_batch_faults.py.)"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="the batch path needs the 'ray' extra")

from remove_background.batch import ray_job as batch  # noqa: E402

from remove_background.cli import commands as cli
from remove_background.batch import outputs as bo  # noqa: E402
from remove_background.errors import ModelNotAvailableError, ProviderUnavailableError  # noqa: E402
from remove_background.pipeline import remove  # noqa: E402

pytestmark = pytest.mark.slow

OPTIONS = {"model": "u2netp", "mask_blur": 1.5}
CORRUPT = ("not-an-image.jpg", "truncated.jpg", "empty.png")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """17 good images (several modes and sizes, one in a sub-folder) and 3 corrupt ones."""
    from skimage import data

    folder = tmp_path_factory.mktemp("batch_in")
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    for i in range(17):
        photo = Image.fromarray(photos[i % 4])
        side = int(rng.integers(160, 420))
        photo = photo.resize((side, side * 3 // 4 + i))
        if i % 5 == 1:
            photo = photo.convert("RGBA")
            photo.putalpha(Image.new("L", photo.size, 200))
            photo.save(folder / f"img{i:02d}.png")
        elif i % 5 == 2:
            photo.convert("L").save(folder / f"img{i:02d}.png")
        else:
            photo.save(folder / f"img{i:02d}.jpg", quality=90)
    (folder / "sub").mkdir()
    (folder / "img00.jpg").rename(folder / "sub" / "img00.jpg")
    (folder / "not-an-image.jpg").write_bytes(b"this is text, not a JPEG")
    whole = (folder / "img03.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.png").write_bytes(b"")
    return folder


def fingerprint(folder: Path) -> dict:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def expected_pngs(src: Path, weights: Path, cli_bytes: bool = False) -> tuple[bytes, bytes]:
    """The single-image API's result as PNG bytes: the batch path's default level, or exactly what the CLI's
    ``image.save(path)`` writes."""
    with Image.open(src) as image:
        image.load()
        result = remove(image, models_dir=weights, **OPTIONS)
    if cli_bytes:
        def save(im):
            buf = io.BytesIO()
            im.save(buf, "PNG")
            return buf.getvalue()

        return save(result.image), save(result.mask)
    return batch.encode_png(result.image), batch.encode_png(result.mask)


def test_batch_equals_single_image_api_resumes_and_lists_failures(local_ray, images, weights, tmp_path):
    before = fingerprint(images)
    out = tmp_path / "out"
    argv = [str(images), str(out), "-r", "--workers", "2", "--models-dir", str(weights), "--no-download",
            "--model", "u2netp", "--mask-blur", "1.5", "--no-progress", "--png-level", "6"]
    assert cli.main(["batch", *argv]) == 1  # some files failed

    goods = sorted(p for p in images.rglob("*") if p.is_file() and p.name not in CORRUPT)
    assert len(goods) == 17
    for src in goods:
        rel = src.relative_to(images)
        cut, mask = bo.output_paths(out, rel, mask_only=False)
        want_cut, want_mask = expected_pngs(src, weights, cli_bytes=True)
        assert cut.read_bytes() == want_cut, f"cut-out of {rel} differs from remove()'s"
        assert mask.read_bytes() == want_mask, f"mask of {rel} differs from remove()'s"
    assert not list(out.rglob("*" + bo.TEMP_MARK + "*"))

    manifest = json.loads((out / bo.MANIFEST_NAME).read_text())
    failed = {Path(f["input"]).name: f["error"] for f in manifest["failed"]}
    assert set(failed) == set(CORRUPT)
    assert "UnidentifiedImageError" in failed["not-an-image.jpg"] and "truncated" in failed["truncated.jpg"]
    assert manifest["written"] == 17
    assert fingerprint(images) == before, "an input file was modified"

    # resume: one output deleted, one half-written (truncated in place), one replaced by garbage; the rest skipped
    cut3, _ = bo.output_paths(out, Path("img03.jpg"), False)
    _, mask5 = bo.output_paths(out, Path("img05.jpg"), False)
    cut8, _ = bo.output_paths(out, Path("img08.jpg"), False)
    cut3.unlink()
    whole = mask5.read_bytes()
    mask5.write_bytes(whole[: len(whole) - 20])
    cut8.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    untouched = bo.output_paths(out, Path("img04.jpg"), False)[0]
    stamp = untouched.stat().st_mtime_ns
    report = batch.run_batch(images, out, OPTIONS, workers=2, models_dir=weights, recursive=True,
                             allow_download=False, progress=False)
    assert (report.done, report.skipped, len(report.failed)) == (3, 14, 3)
    assert untouched.stat().st_mtime_ns == stamp
    for name in ("img03.jpg", "img05.jpg", "img08.jpg"):
        cut, mask = bo.output_paths(out, Path(name), False)
        assert (cut.read_bytes(), mask.read_bytes()) == expected_pngs(images / name, weights)

    # other options: nothing counts as complete; mask only writes masks; the manifest goes when nothing fails
    goods_only = tmp_path / "goods"
    goods_only.mkdir()
    for src in goods[:3]:
        (goods_only / src.name).write_bytes(src.read_bytes())
    out2 = tmp_path / "out2"
    first = batch.run_batch(goods_only, out2, {"model": "u2netp"}, workers=1, models_dir=weights, progress=False)
    assert (first.done, first.skipped, first.failed) == (3, 0, [])
    assert first.model_seconds > 0 and first.first_started is not None  # the benchmark's figures
    (out2 / bo.MANIFEST_NAME).write_text("{}")  # a stale manifest from an older run
    again = batch.run_batch(goods_only, out2, {"model": "u2netp", "output_mode": "mask_only"}, workers=1,
                            models_dir=weights, progress=False)
    assert (again.done, again.skipped) == (3, 0) and again.manifest is None
    assert not (out2 / bo.MANIFEST_NAME).exists()
    for src in goods_only.iterdir():
        mask = bo.output_paths(out2, Path(src.name), mask_only=True)[0]
        with Image.open(src) as image:
            want = remove(image, model="u2netp", models_dir=weights).mask
        assert np.array_equal(np.asarray(Image.open(mask)), np.asarray(want))
    # an output folder inside the input folder: its files are never taken as inputs
    inner = batch.run_batch(goods_only, goods_only / "cut", {"model": "u2netp"}, workers=1, recursive=True,
                            models_dir=weights, progress=False)
    assert (inner.done, inner.failed) == (3, [])


def test_missing_model_fails_before_any_work(images, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ModelNotAvailableError):
        batch.run_batch(images, out, {"model": "u2netp"}, models_dir=tmp_path / "empty", allow_download=False,
                        progress=False)
    assert not out.exists()
    code = cli.batch_main([str(images), str(out), "--models-dir", str(tmp_path / "empty"), "--no-download",
                       "--model", "u2netp", "--no-progress"])
    assert code == 2 and not out.exists()


def test_vitmatte_through_the_batch_path(local_ray, weights, tmp_path):
    """vitmatte and vitmatte_model travel to the workers, which load the refiner beside the model; a missing
    checkpoint fails before any work. The checkpoint here is a graph with ViTMatte's input and output
    (tests/support/vitmatte_graphs.py), recorded as verified against the catalog's sha256 the way model_files remembers a
    hashed file, since the workers read the catalog as it is."""
    import shutil

    from support import vitmatte_graphs
    from skimage import data

    from remove_background import catalog, model_files

    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, name in enumerate(("astronaut", "chelsea")):
        Image.fromarray(getattr(data, name)()).resize((300 + 40 * i, 220)).save(inputs / f"{name}.png")
    options = {"model": "u2netp", "vitmatte": True, "vitmatte_model": "small-composition-1k"}
    with pytest.raises(ModelNotAvailableError, match="vitmatte-small-composition-1k.onnx"):
        batch.run_batch(inputs, tmp_path / "none", options, models_dir=weights, allow_download=False, progress=False)
    assert not (tmp_path / "none").exists()

    folder = tmp_path / "models"
    shutil.copytree(weights, folder)
    graph = vitmatte_graphs.pointwise(folder, "vitmatte-small-composition-1k.onnx")
    model_files._remember_verified(graph, catalog.REFINERS["vitmatte-small-composition-1k"].primary_file.checksum)
    report = batch.run_batch(inputs, tmp_path / "out", options, workers=1, models_dir=folder, allow_download=False,
                             progress=False)
    assert (report.done, report.failed) == (2, [])
    for src in inputs.iterdir():
        mask = bo.output_paths(tmp_path / "out", Path(src.name), mask_only=False)[1]
        with Image.open(src) as image:
            want = remove(image, models_dir=folder, allow_download=False, **options).mask
        assert np.array_equal(np.asarray(Image.open(mask)), np.asarray(want))


def test_unavailable_provider_fails_before_any_work(images, weights, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ProviderUnavailableError):
        batch.run_batch(images, out, {"model": "u2netp", "provider": "openvino"}, models_dir=weights,
                        progress=False)
    assert not out.exists()


def test_gpu_workers_without_gpus_are_an_error_not_a_wait(local_ray, images, weights, tmp_path):
    with pytest.raises(ProviderUnavailableError, match="1 GPU, but the Ray cluster has 0"):
        batch.run_batch(images, tmp_path / "out", {"model": "u2netp"}, gpus_per_worker=1, models_dir=weights,
                        progress=False)
    assert not list((tmp_path / "out").glob("*.png"))


def test_bad_option_is_named(images, weights, tmp_path):
    with pytest.raises(ValueError, match="mask_blur"):
        batch.run_batch(images, tmp_path / "out", {"mask_blur": -1}, models_dir=weights, progress=False)
    with pytest.raises(TypeError, match="mask_blurr"):
        batch.run_batch(images, tmp_path / "out", {"mask_blurr": 1}, models_dir=weights, progress=False)


def test_worker_overlaps_two_images_with_one_model_run_at_a_time(weights, images):
    """In a CPU worker, two images are in flight (one decodes/encodes while the other runs the model), yet the
    model runs one at a time (the worker's ORT threads are its share of the cores), with the very same bytes."""
    from remove_background.backends import cache
    from remove_background.backends import run_gate

    files = sorted(images.glob("*.*"))[:6]
    batch_in = {"path": [str(p) for p in files], "bytes": [p.read_bytes() for p in files]}
    try:
        serial = batch._Remover({"model": "u2netp"}, str(weights), "cpu", False, None)(batch_in)
        cache.clear_sessions()  # the overlapped worker builds its own gated session
        worker = batch._Remover({"model": "u2netp"}, str(weights), "cpu", False, None, images_at_once=2, cpu_runs=1)
        overlapped = worker(batch_in)
        assert run_gate.CPU_GATE.slots == 1 and run_gate.CPU_GATE.peak == 1
        assert run_gate.CPU_GATE.waited > 0  # the two images really were in flight together
    finally:
        run_gate.CPU_GATE.reset()
        cache.clear_sessions()
    assert overlapped["path"] == serial["path"]
    for key in ("cutout", "mask", "error"):
        assert overlapped[key] == serial[key], key
    assert any(overlapped["error"]) and not all(overlapped["error"])
