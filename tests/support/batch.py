"""Shared by the batch cluster and fault tests: small inputs with a few corrupt ones, the single-image API's PNG
bytes, checks of an output folder, Ray's worker processes (read from /proc), and a private Ray temp folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from remove_background.batch import ray_job as batch
from remove_background.batch import outputs as bo
from remove_background.pipeline import remove

OPTIONS = {"model": "u2netp"}
CORRUPT = ("not-an-image.jpg", "truncated.jpg", "empty.png")
WORKER_TITLE = "MapWorker(MapBatches(_Remover))"  # Ray's process title for our actors


def make_inputs(folder: Path, count: int) -> list:
    """``count`` small good images (JPEG, PNG with alpha, grey) and the corrupt ones; returns the good paths."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    goods = []
    for i in range(count):
        photo = Image.fromarray(photos[i % 4]).resize((120 + 9 * i, 96 + 7 * i))
        if i % 4 == 1:
            photo = photo.convert("RGBA")
            photo.putalpha(Image.new("L", photo.size, 210))
            path = folder / f"img{i:02d}.png"
        elif i % 4 == 2:
            photo, path = photo.convert("L"), folder / f"img{i:02d}.png"
        else:
            path = folder / f"img{i:02d}.jpg"
        photo.save(path, **({"quality": 90} if path.suffix == ".jpg" else {}))
        goods.append(path)
    (folder / "not-an-image.jpg").write_bytes(b"this is text, not a JPEG")
    whole = goods[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.png").write_bytes(b"")
    return goods


def expected_outputs(goods: list, weights: Path, options: dict = OPTIONS) -> dict:
    """{input name: (cut-out PNG, mask PNG)}: the single-image API's result, PNG-encoded as the batch path does."""
    want = {}
    for src in goods:
        with Image.open(src) as image:
            image.load()
            result = remove(image, models_dir=weights, **options)
        want[src.name] = (batch.encode_png(result.image), batch.encode_png(result.mask))
    return want


def assert_whole_and_equal(out: Path, expected: dict) -> None:
    """Every good input's outputs equal the API's; no temp file, and nothing else under an output name."""
    for name, (cut, mask) in expected.items():
        cut_path, mask_path = bo.output_paths(out, Path(name), mask_only=False)
        assert cut_path.read_bytes() == cut, f"cut-out of {name} differs from remove()'s"
        assert mask_path.read_bytes() == mask, f"mask of {name} differs from remove()'s"
    assert not list(out.rglob("*" + bo.TEMP_MARK + "*")), "a temp file was left"
    names = {p.name for name in expected for p in bo.output_paths(out, Path(name), False)}
    strays = {p.name for p in out.glob("*.png")} - names
    assert not strays, f"outputs for no good input: {strays}"


def assert_nothing_partial(out: Path) -> None:
    """Whatever stands under an output's name is a whole PNG (a killed job may leave temp files, never halves)."""
    for p in out.rglob("*.png"):
        if bo.TEMP_MARK not in p.name:
            assert bo.png_is_complete(p), f"{p} is not a whole PNG"


def assert_manifest_lists_only_corrupt(out: Path) -> None:
    import json

    manifest = json.loads((out / bo.MANIFEST_NAME).read_text())
    assert sorted(Path(f["input"]).name for f in manifest["failed"]) == sorted(CORRUPT), manifest["failed"]


def worker_processes() -> dict:
    """{pid: (parent pid, process title)} of every live Ray worker running our actor, on this machine."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if WORKER_TITLE in title and fields[0] != "Z":
            found[int(entry)] = (int(fields[1]), title)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(pid: int) -> list:
    """Every live process under ``pid`` (its children, theirs, ...)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        out += kids
        todo += kids
    return out


@contextlib.contextmanager
def private_ray_tmp():
    """RAY_TMPDIR in a short private folder: a Ray started here neither joins another Ray on this machine (ray.init()
    reads the last cluster's address from the temp folder) nor announces itself to one. Short, for Ray's sockets."""
    folder = tempfile.mkdtemp(prefix="rb-ray-", dir="/tmp")
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = folder
    try:
        yield folder
    finally:
        if old is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old
        shutil.rmtree(folder, ignore_errors=True)
