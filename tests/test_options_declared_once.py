"""Every option is declared once (options.RemovalOptions): the node's fields, the CLI's flags and the API agree with
it on every name, default, bound, choice and help text, so drift fails here."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from PIL import Image

from remove_background import RemovalOptions, remove

from remove_background.cli import commands as cli
from remove_background.cli import files
from remove_background.options import FIELDS, NAMES, flag, from_arguments, help_text, node_name

INVOKEAI_OWN = {"id", "type", "is_intermediate", "use_cache", "board", "metadata", "image"}


@pytest.fixture(scope="module")
def node():
    pytest.importorskip("invokeai")
    from remove_background.invokeai_adapter import node as invocation

    return invocation


def _bounds(field_info) -> tuple:
    ge = next((m.ge for m in field_info.metadata if hasattr(m, "ge")), None)
    le = next((m.le for m in field_info.metadata if hasattr(m, "le")), None)
    return ge, le


def test_every_node_field_is_an_option_and_every_option_a_node_field(node):
    fields = set(node.RemoveBackgroundInvocation.model_fields) - INVOKEAI_OWN
    plain = {node_name(n) for n in NAMES if n not in node.NODE_SHAPED}
    shaped = {f for names in node.NODE_SHAPED.values() for f in names}
    assert fields == plain | shaped
    assert set(node.NODE_SHAPED) == {n for n, f in FIELDS.items() if f.metadata["node_shape"]}


@pytest.mark.parametrize("name", [n for n in NAMES if not FIELDS[n].metadata["node_shape"]])
def test_node_field_agrees_with_the_option(node, name):
    import typing

    info = node.RemoveBackgroundInvocation.model_fields[node_name(name)]
    meta = FIELDS[name].metadata
    assert info.default == FIELDS[name].default
    assert info.description == help_text(name, "node")
    assert _bounds(info) == (meta["ge"], meta["le"])
    extra = info.json_schema_extra or {}
    if meta["labels"] is not None:
        assert typing.get_args(info.annotation) == tuple(meta["labels"])  # the dropdown's values, in order
        assert extra.get("ui_choice_labels") == meta["labels"]


def _cli_actions() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    files.add_options(parser)
    actions: dict[str, argparse.Action] = {}
    for a in parser._actions:  # the option's own flag first; --mask-only is a shorthand for --output-mode
        if a.option_strings and (a.dest not in actions or flag(a.dest) in a.option_strings):
            actions[a.dest] = a
    return actions


@pytest.mark.parametrize("name", NAMES)
def test_cli_flag_agrees_with_the_option(name):
    action = _cli_actions()[name]
    meta, default = FIELDS[name].metadata, FIELDS[name].default
    assert flag(name) in action.option_strings
    assert action.default == default or (default is None and action.default is None)
    assert help_text(name, "cli").replace("%", "%%") in action.help
    if meta["labels"] is not None:
        assert list(action.choices) == list(meta["labels"])
    if meta["ge"] is not None:
        assert f"[{meta['ge']:g} to {meta['le']:g}" in action.help


def test_help_texts_speak_to_where_they_are_shown():
    """One declaration per option; the node's text speaks of InvokeAI, the command line's of its own folder and
    device (issue 27: the CLI's --model help sent users to <InvokeAI models dir>/rembg)."""
    node, cli_text = {n: help_text(n, "node") for n in NAMES}, {n: help_text(n, "cli") for n in NAMES}
    assert "<InvokeAI models dir>/rembg" in node["model"] and "InvokeAI's GPU" in node["provider"]
    assert not any("InvokeAI" in text for text in cli_text.values())
    assert "--models-dir" in cli_text["model"] and "$REMOVE_BACKGROUND_MODELS" in cli_text["model"]
    assert not any("{" in text for text in (*node.values(), *cli_text.values()))  # every placeholder filled
    same = [n for n in NAMES if node[n] == cli_text[n]]
    assert set(NAMES) - set(same) == {"model", "provider"}  # the rest is one text everywhere


def test_the_cli_has_no_option_flags_of_its_own_beyond_files_and_shorthands():
    extra = set(_cli_actions()) - set(NAMES)
    assert extra == {"help", "models_dir", "no_download"}


def test_out_of_range_on_the_cli_is_a_usage_error_naming_the_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([str(tmp_path), "-o", str(tmp_path / "o"), "--mask-grow", "999"])
    assert e.value.code == 2
    assert "mask_grow must be between -256 and 256 pixels" in capsys.readouterr().err


def test_node_fields_build_the_same_options(node):
    from invokeai.invocation_api import BoundingBoxField, ColorField, ImageField

    values = dict(model="u2net", execution_provider="cpu", mask_blur=3.5, mask_grow=-4, mask_invert=True,
                  alpha_matting=True, alpha_matting_erode_size=7, output_mode="mask_only", cloth_category="upper",
                  background="color", background_color=ColorField(r=1, g=2, b=3, a=4), sam_point_x=5, sam_point_y=6,
                  sam_box=BoundingBoxField(x_min=1, y_min=2, x_max=30, y_max=40))
    built = node.RemoveBackgroundInvocation(id="n", image=ImageField(image_name="x"), **values).options()
    assert built == RemovalOptions(model="u2net", provider="cpu", mask_blur=3.5, mask_grow=-4, mask_invert=True,
                                   alpha_matting=True, alpha_matting_erode_size=7, output_mode="mask_only",
                                   cloth_category="upper", background_color=(1, 2, 3, 4), sam_point=(5, 6),
                                   sam_box=(1, 2, 30, 40))
    defaults = node.RemoveBackgroundInvocation(id="n", image=ImageField(image_name="x")).options()
    assert defaults == RemovalOptions()


def test_cli_flags_build_the_same_options():
    parser = argparse.ArgumentParser()
    files.add_options(parser)
    args = parser.parse_args(["-m", "u2net", "--mask-blur", "2", "--mask-only", "--background-color", "10,20,30",
                              "--sam-point", "3", "4"])
    assert from_arguments(args) == RemovalOptions(model="u2net", mask_blur=2, output_mode="mask_only",
                                                      background_color=(10, 20, 30, 255), sam_point=(3, 4))
    assert from_arguments(parser.parse_args([])) == RemovalOptions()


def test_keyword_style_and_options_style_give_the_same_result(models_dir):
    image = Image.new("RGB", (64, 48), "orange")
    a = remove(image, model="u2netp", mask_blur=2, mask_invert=True, models_dir=models_dir)
    b = remove(image, RemovalOptions(model="u2netp", mask_blur=2, mask_invert=True), models_dir=models_dir)
    c = remove(image, "u2netp", mask_blur=2, mask_invert=True, models_dir=models_dir)  # model positional, as before
    assert a.mask.tobytes() == b.mask.tobytes() == c.mask.tobytes()
    with pytest.raises(TypeError, match="Unknown option.*mask_blurr"):
        remove(image, mask_blurr=2, models_dir=models_dir)


def test_options_are_frozen_and_validated_once():
    opts = RemovalOptions(mask_threshold=10.0)
    assert opts.mask_threshold == 10 and isinstance(opts.mask_threshold, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.mask_threshold = 3
    with pytest.raises(ValueError, match="model must be one of"):
        RemovalOptions(model="nope")
    with pytest.raises(ValueError, match="mask_invert must be true or false"):
        RemovalOptions(mask_invert="yes")
