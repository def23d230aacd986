"""The gclip Python package (crates/gclip-python), built into the test venv by scripts/test.sh.

Embeddings are checked against what open_clip / transformers computed for the committed
fixtures (tests/fixtures/reference/cli and models), so a regression anywhere between the
Python boundary and the kernels shows up as numbers that disagree.
"""

import io
import json
import struct
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image

import gclip
from conftest import REPO

REF = REPO / "tests" / "fixtures" / "reference"
CLI = REF / "cli"
CLI_MODEL = CLI / "model"


def need(path):
    if not path.exists():
        pytest.fail(f"fixture missing: {path}")
    return path


@pytest.fixture(scope="module")
def expected():
    return json.loads(need(CLI / "expected.json").read_text())


@pytest.fixture(scope="module")
def model():
    return gclip.load(need(CLI_MODEL))


@pytest.fixture(scope="module")
def image_paths(expected):
    return [str(need(CLI / "images" / n)) for n in expected["images"]]


def read_safetensors(path):
    """A safetensors file as numpy arrays (the format is a JSON header and raw tensors)."""
    raw = need(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    dtypes = {"F32": np.float32, "I64": np.int64, "F16": np.float16, "I32": np.int32}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
    return out


# -- fidelity ------------------------------------------------------------------------------


def test_text_embeddings_match_open_clip(model, expected):
    got = model.embed_texts(expected["texts"])
    assert got.dtype == np.float32 and got.shape == (5, 24)
    np.testing.assert_allclose(got, np.array(expected["text_embeddings"]), atol=5e-6)
    # normalize=False keeps the raw projection: same direction, not unit length.
    raw = model.embed_texts(expected["texts"], normalize=False)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), got, atol=1e-6)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)


def test_image_embeddings_match_open_clip(model, expected, image_paths):
    got = model.embed_images(image_paths)
    assert got.shape == (4, 24)
    np.testing.assert_allclose(got, np.array(expected["image_embeddings"]), atol=5e-6)


@pytest.mark.parametrize(
    "name", ["openclip_gelu", "openclip_knobs", "openclip_ckpt", "hf_gelu", "hf_quickgelu"]
)
def test_towers_match_reference_on_fixture_inputs(name):
    m = gclip.load(need(REF / "models" / name))
    exp = read_safetensors(REF / "models" / f"{name}.expected.safetensors")
    np.testing.assert_allclose(m.embed_pixels(exp["pixels"]), exp["image_embeds_norm"], atol=2e-5)
    np.testing.assert_allclose(
        m.embed_pixels(exp["pixels"], normalize=False), exp["image_embeds"], atol=2e-5
    )
    np.testing.assert_allclose(m.embed_tokens(exp["token_ids"]), exp["text_embeds_norm"], atol=2e-5)
    np.testing.assert_allclose(m.logit_scale, float(np.exp(exp["logit_scale"])), rtol=1e-6)


