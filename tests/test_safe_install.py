"""The commands we print fit the environment they are printed in: pip where it has pip, uv (``uv pip ... --python``)
where it has none, as in InvokeAI's launcher. Installing for real is tested in test_install_pristine.py."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import types
from pathlib import Path

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


# --- one function finds an InvokeAI root (invokeai_adapter/config.find_root); each caller's differences are its
# parameters: install.py (assume_home="always", its clone), doctor ("if_present" where InvokeAI is installed), the
# run-time install command ("never": --root only when known)


@pytest.fixture
def no_root_hints(monkeypatch, tmp_path):
    """No root from the environment or a running InvokeAI; a home without ~/invokeai."""
    from remove_background.invokeai_adapter import config

    for name in ("INVOKEAI_ROOT", config.SHIM_ROOT_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, config.RUNNING_CONFIG, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return config


def test_find_root_takes_the_first_it_knows(no_root_hints, monkeypatch, tmp_path):
    config = no_root_hints
    clone_root = tmp_path / "cloned-into"
    (clone_root / "nodes" / "remove-background").mkdir(parents=True)
    (clone_root / "invokeai.yaml").write_text("schema_version: 4.0.2\n")
    clone = clone_root / "nodes" / "remove-background"
    assert config.find_root(clone=clone) == clone_root  # a clone in <root>/nodes/
    assert config.find_root(clone=tmp_path / "elsewhere" / "clone") is None  # not beside an invokeai.yaml
    monkeypatch.setenv("INVOKEAI_ROOT", str(tmp_path / "env"))
    assert config.find_root(clone=clone) == tmp_path / "env"
    running = types.SimpleNamespace(get_config=lambda: types.SimpleNamespace(root_path=tmp_path / "running"))
    monkeypatch.setitem(sys.modules, config.RUNNING_CONFIG, running)  # stands in for InvokeAI's loaded config
    assert config.find_root(clone=clone) == tmp_path / "running"
    monkeypatch.setenv(config.SHIM_ROOT_VARIABLE, str(tmp_path / "shim"))
    assert config.find_root(clone=clone) == tmp_path / "shim"
    assert config.find_root("~/given", clone=clone) == tmp_path / "home" / "given"  # explicit first, ~ expanded


def test_find_root_assumes_home_only_as_asked(no_root_hints, tmp_path):
    config = no_root_hints
    home_root = tmp_path / "home" / "invokeai"
    assert config.find_root() is None
    assert config.find_root(assume_home="if_present") is None  # doctor: not a folder that is not there
    assert config.find_root(assume_home="always") == home_root  # install.py: then says it does not exist
    home_root.mkdir()
    assert config.find_root(assume_home="if_present") == home_root
    assert config.find_root() is None  # the run-time install command never guesses
    with pytest.raises(ValueError, match="assume_home"):
        config.find_root(assume_home="sometimes")


def test_the_run_time_install_command_names_the_root_only_when_known(no_root_hints, monkeypatch, tmp_path):
    (tmp_path / "home" / "invokeai").mkdir()  # there, but not known to be the one
    monkeypatch.delenv("REMOVE_BACKGROUND_SOURCE", raising=False)
    assert dependencies.source_checkout() == Path(__file__).resolve().parents[1]  # this checkout holds install.py
    assert "--root" not in dependencies.install_command(["pymatting"])
    monkeypatch.setenv("INVOKEAI_ROOT", str(tmp_path / "r"))
    assert dependencies.install_command(["pymatting"]).endswith(f"install.py --root {tmp_path / 'r'}")


def test_doctor_assumes_home_only_where_invokeai_is_installed(no_root_hints, monkeypatch, tmp_path):
    (tmp_path / "home" / "invokeai").mkdir()
    out = io.StringIO()
    doctor.run(models_dir=tmp_path, out=out, available=["CPUExecutionProvider"])
    assert f"InvokeAI: 6.14.2, root {tmp_path / 'home' / 'invokeai'}" in out.getvalue()
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda dist: None if dist == "invokeai" else real(dist))
    out = io.StringIO()
    doctor.run(models_dir=tmp_path, out=out, available=["CPUExecutionProvider"])
    assert "InvokeAI: not installed in this environment\n" in out.getvalue()


def test_install_py_loads_the_root_finder_and_refuses_a_missing_root(tmp_path):
    r = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "install.py"), "--root",
                        str(tmp_path / "nowhere"), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"InvokeAI root {tmp_path / 'nowhere'} does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_node_pack_shim_install_py_writes_runs(monkeypatch, tmp_path):
    """The shim's text as install.py writes it runs: it records the clone and the root, then imports the node
    module (stood in for here: the real one needs InvokeAI, run by test_install_pristine)."""
    spec = importlib.util.spec_from_file_location("_install_py", Path(__file__).resolve().parents[1] / "install.py")
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)
    for name in ("REMOVE_BACKGROUND_SOURCE", "REMOVE_BACKGROUND_INVOKEAI_ROOT"):
        monkeypatch.setenv(name, "")  # recorded, so that what the shim sets is undone after the test
        monkeypatch.delenv(name)
    import remove_background

    monkeypatch.setitem(sys.modules, "remove_background.invocation", types.ModuleType("remove_background.invocation"))
    monkeypatch.setattr(remove_background, "invocation", sys.modules["remove_background.invocation"], raising=False)
    exec(compile(install.SHIM_INIT.format(source=str(tmp_path / "clone"), root=str(tmp_path / "root")), "shim", "exec"),
         {"__name__": "remove_background_node"})
    assert os.environ["REMOVE_BACKGROUND_SOURCE"] == str(tmp_path / "clone")
    assert os.environ["REMOVE_BACKGROUND_INVOKEAI_ROOT"] == str(tmp_path / "root")
