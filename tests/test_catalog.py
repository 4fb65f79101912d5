"""The catalog is the one table of model facts."""

import re

from remove_background import catalog, families

ISSUE_MODELS = [
    "u2net", "u2netp", "u2net_human_seg", "u2net_cloth_seg", "silueta", "isnet-general-use", "isnet-anime",
    "birefnet-general", "birefnet-general-lite", "birefnet-portrait", "birefnet-dis", "birefnet-hrsod",
    "birefnet-cod", "birefnet-massive", "bria-rmbg", "sam",
]


def test_catalog_has_every_rembg_model_in_order():
    assert list(catalog.MODEL_NAMES) == ISSUE_MODELS


def test_every_entry_is_complete():
    for name, info in catalog.MODELS.items():
        assert info.name == name
        assert info.label and info.description
        assert info.input_size in (320, 768, 1024)
        assert families.of(info).key == info.family  # a family class exists for every row
        assert info.licence
        for f in info.files:
            assert f.url.startswith(catalog.RELEASES)
            assert f.filename.endswith(".onnx")
            assert f.approx_mb > 0
            if f.checksum is not None:
                assert re.fullmatch(r"(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})", f.checksum)


def test_single_file_models_are_named_after_their_session():
    for name, info in catalog.MODELS.items():
        if name != "sam":
            assert [f.filename for f in info.files] == [f"{name}.onnx"]


def test_bria_is_marked_non_commercial():
    bria = catalog.MODELS["bria-rmbg"]
    assert not bria.commercial_use
    assert "NON-COMMERCIAL" in bria.label.upper()
    assert "non-commercial" in bria.description.lower()
    assert all(m.commercial_use for n, m in catalog.MODELS.items() if n != "bria-rmbg")


def test_u2netp_checksum_is_rembgs():
    assert catalog.MODELS["u2netp"].primary_file.checksum == "md5:8e83ca70e441ab06c318d82300c84806"


def test_unknown_model_error_lists_choices():
    try:
        catalog.get_model("u2netx")
    except ValueError as e:
        assert "u2netp" in str(e) and "u2netx" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_readme_model_table_is_generated_from_the_catalog():
    import subprocess
    import sys

    from conftest import ROOT

    table = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "models_table.py")], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert table in (ROOT / "README.md").read_text()
