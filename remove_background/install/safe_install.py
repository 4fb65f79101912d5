"""Add packages to a Python environment (InvokeAI's) without changing anything already in it.

Standard library only: ``install.py`` loads this file by path before the package is installed, and the node and
``doctor`` use it to print commands that fit the environment they run in (pip, or uv where there is no pip).

An install (``install``) goes:

1. Snapshot every installed distribution: name, version, files.
2. Resolve with every installed distribution pinned to the version it has (constraints), so the plan can only
   add. That follows whatever InvokeAI itself pins today or tomorrow: no caps to edit per InvokeAI release. When
   no such plan exists, resolve again unpinned to name what would change, and for whom, and stop.
3. Stage the new distributions in a temporary folder (no dependencies) and compare their files with the files
   installed distributions own: two wheels that write the same file (``opencv-python-headless`` over
   ``opencv-contrib-python``'s ``cv2``) stop the install, naming both.
4. Install exactly those distributions, without dependencies. Then every distribution of step 1 must still have
   its version and ``pip check`` / ``uv pip check`` must report nothing new; otherwise what was added is removed.
5. Record what was added (``<environment>/remove-background-install.json``), so that uninstall removes that and
   nothing else.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

MANIFEST = "remove-background-install.json"
MIN_PIP = (22, 2)  # --dry-run --report
_VERSION = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[A-Za-z0-9.]+)?$")
_UV_LINE = re.compile(r"^ ([+\-~]) ([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s]+)")


class InstallError(Exception):
    """The install (or uninstall) cannot go ahead; the message says why and what to do. Nothing was changed
    unless the message says otherwise."""


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def quote(parts: Iterable[str]) -> str:
    """A command line for people to copy: POSIX quoting, or double quotes on Windows."""
    if os.name == "nt":
        return " ".join(f'"{p}"' if (" " in p or not p) else p for p in parts)
    return " ".join(shlex.quote(str(p)) for p in parts)


# --- the tool: pip where the environment has it, else uv -------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """How to run pip's verbs on this interpreter: ``python -m pip ...`` or ``uv pip ... --python python``."""

    name: str  # "pip" or "uv"
    prefix: tuple[str, ...]
    python: str

    def command(self, verb: str, *args: str) -> list[str]:
        if self.name == "uv":
            return [*self.prefix, verb, "--python", self.python, *args]
        return [*self.prefix, verb, "--disable-pip-version-check", "--no-input", *args]

    def shown(self, verb: str, *args: str) -> str:
        """The command as people type it (without pip's quiet flags)."""
        if self.name == "uv":
            return quote([*self.prefix, verb, "--python", self.python, *args])
        return quote([*self.prefix, verb, *args])


