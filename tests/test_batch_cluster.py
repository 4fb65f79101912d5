"""The batch path on a two-node Ray test cluster (``ray.cluster_utils.Cluster``: two raylets on this machine, one
CPU each, one models folder both read at the same path): ``run_batch(address=...)`` and the CLI's ``--address``
write outputs equal, byte for byte, to the single-image API's, with one worker on each node."""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the batch path needs the 'ray' extra")

from support.batch import (
    CORRUPT,
    OPTIONS,
    assert_manifest_lists_only_corrupt,
    assert_whole_and_equal,
    expected_outputs,
    make_inputs,
    private_ray_tmp,
    worker_processes,
)
from remove_background.batch import ray_job as batch  # noqa: E402
from remove_background.cli import commands as cli

pytestmark = pytest.mark.slow

GOOD = 8


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    with private_ray_tmp():  # its address file must not send other processes' ray.init() to this cluster
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        try:
            cluster.add_node(num_cpus=1)
            yield cluster
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()


def test_two_nodes_write_what_the_single_image_api_writes(two_nodes, tmp_path, u2netp_file):
    from support import fetch_weights

    models = tmp_path / "shared-models"  # the "shared mount": both nodes read it at this path
    fetch_weights.place(models)
    goods = make_inputs(tmp_path / "in", GOOD)
    expected = expected_outputs(goods, models)
    out = tmp_path / "out"
    raylets = {}

    def on_result(path, error):
        raylets.update((pid, parent) for pid, (parent, _) in worker_processes().items())

    report = batch.run_batch(tmp_path / "in", out, OPTIONS, workers=2, address=two_nodes.address,
                             models_dir=models, allow_download=False, batch_size=2, progress=False,
                             on_result=on_result)
    assert not ray.is_initialized()  # run_batch connected, and disconnected again
    assert (report.done, report.workers, report.ort_threads) == (GOOD, 2, 1)
    assert sorted(Path(p).name for p, _ in report.failed) == sorted(CORRUPT)
    assert len(set(raylets.values())) == 2, f"the workers did not run under two nodes' raylets: {raylets}"
    assert_whole_and_equal(out, expected)
    assert_manifest_lists_only_corrupt(out)

    # the command line against the same cluster: all written outputs are complete, only the corrupt inputs redone
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    err = io.StringIO()
    with redirect_stderr(err):
        code = cli.main(["batch", str(tmp_path / "in"), str(out), "--address", two_nodes.address, "--workers", "2",
                         "--models-dir", str(models), "--no-download", "--model", "u2netp", "--no-progress"])
    assert code == 1, err.getvalue()[-3000:]
    assert f"0 written, {GOOD} already complete, {len(CORRUPT)} failed" in err.getvalue()
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.png")} == stamps
    assert_manifest_lists_only_corrupt(out)
