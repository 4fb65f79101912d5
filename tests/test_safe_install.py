"""The commands we print fit the environment they are printed in: pip where it has pip, uv (``uv pip ... --python``)
where it has none, as in InvokeAI's launcher. Installing for real is tested in test_install_pristine.py."""

from __future__ import annotations

import importlib.util
import io
import sys

import pytest

from remove_background.install import dependencies

from remove_background.cli import doctor

from remove_background.install import safe_install


@pytest.fixture
def no_pip(monkeypatch):
    """This interpreter as a ``uv venv`` has it: no pip module, uv on PATH."""
    real = importlib.util.find_spec
    monkeypatch.setattr(safe_install.importlib.util, "find_spec", lambda name, *a: None if name == "pip" else real(name, *a))
    monkeypatch.setattr(safe_install.shutil, "which", lambda name: "/opt/launcher/uv" if name == "uv" else None)


def test_pip_environment_gets_pip_commands():
    assert safe_install.find_tool().name == "pip"
    assert safe_install.package_command("x==1") == f"{sys.executable} -m pip install x==1"
    assert safe_install.reinstall_command("y==2") == f"{sys.executable} -m pip install --no-deps --force-reinstall y==2"


def test_uv_environment_gets_uv_commands(no_pip):
    assert safe_install.find_tool().name == "uv"
    assert safe_install.package_command("x==1") == f"/opt/launcher/uv pip install --python {sys.executable} x==1"
    assert safe_install.reinstall_command("y==2").endswith("--no-deps --reinstall y==2")


def test_no_pip_no_uv_says_to_use_the_dev_console(monkeypatch):
    monkeypatch.setattr(safe_install.importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(safe_install.shutil, "which", lambda name: None)
    with pytest.raises(safe_install.InstallError, match="Dev Console"):
        safe_install.find_tool()


def test_missing_dependency_names_install_py_of_the_clone(monkeypatch, tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "install.py").write_text("")
    monkeypatch.setenv("REMOVE_BACKGROUND_SOURCE", str(clone))
    monkeypatch.setenv("REMOVE_BACKGROUND_INVOKEAI_ROOT", str(tmp_path / "root"))
    monkeypatch.setattr(dependencies, "missing", lambda: ["pymatting"])
    monkeypatch.setattr(dependencies, "_checked", False)
    with pytest.raises(dependencies.DependencyMissingError) as e:
        dependencies.require()
    assert f"{sys.executable} {clone / 'install.py'} --root {tmp_path / 'root'}" in str(e.value)


def test_without_a_clone_the_missing_distributions_never_include_opencv_beside_invokeai(monkeypatch, no_pip):
    monkeypatch.delenv("REMOVE_BACKGROUND_SOURCE", raising=False)
    monkeypatch.setattr(dependencies, "source_checkout", lambda: None)
    command = dependencies.install_command(["cv2", "pymatting"])
    assert command.endswith("install --python " + sys.executable + " pymatting")  # InvokeAI is installed here


def test_doctor_prints_uv_commands_in_a_uv_environment(no_pip, tmp_path):
    out = io.StringIO()
    doctor.run(root=tmp_path, models_dir=tmp_path, out=out, available=["CPUExecutionProvider"])
    assert "installs with: /opt/launcher/uv pip install --python" in out.getvalue()


def test_removal_plan_keeps_what_something_else_needs(monkeypatch):
    dists = {
        "remove-background": safe_install.Dist("remove-background", "1.0.0", ("pymatting",)),
        "pymatting": safe_install.Dist("PyMatting", "1.1.16", ("numba",)),
        "numba": safe_install.Dist("numba", "0.68.1", ("llvmlite",)),
        "llvmlite": safe_install.Dist("llvmlite", "0.50.0"),
        "other-node-pack": safe_install.Dist("other-node-pack", "2.0", ("numba>=0.60",)),
    }
    monkeypatch.setattr(safe_install, "snapshot", lambda with_files=False: dists)
    manifest = {"added": {"PyMatting": "1.1.16", "numba": "0.68.1", "llvmlite": "0.50.0"}}
    remove, kept = safe_install.removal_plan("remove-background", manifest)
    assert remove == ["PyMatting", "remove-background"]
    assert any("numba (needed by other-node-pack)" in k for k in kept)