def _pip_version() -> Optional[tuple[int, ...]]:
    try:
        return tuple(int(p) for p in metadata.version("pip").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return None


def find_tool(prefer: Optional[str] = None, python: Optional[str] = None) -> Tool:
    """pip when this interpreter has it (a ``python -m venv`` environment), else uv (InvokeAI's launcher makes its
    environment with ``uv venv``, which has no pip, and its Dev Console puts ``uv`` on PATH)."""
    python = python or sys.executable
    has_pip = importlib.util.find_spec("pip") is not None
    uv = shutil.which("uv")
    uv_prefix = (uv, "pip") if uv else ((python, "-m", "uv", "pip") if importlib.util.find_spec("uv") else None)
    if prefer == "uv" or (prefer is None and not has_pip and uv_prefix):
        if not uv_prefix:
            raise InstallError("uv is not on PATH. Open InvokeAI's launcher and use its Dev Console (it puts uv on "
                               "PATH), or install uv.")
        return Tool("uv", uv_prefix, python)
    if has_pip:
        version = _pip_version()
        if version is not None and version < MIN_PIP:
            raise InstallError(
                f"pip {'.'.join(map(str, version))} cannot plan an install before making it (it needs pip 22.2 or "
                f"newer). Upgrade pip first: {quote([python, '-m', 'pip', 'install', '--upgrade', 'pip'])}")
        return Tool("pip", (python, "-m", "pip"), python)
    raise InstallError(
        f"This Python environment ({python}) has neither pip nor uv. If it is InvokeAI's, open InvokeAI's launcher "
        f"and run the same command in its Dev Console, which puts uv on PATH.")


def tool_or_none(prefer: Optional[str] = None) -> Optional[Tool]:
    try:
        return find_tool(prefer)
    except InstallError:
        return None


def _tool_for_commands() -> Tool:
    return tool_or_none() or Tool("uv", ("uv", "pip"), sys.executable)


def package_command(*args: str) -> str:
    """``pip install ARGS`` as it must be typed in this environment (``uv pip install --python ...`` without pip)."""
    return _tool_for_commands().shown("install", *args)


def reinstall_command(requirement: str) -> str:
    """Put one distribution's own files back in place, touching nothing else."""
    tool = _tool_for_commands()
    return tool.shown("install", "--no-deps", "--force-reinstall" if tool.name == "pip" else "--reinstall", requirement)


# --- what is installed --------------------------------------------------------------------------------------------


@dataclass
class Dist:
    name: str
    version: str
    requires: tuple[str, ...] = ()
    files: frozenset = frozenset()


def snapshot(with_files: bool = False) -> dict[str, Dist]:
    """Every distribution this interpreter sees (the first one of each name, as importlib picks it)."""
    importlib.invalidate_caches()
    found: dict[str, Dist] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name or canonical(name) in found:
            continue
        files: frozenset = frozenset()
        if with_files and dist.files:
            files = frozenset(os.path.normcase(os.path.realpath(dist.locate_file(f))) for f in dist.files)
        found[canonical(name)] = Dist(name, dist.version, tuple(dist.requires or ()), files)
    return found


def versions(dists: dict[str, Dist]) -> dict[str, str]:
    return {k: d.version for k, d in dists.items()}


def _requirement_name(text: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", text)
    return canonical(m.group(1)) if m else ""


def hard_requirements(dist: Dist) -> list[tuple[str, str]]:
    """(name, requirement text) for what ``dist`` needs without extras, markers evaluated here (as pip check does)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # no packaging: keep every requirement that is not behind an extra (conservative)
        return [(_requirement_name(r), r) for r in dist.requires if "extra" not in r.partition(";")[2]]
    out = []
    for text in dist.requires:
        try:
            req = Requirement(text)
        except Exception:
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append((canonical(req.name), text))
    return out


def _violates(requirement: str, version: str) -> bool:
    try:
        from packaging.requirements import Requirement

        return not Requirement(requirement).specifier.contains(version, prereleases=True)
    except Exception:
        return True


def run_check(tool: Tool) -> list[str]:
    """The problem lines of ``pip check`` / ``uv pip check`` (empty when the environment is consistent)."""
    r = subprocess.run(tool.command("check"), capture_output=True, text=True)
    if r.returncode == 0:
        return []
    lines = [ln.strip() for ln in (r.stdout + r.stderr).splitlines()]
    noise = ("Using Python", "Checked ", "Found ", "WARNING: Location")
    return sorted(ln for ln in lines if ln and not ln.startswith(noise))


# --- planning -----------------------------------------------------------------------------------------------------


@dataclass
class Change:
    name: str
    installed: str
    planned: Optional[str]  # None: would be removed
    wanted_by: list[str] = field(default_factory=list)
    needed_as_is_by: list[str] = field(default_factory=list)

    def describe(self) -> str:
        what = f"would become {self.planned}" if self.planned else "would be removed"
        text = f"{self.name} {self.installed} {what}"
        if self.wanted_by:
            text += f" (wanted by {', '.join(self.wanted_by)})"
        if self.needed_as_is_by:
            text += f"; installed packages that need it as it is: {', '.join(self.needed_as_is_by)}"
        return text


@dataclass
class Plan:
    """What an install adds: (name, version, requirement to install it by)."""

    add: list[tuple[str, str, str]]

    def names(self) -> set[str]:
        return {canonical(n) for n, _, _ in self.add}


class ResolutionFailed(Exception):
    def __init__(self, output: str):
        super().__init__(output)
        self.output = output


def _write_pins(before: dict[str, Dist], folder: Path, unpinned: set[str]) -> Path:
    pins = folder / "installed-pins.txt"
    lines = [f"{d.name}=={d.version}" for k, d in sorted(before.items())
             if k not in unpinned and _VERSION.match(d.version)]
    pins.write_text("\n".join(lines) + "\n")
    return pins


def _resolve_pip(tool: Tool, requirements: list[str], pins: Optional[Path]) -> tuple[list[tuple[str, str, str]], dict]:
    args = ["--dry-run", "--quiet", "--report", "-"] + (["-c", str(pins)] if pins else []) + requirements
    r = subprocess.run(tool.command("install", *args), capture_output=True, text=True)
    if r.returncode != 0:
        raise ResolutionFailed(_tail(r.stderr))
    report = json.loads(r.stdout)
    items, requires = [], {}
    for item in report.get("install", []):
        meta = item["metadata"]
        url = item.get("download_info", {}).get("url", "")
        spec = f"{meta['name']} @ {url}" if item.get("is_direct") and url else f"{meta['name']}=={meta['version']}"
        items.append((meta["name"], meta["version"], spec))
        requires[canonical(meta["name"])] = (meta["version"], meta.get("requires_dist") or [])
    return items, requires


def _resolve_uv(tool: Tool, requirements: list[str], pins: Optional[Path]) -> tuple[list[tuple[str, str, str]], dict]:
    args = ["--dry-run"] + (["-c", str(pins)] if pins else []) + requirements
    r = subprocess.run(tool.command("install", *args), capture_output=True, text=True)
    if r.returncode != 0:
        raise ResolutionFailed(_tail(r.stderr))
    items, removed = [], []
    for line in (r.stdout + r.stderr).splitlines():
        m = _UV_LINE.match(line)
        if not m:
            continue
        sign, name, version = m.groups()
        if sign == "-":
            removed.append((name, version, ""))
        else:
            items.append((name, version, f"{name}=={version}"))
    return items + [(n, v, "-") for n, v, _ in removed if canonical(n) not in {canonical(i[0]) for i in items}], {}


def _uv_reasons(tool: Tool, requirements: list[str]) -> dict[str, list[str]]:
    """``uv pip compile`` annotations: which planned packages want each package."""
    r = subprocess.run([*tool.prefix, "compile", "--python", tool.python, "--no-header", "--annotation-style", "line",
                        "-"], input="\n".join(requirements), capture_output=True, text=True)
    reasons = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+\s+#\s*via\s+(.*)$", line)
        if m:
            reasons[canonical(m.group(1))] = [v.strip() for v in m.group(2).split(",") if v.strip()]
    return reasons


def _tail(text: str, lines: int = 25) -> str:
    kept = [ln for ln in text.strip().splitlines() if "WARNING: Location" not in ln]
    return "\n".join(kept[-lines:])


def resolve(tool: Tool, requirements: list[str], before: dict[str, Dist], own: str, work: Path) -> Plan:
    """What installing ``requirements`` adds, with every installed distribution (but ``own``, our package) kept
    as it is. Our own package is left out of the plan: the caller installs it from its own arguments.

    Raises InstallError naming each installed distribution that would have to change when there is no such plan.
    """
    resolver = _resolve_uv if tool.name == "uv" else _resolve_pip
    pins = _write_pins(before, work, {canonical(own)})
    try:
        items, _ = resolver(tool, requirements, pins)
    except ResolutionFailed as pinned_failure:
        raise InstallError(_explain_conflict(tool, resolver, requirements, before, own, pinned_failure.output))
    items = [i for i in items if canonical(i[0]) != canonical(own)]
    changes = [i for i in items if canonical(i[0]) in before and (i[2] == "-" or before[canonical(i[0])].version != i[1])]
    if changes:  # a resolver that ignored the constraints: never act on it
        raise InstallError("The resolver planned to change installed packages despite the constraints: "
                           + "; ".join(f"{n} {before[canonical(n)].version} -> {v}" for n, v, _ in changes))
    return Plan([(n, v, spec) for n, v, spec in items if canonical(n) not in before])


def _explain_conflict(tool: Tool, resolver, requirements, before, own, pinned_output: str) -> str:
    head = "Installing would change packages that are already installed, so nothing was changed."
    try:
        items, requires = resolver(tool, requirements, None)
    except ResolutionFailed as e:
        return (f"{head} No set of versions fits beside what is installed; the resolver says:\n{e.output}\n"
                f"(with the installed versions kept, it said:\n{pinned_output})")
    planned = {canonical(n): (n, v, spec) for n, v, spec in items}
    reasons = _uv_reasons(tool, requirements) if tool.name == "uv" else {}
    changes = []
    for key, (name, version, spec) in planned.items():
        if key not in before or key == canonical(own):
            continue
        if spec != "-" and before[key].version == version:
            continue
        change = Change(before[key].name, before[key].version, None if spec == "-" else version)
        if tool.name == "pip":  # those whose requirement the installed version does not meet, else all
            wanting = [(f"{planned[other][0]} {other_version}", r) for other, (other_version, reqs) in requires.items()
                       for r in reqs if _requirement_name(r) == key]
            strict = [f"{who} ({r})" for who, r in wanting if _violates(r, change.installed)]
            change.wanted_by = strict or [who for who, _ in wanting]
        else:
            change.wanted_by = [w for w in reasons.get(key, []) if canonical(w) != key]
        for dist in before.values():
            if canonical(dist.name) in planned:
                continue
            for req_name, text in hard_requirements(dist):
                if req_name == key and (change.planned is None or _violates(text, change.planned)):
                    change.needed_as_is_by.append(f"{dist.name} {dist.version} ({text})")
        changes.append(change)
    if not changes:
        return f"{head} The resolver says:\n{pinned_output}"
    return head + "\n" + "\n".join(f"  - {c.describe()}" for c in changes)


# --- staging: which files would the new distributions write? ------------------------------------------------------


def _owners(before: dict[str, Dist]) -> dict[str, str]:
    owners = {}
    for dist in before.values():
        for f in dist.files:
            owners[f] = f"{dist.name} {dist.version}"
    return owners


def _staged_owners(staged: Path) -> dict[str, str]:
    """Staged file (relative, POSIX) -> "name version" of the staged distribution whose RECORD lists it."""
    owners = {}
    for record in staged.glob("*.dist-info/RECORD"):
        meta = record.parent / "METADATA"
        fields = dict(line.split(": ", 1) for line in meta.read_text(errors="replace").splitlines()[:20] if ": " in line)
        label = f"{fields.get('Name', record.parent.name)} {fields.get('Version', '')}".strip()
        for line in record.read_text(errors="replace").splitlines():
            rel = line.rsplit(",", 2)[0]
            owners[os.path.normpath(os.path.join(record.parent.name, "..", rel)).replace(os.sep, "/")] = label
    return owners


def file_clashes(tool: Tool, plan: Plan, before: dict[str, Dist], work: Path) -> list[str]:
    """Install the plan into a scratch folder; one line per (new distribution, installed owner) for the files it
    would write over, the most telling first (a compiled module, a package's __init__)."""
    staged = work / "staged"
    specs = [spec for _, _, spec in plan.add]
    if not specs:
        return []
    args = ["--no-deps", "--target", str(staged)] + (["--no-compile", "--quiet"] if tool.name == "pip" else [])
    r = subprocess.run(tool.command("install", *args, *specs), capture_output=True, text=True)
    if r.returncode != 0:
        raise InstallError(f"Could not fetch the packages to check them (nothing was changed):\n{_tail(r.stderr)}")
    owners, new_owners = _owners(before), _staged_owners(staged)
    paths = sysconfig.get_paths()
    site, scripts = os.path.realpath(paths["purelib"]), os.path.realpath(paths["scripts"])
    clashes: dict[tuple[str, str], list[str]] = {}
    for path in sorted(staged.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(staged)
        if rel.parts[0] in ("bin", "Scripts"):
            target = os.path.join(scripts, *rel.parts[1:])
        else:
            target = os.path.join(site, *rel.parts)
        target = os.path.normcase(target)
        if os.path.lexists(target):
            pair = (new_owners.get(rel.as_posix(), "a new package"), owners.get(target, "no package (a file of its own)"))
            clashes.setdefault(pair, []).append(rel.as_posix())

    def telling(f: str) -> tuple:
        return (not f.endswith((".so", ".pyd", ".dll")), not f.endswith("__init__.py"), len(f))

    return [f"{new} would write over {len(files)} file(s) of {owner}, e.g. {', '.join(sorted(files, key=telling)[:3])}"
            for (new, owner), files in clashes.items()]


# --- install and uninstall ----------------------------------------------------------------------------------------


def manifest_path() -> Path:
    return Path(sys.prefix) / MANIFEST


def read_manifest() -> dict:
    try:
        return json.loads(manifest_path().read_text())
    except (OSError, ValueError):
        return {}


def _run(tool: Tool, verb: str, args: list[str], say: Callable[[str], None]) -> None:
    say(f"$ {tool.shown(verb, *args)}")
    r = subprocess.run(tool.command(verb, *args), capture_output=True, text=True)
    if r.returncode != 0:
        raise InstallError(f"{tool.name} {verb} failed:\n{_tail(r.stdout + r.stderr)}")


@dataclass
class Outcome:
    added: dict[str, str]  # name -> version
    tool: Tool


def install(own: str, own_args: list[str], tool: Tool, say: Callable[[str], None] = print,
            deps_only: bool = False, dry_run: bool = False) -> Outcome:
    """Install our package ``own`` (``own_args``: what to give pip or uv for it) and whatever it needs that is not
    installed yet, without changing anything installed. ``deps_only``: only what it needs (the package itself is
    loaded from elsewhere, as a node pack)."""
    before = snapshot(with_files=True)
    problems_before = run_check(tool)
    with tempfile.TemporaryDirectory(prefix="remove-background-install-") as tmp:
        work = Path(tmp)
        say(f"Planning with every installed package kept at its version ({len(before)} packages, {tool.name})...")
        plan = resolve(tool, own_args, before, own, work)
        say("Plan: add " + (", ".join(f"{n} {v}" for n, v, _ in plan.add) or "nothing new")
            + ("" if deps_only else f", and {own} itself") + "; every installed package keeps its version.")
        clashes = file_clashes(tool, plan, before, work)
        if clashes:
            raise InstallError(
                "Installing would overwrite files of packages already installed (two packages that write the same "
                "files replace each other's, whatever pip check says), so nothing was changed:\n"
                + "\n".join(f"  - {c}" for c in clashes))
        if dry_run:
            return Outcome({n: v for n, v, _ in plan.add}, tool)
        if plan.add:
            _run(tool, "install", ["--no-deps", *(spec for _, _, spec in plan.add)], say)
        if not deps_only:
            again = ["--force-reinstall"] if tool.name == "pip" else ["--reinstall-package", own]
            _run(tool, "install", ["--no-deps", *again, *own_args], say)
    after = snapshot()
    added = {after[k].name: after[k].version for k in after if k not in before and k != canonical(own)}
    try:
        _verify(before, after, own, tool, problems_before)
    except InstallError:
        undo = list(added) + ([own] if canonical(own) in after and canonical(own) not in before else [])
        if undo:
            subprocess.run(tool.command("uninstall", *(["-y"] if tool.name == "pip" else []), *undo),
                           capture_output=True, text=True)
        raise
    record = read_manifest()
    record_added = {k: v for k, v in record.get("added", {}).items() if canonical(k) in after}
    record_added.update(added)
    manifest_path().write_text(json.dumps({"package": own, "added": record_added}, indent=1) + "\n")
    return Outcome(added, tool)


def _verify(before: dict[str, Dist], after: dict[str, Dist], own: str, tool: Tool, problems_before: list[str]) -> None:
    changed = [f"{d.name} {d.version} -> {after[k].version if k in after else 'removed'}"
               for k, d in before.items() if k != canonical(own) and (k not in after or after[k].version != d.version)]
    if changed:
        raise InstallError("After installing, installed packages had changed: " + "; ".join(changed)
                           + ". What was added has been removed again.")
    new_problems = [p for p in run_check(tool) if p not in problems_before]
    if new_problems:
        raise InstallError(f"{tool.name} check reports new problems: " + "; ".join(new_problems)
                           + ". What was added has been removed again.")


def removal_plan(own: str, manifest: dict) -> tuple[list[str], list[str]]:
    """(names to uninstall, names kept because something else installed still needs them)."""
    installed = snapshot()
    remove = {canonical(own)} & set(installed)
    for name, version in manifest.get("added", {}).items():
        key = canonical(name)
        if key in installed and installed[key].version == version:
            remove.add(key)
    kept = []
    changed = True
    while changed:  # keep whatever a package that stays still needs
        changed = False
        for key, dist in installed.items():
            if key in remove:
                continue
            for req_name, _ in hard_requirements(dist):
                if req_name in remove:
                    remove.discard(req_name)
                    kept.append(f"{installed[req_name].name} (needed by {dist.name})")
                    changed = True
    return sorted(installed[k].name for k in remove), kept


def uninstall(own: str, tool: Tool, say: Callable[[str], None] = print) -> list[str]:
    """Remove our package and what an install added (recorded in the manifest), and nothing else."""
    manifest = read_manifest()
    names, kept = removal_plan(own, manifest)
    for k in kept:
        say(f"keeping {k}")
    if not names:
        say("Nothing of remove-background is installed in this environment.")
        manifest_path().unlink(missing_ok=True)
        return []
    before = snapshot()
    problems_before = run_check(tool)
    say("Plan: remove " + ", ".join(names) + ". Nothing else changes.")
    _run(tool, "uninstall", (["-y"] if tool.name == "pip" else []) + names, say)
    after = snapshot()
    gone = {canonical(n) for n in names}
    changed = [f"{d.name} {d.version}" for k, d in before.items()
               if k not in gone and (k not in after or after[k].version != d.version)]
    if changed:
        raise InstallError("Uninstalling changed other packages: " + ", ".join(changed))
    new_problems = [p for p in run_check(tool) if p not in problems_before]
    if new_problems:
        raise InstallError(f"{tool.name} check reports new problems after uninstalling: " + "; ".join(new_problems))
    manifest_path().unlink(missing_ok=True)
    return names