def test_similarity_softmax_and_logit_scale_match_open_clip(model, expected, image_paths):
    assert model.logit_scale == pytest.approx(expected["logit_scale"], rel=1e-6)
    imgs = model.embed_images(image_paths)
    cos = model.similarity(imgs, expected["texts"])
    np.testing.assert_allclose(cos, np.array(expected["image_text_cosine"]), atol=5e-6)
    probs = model.similarity(imgs, expected["texts"], softmax=True)
    np.testing.assert_allclose(probs, np.array(expected["image_text_softmax"]), atol=2e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # Strings naming image files are images (the CLI's rule), other strings texts.
    np.testing.assert_allclose(model.similarity(image_paths, expected["texts"]), cos, atol=1e-6)


def test_zero_shot_matches_open_clip(model, expected, image_paths):
    labels, templates = expected["labels"], expected["templates"]
    probs = model.zero_shot(image_paths, labels, templates)
    assert probs.shape == (4, 3)
    np.testing.assert_allclose(probs, np.array(expected["zeroshot_probs"]), atol=2e-5)
    p10 = model.zero_shot(image_paths, labels, templates, scale=10)
    np.testing.assert_allclose(p10, np.array(expected["zeroshot_probs_scale10"]), atol=2e-5)
    # Precomputed embeddings give the same answer; labels keep their order.
    emb = model.embed_images(image_paths)
    np.testing.assert_allclose(model.zero_shot(emb, labels, templates), probs, atol=1e-6)
    rev = model.zero_shot(emb, labels[::-1], templates)
    np.testing.assert_allclose(rev, probs[:, ::-1], atol=1e-6)


def test_tokenize_and_preprocess_are_the_model_inputs(model, expected, image_paths):
    ids = model.tokenize(["a red shoe", ""])
    assert ids.dtype == np.int64 and ids.shape == (2, 77)
    assert ids[0, 0] == 49406 and 49407 in ids[0] and ids[1, 1] == 49407 and ids[1, 2:].sum() == 0
    np.testing.assert_allclose(model.embed_tokens(ids), model.embed_texts(["a red shoe", ""]), atol=1e-6)
    one = model.preprocess(image_paths[0])
    batch = model.preprocess(image_paths)
    assert one.shape == (3, 32, 32) and batch.shape == (4, 3, 32, 32) and batch.dtype == np.float32
    np.testing.assert_array_equal(one, batch[0])
    np.testing.assert_allclose(model.embed_pixels(batch), model.embed_images(image_paths), atol=1e-6)


# -- inputs --------------------------------------------------------------------------------


def test_paths_bytes_pil_and_arrays_agree(model, image_paths):
    import pathlib

    by_path = model.embed_images(image_paths)
    by_pathlib = model.embed_images([pathlib.Path(p) for p in image_paths])
    by_bytes = model.embed_images([pathlib.Path(p).read_bytes() for p in image_paths])
    pils = [Image.open(p) for p in image_paths]
    by_pil = model.embed_images(pils)
    by_array = model.embed_images([np.asarray(Image.open(p).convert("RGB")) for p in image_paths])
    for other in (by_pathlib, by_bytes, by_pil, by_array):
        np.testing.assert_allclose(other, by_path, atol=1e-6)
    # A single image, and a batch array (n, H, W, 3).
    np.testing.assert_allclose(model.embed_images(image_paths[2]), by_path[2:3], atol=1e-6)
    same = np.stack([np.asarray(Image.open(image_paths[2]).convert("RGB"))] * 2)
    np.testing.assert_allclose(model.embed_images(same), by_path[[2, 2]], atol=1e-6)
    # Mixed inputs in one call keep their order.
    mixed = model.embed_images([pathlib.Path(image_paths[1]).read_bytes(), pils[0], image_paths[3]])
    np.testing.assert_allclose(mixed, by_path[[1, 0, 3]], atol=1e-6)


def test_pil_images_in_other_modes_follow_the_file_pipeline(model, tmp_path):
    """A PIL image in mode P / RGBA / L embeds as its PNG file does (open_clip resizes in the
    image's own mode, so converting to RGB first would change the pixels)."""
    rng = np.random.default_rng(3)
    rgba = Image.fromarray(rng.integers(0, 256, (37, 53, 4), dtype=np.uint8), "RGBA")
    for img in (rgba, rgba.convert("P"), rgba.convert("L")):
        path = tmp_path / f"x-{img.mode}.png"
        img.save(path)
        np.testing.assert_allclose(
            model.embed_images(img), model.embed_images(str(path)), atol=1e-6, err_msg=img.mode
        )
    grey = np.asarray(rgba.convert("L"))
    np.testing.assert_allclose(
        model.embed_images(grey), model.embed_images(str(tmp_path / "x-L.png")), atol=1e-6
    )


def test_embed_mixed_texts_and_images(model, image_paths):
    import pathlib

    out = model.embed(["a red shoe", pathlib.Path(image_paths[0]), "a dog"])
    np.testing.assert_allclose(out[0], model.embed_texts("a red shoe")[0], atol=1e-6)
    np.testing.assert_allclose(out[1], model.embed_images(image_paths[0])[0], atol=1e-6)
    assert out.shape == (3, 24)


def test_empty_batches(model):
    assert model.embed_texts([]).shape == (0, 24)
    assert model.embed_images([]).shape == (0, 24)


# -- errors --------------------------------------------------------------------------------


def test_corrupt_image_is_an_exception_with_the_cli_message(model, tmp_path, gclip_bin):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(gclip.ImageError) as e:
        model.embed_images([str(bad)])
    msg = str(e.value)
    assert "broken.png" in msg
    cli = subprocess.run(
        [str(gclip_bin), "embed", "--model", str(CLI_MODEL), "--on-error", "fail", "--image", str(bad)],
        capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode != 0
    assert msg in cli.stderr, (msg, cli.stderr)
    # Bytes and arrays are named by their position.
    with pytest.raises(gclip.ImageError, match=r"image 1 \(10 bytes\)"):
        model.embed_images([np.zeros((4, 4, 3), np.uint8), b"0123456789"])
    with pytest.raises(ValueError, match="uint8"):
        model.embed_images(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        model.embed_images(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(TypeError, match="image 0"):
        model.embed_images([3.5])
    with pytest.raises(gclip.ImageError, match="no-such.png"):
        model.embed_images(str(tmp_path / "no-such.png"))


def test_bad_models_and_arguments_are_exceptions(model, tmp_path):
    with pytest.raises(gclip.ModelError, match="loading model"):
        gclip.load(tmp_path / "missing-model")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "open_clip_config.json").write_text("{not json")
    with pytest.raises(gclip.GclipError):
        gclip.load(tmp_path / "junk")
    with pytest.raises(gclip.InvalidInputError, match="precision"):
        gclip.load(CLI_MODEL, precision="fp8")
    with pytest.raises(gclip.InvalidInputError, match="label"):
        model.zero_shot(np.ones((1, 24), np.float32), [])
    with pytest.raises(gclip.InvalidInputError):
        model.zero_shot(np.ones((1, 7), np.float32), ["a", "b"])
    with pytest.raises(gclip.InvalidInputError, match="outside the vocabulary"):
        model.embed_tokens(np.array([[49406, 10**6]]))
    with pytest.raises(gclip.InvalidInputError, match="shape"):
        model.embed_pixels(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(gclip.InvalidInputError, match="context length"):
        model.embed_tokens(np.zeros((1, 78), np.int64))


def test_the_gil_is_released_while_embedding(model):
    texts = [f"product number {i} in red and blue" for i in range(3000)]
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        time.sleep(0.01)
        start = time.perf_counter()
        model.embed_texts(texts)
        end = time.perf_counter()
    finally:
        stop.set()
        t.join(10)
    during = [x for x in ticks if start < x < end]
    # With the GIL held for the whole call, the ticker could not run at all in between.
    assert end - start > 0.02, "the call was too short to tell"
    assert len(during) >= 3, (len(during), end - start)


# -- index ---------------------------------------------------------------------------------


def test_index_round_trip(model, tmp_path, image_paths):
    data = tmp_path / "data"
    ix = gclip.Index.create(data, model=model, settings={"treatUrlsAndPointersAsImages": True})
    docs = [
        {"_id": "shoe", "title": "red suede sneakers", "colour": "red", "price": 40},
        {"_id": "mug", "title": "a blue ceramic mug", "colour": "blue", "price": 12},
        {"_id": "dress", "title": "tangerine silk dress", "colour": "orange", "price": 90},
    ]
    r = ix.add(docs, tensor_fields=["title"])
    assert r["errors"] is False and [i["_id"] for i in r["items"]] == ["shoe", "mug", "dress"]
    pics = [{"_id": f"img{i}", "image": p} for i, p in enumerate(image_paths)]
    assert ix.add(pics, tensor_fields=["image"])["errors"] is False
    assert len(ix) == 7 and ix.stats()["numberOfDocuments"] == 7

    hits = ix.search("a blue ceramic mug", limit=3)
    assert hits[0]["_id"] == "mug" and hits[0]["_score"] == pytest.approx(1.0, abs=1e-4)
    assert hits[0]["title"] == "a blue ceramic mug" and hits[0]["price"] == 12
    # The index's vectors are the model's.
    vec = model.embed_texts("tangerine silk dress")[0]
    assert ix.search(vec, limit=1)[0]["_id"] == "dress"
    assert ix.search(image_paths[2], limit=1)[0]["_id"] == "img2"
    assert [h["_id"] for h in ix.search("sneakers", method="lexical")] == ["shoe"]
    assert ix.search("mug", method="hybrid", limit=2)[0]["_id"] == "mug"
    filtered = ix.search("a blue ceramic mug", filter="colour:red OR colour:orange", limit=5)
    assert {h["_id"] for h in filtered} == {"shoe", "dress"}
    full = ix.search("mug", limit=2, full_response=True)
    assert full["limit"] == 2 and "hits" in full

    assert ix.get("shoe")["title"] == "red suede sneakers"
    many = ix.get(["shoe", "nope"])
    assert [d["_found"] for d in many] == [True, False]
    with pytest.raises(gclip.SearchIndexError) as e:
        ix.get("nope")
    assert e.value.code == "document_not_found" and e.value.status == 404
    assert ix.delete(["mug"])["errors"] is False
    assert ix.delete(filter="colour:orange") == 1
    assert ix.search("a blue ceramic mug", limit=3)[0]["_id"] != "mug"

    # Reopened (shared handle within the process) and through the CLI's data directory.
    again = gclip.Index.open(data, model=model)
    assert again.name == "default" and len(again) == 5 and again.dim == 24
    assert gclip.Index.list(data) == ["default"]


def test_index_reopens_in_a_fresh_process(model, tmp_path, gclip_bin):
    import sys

    data = tmp_path / "d"
    ix = gclip.Index.create(data, model=model, name="shop")
    ix.add([{"_id": "a", "title": "red suede sneakers"}, {"_id": "b", "title": "a blue mug"}])
    ix.close()
    assert ix.closed
    with pytest.raises(gclip.InvalidInputError, match="closed"):
        ix.search("x")
    code = (
        "import gclip, sys\n"
        f"ix = gclip.Index.open({str(data)!r}, model=gclip.load({str(CLI_MODEL)!r}))\n"
        "print(ix.search('a blue mug', limit=1)[0]['_id'], len(ix))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["b", "2"]
    # And the CLI reads the same data directory.
    with gclip.Index.open(data, model=model) as again:
        assert len(again) == 2
    cli = subprocess.run([str(gclip_bin), "index", "stats", "shop", "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["numberOfDocuments"] == 2


def test_index_custom_vectors_and_combinations(model, tmp_path):
    ix = gclip.Index.create(tmp_path / "v", model=model)
    v = np.zeros(24, np.float32)
    v[3] = 1.0
    r = ix.add(
        [{"_id": "x", "vec": {"vector": v, "content": "axis three"}, "title": "red shoe", "note": "leather"}],
        tensor_fields=["vec", "combo"],
        mappings={
            "vec": {"type": "custom_vector"},
            "combo": {"type": "multimodal_combination", "weights": {"title": 0.7, "note": 0.3}},
        },
    )
    assert r["errors"] is False, r
    assert ix.search(v, limit=1, searchable_attributes=["vec"])[0]["_score"] == pytest.approx(1.0, abs=1e-5)


def test_index_errors(model, tmp_path):
    with pytest.raises(gclip.SearchIndexError) as e:
        gclip.Index.open(tmp_path / "empty", name="missing")
    assert e.value.code == "index_not_found"
    gclip.Index.create(tmp_path / "two", model=model, name="a")
    gclip.Index.create(tmp_path / "two", model=model, name="b")
    with pytest.raises(gclip.SearchIndexError, match="give name"):
        gclip.Index.open(tmp_path / "two")
    with pytest.raises(gclip.SearchIndexError) as e:
        gclip.Index.create(tmp_path / "two", model=model, name="a")
    assert e.value.code == "index_already_exists"
    with pytest.raises(gclip.InvalidInputError, match="method"):
        gclip.Index.open(tmp_path / "two", name="a", model=model).search("x", method="vector")
    other = gclip.load(REF / "models" / "openclip_gelu")
    with pytest.raises(gclip.SearchIndexError):
        gclip.Index.open(tmp_path / "two", name="a", model=other)


# -- training ------------------------------------------------------------------------------


def test_train_fine_tunes_and_returns_the_output_dir(tmp_path, image_paths):
    import csv
    import shutil

    rows = []
    for i, p in enumerate(image_paths):
        shutil.copy(p, tmp_path / f"i{i}{p[-4:]}")
        rows.append({"query": f"query {i}", "title": f"item {i}", "image": f"i{i}{p[-4:]}",
                     "query_id": str(i), "product_id": str(i)})
    with open(tmp_path / "train.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = gclip.train(
        {"data": str(tmp_path / "train.csv"), "model": str(CLI_MODEL), "rightKeys": ["image"],
         "rightWeights": [1.0], "batchSize": 2, "epochs": 3, "lr": 1e-3, "output": str(tmp_path / "run")},
        progress=False,
        max_steps=2,
    )
    assert isinstance(out, str) and out == str(tmp_path / "run")
    assert out.summary["steps"] == 2
    tuned = gclip.load(tmp_path / "run" / "final" / "open_clip")
    before = gclip.load(CLI_MODEL).embed_texts("query 1")
    after = tuned.embed_texts("query 1")
    assert after.shape == before.shape and not np.allclose(after, before, atol=1e-6)
    with pytest.raises(gclip.TrainError):
        gclip.train({"data": str(tmp_path / "missing.csv"), "model": str(CLI_MODEL)}, progress=False)


def test_index_open_attaches_the_default_model_when_it_is_the_pinned_one(model, tmp_path, monkeypatch):
    monkeypatch.delenv("GCLIP_MODEL", raising=False)
    with gclip.Index.create(tmp_path / "d", name="shop") as ix:  # the embedded default model
        ix.add([{"_id": "a", "title": "red suede sneakers"}, {"_id": "b", "title": "blue ceramic mug"}])
    again = gclip.Index.open(tmp_path / "d")
    assert again.search("blue ceramic mug", limit=1)[0]["_id"] == "b"
    again.close()
    # An index pinned to another model says how to attach it.
    with gclip.Index.create(tmp_path / "e", model=model) as ix:
        ix.add([{"_id": "a", "title": "red suede sneakers"}])
    other = gclip.Index.open(tmp_path / "e")
    assert other.search("red", method="lexical")[0]["_id"] == "a"  # BM25 needs no model
    with pytest.raises(gclip.InvalidInputError, match="model="):
        other.search("red suede sneakers")
    other.attach(model)
    assert other.search("red suede sneakers", limit=1)[0]["_id"] == "a"
