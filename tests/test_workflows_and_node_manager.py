"""Install paths through a real invokeai-web: InvokeAI's Custom Node Manager (with and without our dependencies),
and the shipped workflows (imported by the manager, and valid graphs when enqueued)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from support import ROOT, fetch_weights, pristine
from support.images import horse_scene, png
from support.invokeai_server import InvokeAIServer, prepare_root

pytestmark = [pytest.mark.server, pytest.mark.slow]

WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))

BLOCK_PYMATTING = '''
import sys
class _NoPymatting:
    """Make `pymatting` look uninstalled, as after a Custom Node Manager install without dependencies."""
    def find_spec(self, name, path=None, target=None):
        if name == "pymatting" or name.startswith("pymatting."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _NoPymatting())
'''


@pytest.fixture(scope="module")
def repo_url(tmp_path_factory):
    dest = tmp_path_factory.mktemp("src") / "remove-background"
    dest.mkdir()
    return pristine.working_tree_copy(dest, git=True).as_uri()


def workflow_to_graph(workflow: dict, image_name: str) -> dict:
    """What the frontend sends for a workflow: node input values, edges, and the exposed image field set."""
    nodes = {}
    for n in workflow["nodes"]:
        data = n["data"]
        node = {"id": data["id"], "type": data["type"], "is_intermediate": data["isIntermediate"],
                "use_cache": data["useCache"]}
        for name, field in data["inputs"].items():
            if "value" in field:
                node[name] = field["value"]
        nodes[data["id"]] = node
    for element in workflow["form"]["elements"].values():
        if element["type"] == "node-field" and element["data"]["fieldIdentifier"]["fieldName"] == "image":
            nodes[element["data"]["fieldIdentifier"]["nodeId"]]["image"] = {"image_name": image_name}
    edges = [{"source": {"node_id": e["source"], "field": e["sourceHandle"]},
              "destination": {"node_id": e["target"], "field": e["targetHandle"]}} for e in workflow["edges"]]
    return {"id": "wf", "nodes": nodes, "edges": edges}



def test_committed_workflows_are_generated_from_the_node():
    from support import make_workflows

    built = make_workflows.build()
    assert sorted(built) == [p.name for p in WORKFLOWS]
    for path in WORKFLOWS:
        assert path.read_text() == make_workflows.render(built[path.name]), f"run PYTHONPATH=tests python -m support.make_workflows ({path})"


def test_canvas_workflow_meets_run_workflow_on_canvas_rules():
    canvas = json.loads((ROOT / "workflows" / "remove-background-canvas.json").read_text())
    fields = [e["data"]["fieldIdentifier"] for e in canvas["form"]["elements"].values() if e["type"] == "node-field"]
    assert {"nodeId": "remove_bg", "fieldName": "image"} in fields  # an ImageField exposed in the form
    outputs = [n for n in canvas["nodes"] if n["data"]["type"] == "canvas_output"]
    assert len(outputs) == 1  # the cut-out only: with the mask too, staging selects the mask when it finishes last
    assert [(e["sourceHandle"], e["target"]) for e in canvas["edges"]] == [("image", outputs[0]["id"])]


def test_no_test_fixture_looks_like_a_workflow():
    """The Custom Node Manager imports every *.json with top-level nodes and edges as a workflow."""
    for path in ROOT.rglob("*.json"):
        if "workflows" in path.parts or ".git" in path.parts:
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        assert not (isinstance(data, dict) and "nodes" in data and "edges" in data), path


def test_custom_node_manager_install_imports_workflows_and_runs(tmp_path, repo_url, u2netp_file):
    root = prepare_root(tmp_path / "root", link_pack=False)
    fetch_weights.place(root / "models" / "rembg")
    with InvokeAIServer(root) as server:
        result = server.post_json("/api/v2/custom_nodes/install", {"source": repo_url})
        assert result["success"], result
        assert result["workflows_imported"] == len(WORKFLOWS)
        assert (root / "nodes" / "remove-background" / "__init__.py").is_file()
        schema = server.get("/openapi.json")
        assert "RemoveBackgroundInvocation" in schema["components"]["schemas"]
        names = {w["name"] for w in server.get("/api/v1/workflows/?per_page=100")["items"]}
        assert {"Remove Background", "Remove Background (canvas)"} <= names
        image, _ = horse_scene()
        image_name = server.upload(png(image))
        for path in WORKFLOWS:  # every shipped workflow is a valid graph that runs
            [item_id] = server.enqueue(workflow_to_graph(json.loads(path.read_text()), image_name))
            item = server.wait(item_id)
            assert item["status"] == "completed", (path.name, item.get("error_message"))
            types = {r["type"] for r in item["session"]["results"].values()}
            assert "remove_background_rembg_output" in types
            if "canvas" in path.name:
                assert sum(r["type"] == "image_output" for r in item["session"]["results"].values()) == 1
                # useCache is on: an unchanged re-run takes our node's result from InvokeAI's cache, and
                # canvas_output (never cached) still stages a new image, so Run Workflow on Canvas works again
                [again_id] = server.enqueue(workflow_to_graph(json.loads(path.read_text()), image_name))
                again = server.wait(again_id)
                assert again["status"] == "completed", again.get("error_message")
                ours = [[r["image"]["image_name"] for r in i["session"]["results"].values()
                         if r["type"] == "remove_background_rembg_output"] for i in (item, again)]
                staged = [[r["image"]["image_name"] for r in i["session"]["results"].values()
                           if r["type"] == "image_output"] for i in (item, again)]
                assert ours[0] == ours[1]  # cached
                assert staged[0] != staged[1] and len(staged[1]) == 1  # a fresh image for the staging area


def test_custom_node_manager_without_dependencies_registers_and_explains(tmp_path, repo_url, u2netp_file):
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_PYMATTING)
    root = prepare_root(tmp_path / "root", link_pack=False)
    fetch_weights.place(root / "models" / "rembg")
    with InvokeAIServer(root, env={"PYTHONPATH": str(blocker)}) as server:
        result = server.post_json("/api/v2/custom_nodes/install", {"source": repo_url})
        assert result["success"], result
        assert not any("Failed to load node pack" in line for line in server.lines)
        assert "RemoveBackgroundInvocation" in server.get("/openapi.json")["components"]["schemas"]
        from support.invokeai_server import removal_graph

        name = server.upload(png(Image.new("RGB", (32, 32), "green")))
        item = server.run_one(removal_graph(name, model="u2netp"))
        assert item["status"] == "failed"
        assert item["error_type"] == "DependencyMissingError"
        message = item["error_message"]
        assert "pymatting" in message and "changes nothing already installed" in message
        assert pristine.printed_command(message)[1:] == [str(root / "nodes" / "remove-background" / "install.py"),
                                                         "--root", str(root)]
