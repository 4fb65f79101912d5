"""Write the example workflows in ``workflows/`` from the node's own fields, in the project venv:
``PYTHONPATH=tests python -m support.make_workflows``.

- ``remove-background.json``: the workflow-editor example (the node, its options in a form).
- ``remove-background-canvas.json``: for "Run Workflow on Canvas": a form exposing the image field,
  our node, and one ``canvas_output`` node (the cut-out lands in the staging area).

Our node keeps InvokeAI's cache on (``useCache``): an unchanged re-run is instant. ``canvas_output`` has it off, as
in InvokeAI's own canvas graphs, so a re-run on the canvas still stages a fresh image
(tests/test_workflows_and_node_manager.py).

A test checks the committed files equal what this script writes.
"""

from __future__ import annotations

import json

from support import ROOT

NODE_ID = "remove_bg"
FORM_FIELDS = ["image", "model", "execution_provider", "mask_threshold", "mask_grow", "mask_blur",
               "alpha_matting", "vitmatte", "decontaminate", "output_mode"]
SKIP_INPUTS = {"id", "type", "is_intermediate", "use_cache"}


def node_inputs() -> dict:
    import invokeai.app.invocations.baseinvocation  # noqa: F401  (InvokeAI must be imported first)
    from remove_background.invokeai_adapter.node import RemoveBackgroundInvocation

    inputs = {}
    for name, field in RemoveBackgroundInvocation.model_fields.items():
        if name in SKIP_INPUTS:
            continue
        entry = {"name": name, "label": ""}
        default = field.default
        if default is not None and name not in ("board", "metadata", "image"):
            entry["value"] = default.model_dump() if hasattr(default, "model_dump") else default
        inputs[name] = entry
    return inputs


def invocation_node(node_id, node_type, version, inputs, x, y, pack, intermediate, use_cache=True):
    return {
        "id": node_id,
        "type": "invocation",
        "data": {"id": node_id, "type": node_type, "version": version, "label": "", "notes": "", "isOpen": True,
                 "isIntermediate": intermediate, "useCache": use_cache, "nodePack": pack, "inputs": inputs},
        "position": {"x": x, "y": y},
    }


def edge(source, source_field, target, target_field):
    return {"id": f"reactflow__edge-{source}{source_field}-{target}{target_field}", "type": "default",
            "source": source, "target": target, "sourceHandle": source_field, "targetHandle": target_field}


def form(fields: list[str], heading: str) -> dict:
    elements = {"heading-intro": {"id": "heading-intro", "parentId": "container-root", "type": "heading",
                                  "data": {"content": heading, "level": 2}}}
    children = ["heading-intro"]
    for name in fields:
        element_id = f"node-field-{name}"
        elements[element_id] = {"id": element_id, "parentId": "container-root", "type": "node-field",
                                "data": {"fieldIdentifier": {"nodeId": NODE_ID, "fieldName": name}}}
        children.append(element_id)
    elements["container-root"] = {"id": "container-root", "type": "container",
                                  "data": {"direction": "column", "children": children}}
    return {"elements": elements, "rootElementId": "container-root"}


def workflow(name, description, nodes, edges, fields, heading, tags) -> dict:
    return {
        "name": name, "author": "remove-background", "description": description, "version": "1.0.0",
        "contact": "", "tags": tags, "notes": "Needs the remove-background node pack.",
        "exposedFields": [{"nodeId": NODE_ID, "fieldName": f} for f in fields],
        "meta": {"version": "3.0.0", "category": "user"},
        "nodes": nodes, "edges": edges, "form": form(fields, heading),
    }


def build() -> dict[str, dict]:
    from remove_background import __version__

    inputs = node_inputs()
    ours = lambda intermediate: invocation_node(  # noqa: E731
        NODE_ID, "remove_background_rembg", __version__, inputs, 0, 0, "remove_background", intermediate)
    editor = workflow(
        "Remove Background", "Cut out the subject of an image with rembg's models: RGBA cut-out and mask.",
        [ours(False)], [], FORM_FIELDS, "Remove the background", "remove background, rembg, mask, cutout")
    canvas_nodes = [ours(True)]
    canvas_edges = []
    # One canvas output, the cut-out: with two, the staging area selects whichever finished last (the mask), and
    # Accept (Enter) would put the mask on the canvas.
    canvas_nodes.append(invocation_node("canvas_output_image", "canvas_output", "1.0.0",
                                        {"image": {"name": "image", "label": ""}}, 480, 0, "invokeai", False,
                                        use_cache=False))
    canvas_edges.append(edge(NODE_ID, "image", "canvas_output_image", "image"))
    canvas = workflow(
        "Remove Background (canvas)",
        "Right-click a raster layer > Run Workflow on Canvas: the cut-out lands in the staging area. "
        "Fit Bbox To Layers first, so that it lands exactly over the layer.",
        canvas_nodes, canvas_edges, FORM_FIELDS, "Remove the layer's background",
        "remove background, rembg, mask, cutout, canvas")
    return {"remove-background.json": editor, "remove-background-canvas.json": canvas}


def render(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    out = ROOT / "workflows"
    out.mkdir(exist_ok=True)
    for filename, data in build().items():
        (out / filename).write_text(render(data))
        print(out / filename)
