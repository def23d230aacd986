"""gclip.spark on a local[2] Spark session: embeddings from executors equal the open_clip
fixtures; embed_files writes shards, resumes, and loads into an index."""

import json
import os
import shutil
import sys

import numpy as np
import pytest

from conftest import REPO, require_tool

CLI = REPO / "tests" / "fixtures" / "reference" / "cli"
MODEL = str(CLI / "model")


@pytest.fixture(scope="module")
def spark():
    require_tool("java")
    from pyspark.sql import SparkSession

    # Executors run this interpreter (the test venv, where gclip is installed).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("gclip-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "3")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="module")
def expected():
    return json.loads((CLI / "expected.json").read_text())


@pytest.mark.timeout(300)
def test_embed_dataframe_texts_and_images_match_the_fixtures(spark, expected):
    import gclip.spark as gs

    texts = expected["texts"]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], ["id", "text"]).repartition(2)
    rows = gs.embed_dataframe(df, model=MODEL, text_col="text", batch_size=2).orderBy("id").collect()
    got = np.array([r["embedding"] for r in rows], np.float32)
    np.testing.assert_allclose(got, np.array(expected["text_embeddings"]), atol=5e-6)
    assert [r["text"] for r in rows] == texts

    paths = [str(CLI / "images" / n) for n in expected["images"]]
    bin_df = spark.read.format("binaryFile").load(paths)
    out = {r["path"].rsplit("/", 1)[-1]: r["embedding"] for r in
           gs.embed_dataframe(bin_df, model=MODEL, image_col="content").select("path", "embedding").collect()}
    got = np.array([out[n] for n in expected["images"]], np.float32)
    np.testing.assert_allclose(got, np.array(expected["image_embeddings"]), atol=5e-6)

    by_path = spark.createDataFrame([(p,) for p in paths] + [(None,)], ["file"])
    res = gs.embed_dataframe(by_path, model=MODEL, image_col="file").collect()
    assert res[-1]["embedding"] is None
    np.testing.assert_allclose(
        np.array([r["embedding"] for r in res[:-1]], np.float32), np.array(expected["image_embeddings"]), atol=5e-6
    )
    with pytest.raises(ValueError, match="exactly one"):
        gs.embed_dataframe(df, model=MODEL)


@pytest.mark.timeout(300)
def test_embed_files_shards_resume_and_index(spark, expected, tmp_path):
    import gclip
    import gclip.spark as gs

    src = tmp_path / "images"
    src.mkdir()
    for n in expected["images"]:
        shutil.copy(CLI / "images" / n, src / n)
    (src / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    r = gs.embed_files(spark, src, out, model=MODEL, shard_size=2, batch_size=2)
    assert r["shards"] == 3 and r["skipped"] == 0 and r["items"] == 4 and r["failed"] == 1 and r["dim"] == 24
    assert sorted(p.name for p in out.glob("embeddings_*.npy")) == [
        "embeddings_00000.npy", "embeddings_00001.npy", "embeddings_00002.npy"]
    errors = json.loads((out / "errors_00002.json").read_text())
    assert "zz-broken.png" in errors[0]["error"]

    emb, meta = gs.read_embeddings(out)
    order = [n for n in sorted(expected["images"])]
    want = np.array([expected["image_embeddings"][expected["images"].index(n)] for n in order])
    np.testing.assert_allclose(emb, want, atol=5e-6)
    assert [os.path.basename(p) for p in meta["input"]] == order

    # A lost shard is redone, finished ones are skipped.
    (out / "metadata_00001.parquet").unlink()
    again = gs.embed_files(spark, src, out, model=MODEL, shard_size=2, batch_size=2)
    assert again["skipped"] == 2 and again["items"] == 2
    np.testing.assert_allclose(gs.read_embeddings(out)[0], emb, atol=0)

    # Texts, and loading precomputed vectors into an index.
    t = gs.embed_files(spark, expected["texts"], tmp_path / "texts", model=MODEL, kind="text", shard_size=3)
    assert t["items"] == 5
    model = gclip.load(MODEL)
    ix = gclip.Index.create(tmp_path / "data", model=model)
    docs = list(gs.index_documents(tmp_path / "texts"))
    res = ix.add(docs, tensor_fields=["vector"], mappings={"vector": {"type": "custom_vector"}})
    assert res["errors"] is False, res
    assert ix.search(expected["texts"][2], limit=1)[0]["_id"] == "2"
