"""The ONNX Runtime backend: a model file becomes an ``InferenceSession`` on the plan's providers.

After creating a session, the providers that really loaded are read back: an accelerator asked for that did not
load is a ``ProviderUnavailableError`` (``auto`` then takes its next route, an explicit choice fails). CPU sessions
share the process's CPU run gate (run_gate.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..catalog import ModelInfo
from ..errors import DependencyMissingError, ModelChecksumError
from .routes import CPU, ProviderPlan, check_loaded
from .run_gate import CPU_GATE, GatedSession, ort_threads


def import_onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError as e:
        from ..install.dependencies import install_command

        raise DependencyMissingError(
            f"onnxruntime is not installed in this Python environment ({e}). Install it with: "
            f"{install_command(['onnxruntime'])}"
        ) from None
    return ort


def session_options(ort) -> Any:
    """ONNX Runtime settings, each measured against ORT's defaults in benchmarks/bench_speed.py:
    all graph optimisations; intra-op threads from OMP_NUM_THREADS when set (else ORT's choice, one per
    physical core); idle worker threads sleep instead of spinning, so both cores are free at once for the
    two-thread steps after the model run."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = ort_threads()
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def create_sessions(info: ModelInfo, paths: list[Path], plan: ProviderPlan) -> list:
    """ONNX Runtime sessions for ``paths`` on ``plan``'s providers; raises if its accelerator did not load. A
    half-precision row runs its files' float16 twins (half_precision.py)."""
    from .. import families
    from .half_precision import backend_paths

    paths = backend_paths(info, paths)
    ort = import_onnxruntime()
    opts = session_options(ort)
    opts.enable_cpu_mem_arena = families.of(info).ort_arena  # the family's (ViTMatte: memory back after a run)
    sessions = [_session(ort, path, opts, plan) for path in paths]
    check_loaded(plan, list(sessions[0].get_providers()), info.name)
    return sessions


def _session(ort, path: Path, opts, plan: ProviderPlan):
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=list(plan.providers))
    except Exception as e:  # ORT raises its own InvalidProtobuf / InvalidGraph / Fail types
        text = str(e)
        if type(e).__name__ in ("InvalidProtobuf", "InvalidGraph") or "Protobuf parsing failed" in text:
            raise ModelChecksumError(
                f"Model file {path} could not be loaded by ONNX Runtime; it looks corrupt or truncated. "
                f"Delete it and download it again. ({text.strip()[:300]})"
            ) from None
        raise


def gated(sessions: list) -> tuple[list, list[str]]:
    """(the sessions, CPU ones behind the CPU run gate; the providers that loaded)."""
    loaded = list(sessions[0].get_providers())
    if loaded == [CPU]:
        sessions = [GatedSession(s, CPU_GATE) for s in sessions]
    return sessions, loaded
