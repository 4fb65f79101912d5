"""The catalog is the one table of model facts."""

import re

from remove_background import catalog, families

ISSUE_MODELS = [  # rembg 2.0.69's sessions
    "u2net", "u2netp", "u2net_human_seg", "u2net_cloth_seg", "silueta", "isnet-general-use", "isnet-anime",
    "birefnet-general", "birefnet-general-lite", "birefnet-portrait", "birefnet-dis", "birefnet-hrsod",
    "birefnet-cod", "birefnet-massive", "bria-rmbg", "sam",
]
NEW_MODELS = [  # issue 25: rembg 2.0.86's fp16 session, and the field's models from their authors
    "birefnet-general-fp16", "birefnet-hr", "birefnet-hr-matting", "birefnet-matting", "ben2-base",
]
OFFICIAL_SOURCES = (catalog.RELEASES, catalog.BIREFNET_RELEASES, catalog.BEN2_FILES)


def test_catalog_has_every_rembg_model_in_order():
    assert list(catalog.MODEL_NAMES) == ISSUE_MODELS[:-1] + NEW_MODELS + ["sam"]


def test_every_entry_is_complete():
    for name, info in catalog.MODELS.items():
        assert info.name == name
        assert info.label and info.description
        assert info.input_size in (320, 768, 1024, 2048)
        assert families.of(info).key == info.family  # a family class exists for every row
        assert info.licence and info.source
        for f in info.files:
            assert f.url.startswith(OFFICIAL_SOURCES)
            assert f.filename.endswith(".onnx")
            assert f.approx_mb > 0
            if f.checksum is not None:
                assert re.fullmatch(r"(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})", f.checksum)


def test_single_file_models_are_named_after_their_session():
    for name, info in catalog.MODELS.items():
        if info.half:  # rembg's birefnet-general-fp16: the float32 row's own file, converted beside it
            assert info.files == catalog.MODELS[name.removesuffix("-fp16")].files
        elif name != "sam":
            assert [f.filename for f in info.files] == [f"{name}.onnx"]


def test_new_rows_cite_their_authors_and_say_when_no_checksum_is_published():
    for name in NEW_MODELS:
        info = catalog.MODELS[name]
        if info.half:
            assert "rembg 2.0.86" in info.source
        elif info.primary_file.checksum is None:
            assert "no checksum published" in info.source
    assert catalog.MODELS["birefnet-hr"].input_size == catalog.MODELS["birefnet-hr-matting"].input_size == 2048
    assert catalog.MODELS["ben2-base"].licence == "MIT" and catalog.MODELS["ben2-base"].family == "ben"


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
