"""`gclip serve` driven by the official marqo Python client (pinned in requirements.txt), for
every call a Marqo user makes, errors included. The server runs on a free loopback port with a
temporary data directory and the embedded default model, and is always stopped."""

import base64
import json
import math
import os
import pathlib
import re
import subprocess

import marqo
import pytest
from marqo.errors import MarqoWebError

from gclip_serve import Server


@pytest.fixture(scope="module")
def shop(gclip_bin, tmp_path_factory):
    out = tmp_path_factory.mktemp("shop")
    subprocess.run([str(gclip_bin), "synth", "--out", str(out), "--products", "24",
                    "--queries", "4", "--seed", "3"], check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    corpus = json.loads((out / "corpus.json").read_text())
    docs = []
    for pid, p in corpus.items():
        d = {"_id": pid, "title": p["title"], "image": str(out / p["image"]),
             "popularity": float(p["popularity"])}
        docs.append(d)
    assert len(docs) == 24
    return out, docs


@pytest.fixture(scope="module")
def server(gclip_bin, shop, tmp_path_factory):
    srv = Server(gclip_bin, tmp_path_factory.mktemp("data"), "--allow-dir", shop[0])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def mq(server):
    return marqo.Client(url=server.url)


@pytest.fixture(scope="module")
def catalogue(mq, shop):
    """An index with the shop's products: text, image, a title+image combination, a custom vector."""
    _, docs = shop
    mq.create_index("catalogue", treat_urls_and_pointers_as_images=True)
    dim = len(mq.index("catalogue").embed("probe")["embeddings"][0])
    for i, d in enumerate(docs):
        v = [0.0] * dim
        v[i % dim] = 1.0
        d["vec"] = {"vector": v, "content": f"axis {i}"}
    res = mq.index("catalogue").add_documents(
        docs, tensor_fields=["title", "image", "combo", "vec"], client_batch_size=10,
        mappings={"combo": {"type": "multimodal_combination",
                            "weights": {"title": 0.3, "image": 0.7}},
                  "vec": {"type": "custom_vector"}})
    assert isinstance(res, list) and len(res) == 3  # client-side batches of 10
    for r in res:
        assert r["errors"] is False, r
        assert all(it["status"] == 200 for it in r["items"])
    return docs, dim


def test_version_list_settings_stats_health(mq, catalogue):
    docs, _ = catalogue
    assert mq.index("catalogue").get_marqo()["version"] >= "2"
    assert {"indexName": "catalogue"} in mq.get_indexes()["results"]
    s = mq.index("catalogue").get_settings()
    assert s["treatUrlsAndPointersAsImages"] is True
    assert s["type"] == "unstructured"
    st = mq.index("catalogue").get_stats()
    assert st["numberOfDocuments"] == len(docs)
    # title chunks + image + combo + vec per document
    assert st["numberOfVectors"] >= 4 * len(docs)
    assert mq.index("catalogue").health()["status"] == "green"
    assert mq.get_index("catalogue").index_name == "catalogue"


def test_create_errors(mq):
    mq.create_index("twice")
    with pytest.raises(MarqoWebError) as e:
        mq.create_index("twice")
    assert e.value.code == "index_already_exists" and e.value.status_code == 409
    with pytest.raises(MarqoWebError) as e:
        mq.create_index("bad.name")
    assert e.value.code == "invalid_index_name" and e.value.status_code == 400
    with pytest.raises(MarqoWebError) as e:
        mq.create_index("badsettings", settings_dict={"normalize_embeddings": True})
    assert e.value.status_code == 400
    assert mq.delete_index("twice") == {"acknowledged": True}
    with pytest.raises(MarqoWebError) as e:
        mq.get_index("twice")
    assert e.value.code == "index_not_found" and e.value.status_code == 404


def test_get_documents(mq, catalogue):
    docs, dim = catalogue
    ix = mq.index("catalogue")
    d = ix.get_document(docs[0]["_id"])
    assert d["_id"] == docs[0]["_id"] and d["title"] == docs[0]["title"]
    f = ix.get_document(docs[0]["_id"], expose_facets=True)
    fields = {k for facet in f["_tensor_facets"] for k in facet if k != "_embedding"}
    assert {"title", "image", "combo", "vec"} <= fields
    assert all(len(facet["_embedding"]) == dim for facet in f["_tensor_facets"])
    got = ix.get_documents([docs[1]["_id"], "missing-id"])
    assert got["results"][0]["_found"] is True
    assert got["results"][0]["title"] == docs[1]["title"]
    assert got["results"][1] == {"_id": "missing-id", "_found": False, "status": 404,
                                 "message": got["results"][1]["message"]}
    with pytest.raises(MarqoWebError) as e:
        ix.get_document("missing-id")
    assert e.value.code == "document_not_found" and e.value.status_code == 404


def test_tensor_search_modes(mq, catalogue):
    docs, dim = catalogue
    ix = mq.index("catalogue")
    target = docs[5]
    r = ix.search(target["title"], searchable_attributes=["title"], limit=3)
    assert r["hits"][0]["_id"] == target["_id"]
    assert r["hits"][0]["_highlights"] == [{"title": target["title"]}]
    assert r["limit"] == 3 and r["offset"] == 0 and "processingTimeMs" in r
    # An image query (a path inside --allow-dir) finds its own document first.
    r = ix.search(target["image"], searchable_attributes=["image"], limit=2)
    assert r["hits"][0]["_id"] == target["_id"]
    # Custom vector query against the custom vector field.
    v = target["vec"]["vector"]
    r = ix.search({"customVector": {"vector": v}}, searchable_attributes=["vec"], limit=1)
    assert r["hits"][0]["_id"] == target["_id"]
    # Weighted dict with a negative term, offset, attributesToRetrieve, no highlights.
    r = ix.search({target["title"]: 1.0, docs[6]["title"]: -0.3}, limit=4, offset=1,
                  attributes_to_retrieve=["title"], show_highlights=False, ef_search=64)
    assert len(r["hits"]) == 4
    for h in r["hits"]:
        assert set(h) == {"_id", "_score", "title"}, h
    full = ix.search({target["title"]: 1.0, docs[6]["title"]: -0.3}, limit=5)
    assert [h["_id"] for h in full["hits"][1:]] == [h["_id"] for h in r["hits"]]


def test_filter_and_score_modifiers(mq, catalogue):
    docs, _ = catalogue
    ix = mq.index("catalogue")
    top = max(docs, key=lambda d: d["popularity"])
    lo = sorted(d["popularity"] for d in docs)[len(docs) // 2]
    r = ix.search("a product", filter_string=f"popularity:[{lo} TO *]", limit=50)
    assert r["hits"] and all(h["popularity"] >= lo for h in r["hits"])
    assert len(r["hits"]) == sum(1 for d in docs if d["popularity"] >= lo)
    r = ix.search("a product", filter_string=f"_id:{docs[3]['_id']}")
    assert [h["_id"] for h in r["hits"]] == [docs[3]["_id"]]
    r = ix.search("a product", limit=1, score_modifiers={
        "add_to_score": [{"field_name": "popularity", "weight": 1000}]})
    assert r["hits"][0]["_id"] == top["_id"]
    with pytest.raises(MarqoWebError) as e:
        ix.search("x", filter_string="popularity:[1 TO")
    assert e.value.code == "invalid_argument" and e.value.status_code == 400


def test_lexical_and_hybrid(mq, catalogue):
    docs, _ = catalogue
    ix = mq.index("catalogue")
    tokens = lambda t: set(re.findall(r"[a-z0-9]+", t.lower()))
    word = max(tokens(docs[2]["title"]), key=len)
    r = ix.search(word, search_method="LEXICAL", limit=24, searchable_attributes=["title"])
    assert docs[2]["_id"] in [h["_id"] for h in r["hits"]]
    assert all(word in tokens(h["title"]) for h in r["hits"]), (word, r["hits"])
    r = ix.search(docs[2]["title"], search_method="HYBRID", limit=5, hybrid_parameters={
        "retrievalMethod": "disjunction", "rankingMethod": "rrf", "alpha": 0.5, "rrfK": 60,
        "searchableAttributesLexical": ["title"], "searchableAttributesTensor": ["title"]})
    assert r["hits"][0]["_id"] == docs[2]["_id"]
    assert "_tensor_score" in r["hits"][0] and "_lexical_score" in r["hits"][0]


def test_embed(mq, catalogue):
    _, dim = catalogue
    ix = mq.index("catalogue")
    r = ix.embed("red sneakers")
    assert len(r["embeddings"]) == 1 and len(r["embeddings"][0]) == dim
    assert math.isclose(math.sqrt(sum(x * x for x in r["embeddings"][0])), 1.0, rel_tol=1e-4)
    r = ix.embed(["red sneakers", {"boots": 1.0, "shoes": 0.5}], content_type="document")
    assert len(r["embeddings"]) == 2
    # The query embedding is the vector search uses: searching by it gives the same ranking.
    q = ix.embed("brown boots")["embeddings"][0]
    a = ix.search("brown boots", limit=5)["hits"]
    b = ix.search({"customVector": {"vector": q}}, limit=5)["hits"]
    assert [h["_id"] for h in a] == [h["_id"] for h in b]


def test_update_and_delete(mq, shop):
    mq.create_index("edits")
    ix = mq.index("edits")
    r = ix.add_documents([{"_id": "a", "title": "green wool scarf", "n": 1},
                          {"_id": "b", "title": "blue glass vase", "n": 2},
                          {"title": "an id assigned by the server"}], tensor_fields=["title"])
    assert r["errors"] is False and len(r["items"]) == 3
    assigned = r["items"][2]["_id"]
    assert len(assigned) >= 16
    r = ix.update_documents([{"_id": "a", "n": 10, "title": "red wool scarf"},
                             {"_id": "nope", "n": 1}])
    assert r["errors"] is True
    assert [it["status"] for it in r["items"]] == [200, 404]
    assert ix.get_document("a")["n"] == 10
    assert ix.search("red wool scarf", limit=1)["hits"][0]["_id"] == "a"
    r = ix.delete_documents(["b", assigned, "never-there"])
    assert r["details"] == {"receivedDocumentIds": 3, "deletedDocuments": 2}
    assert r["status"] == "succeeded" and r["type"] == "documentDeletion"
    assert ix.get_stats()["numberOfDocuments"] == 1
    assert [h["_id"] for h in ix.search("vase", limit=10)["hits"]] == ["a"]
    mq.delete_index("edits")


def test_bad_documents_fail_alone(mq, shop, tmp_path):
    out, docs = shop
    mq.create_index("bad-docs", treat_urls_and_pointers_as_images=True)
    ix = mq.index("bad-docs")
    corrupt = out / "images" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    outside = tmp_path / "outside.png"
    outside.write_bytes(pathlib.Path(docs[0]["image"]).read_bytes())
    link = out / "images" / "escape.png"
    if not link.exists():
        os.symlink(outside, link)
    png = base64.b64encode(pathlib.Path(docs[1]["image"]).read_bytes()).decode()
    r = ix.add_documents([
        {"_id": "ok", "image": docs[0]["image"]},
        {"_id": "inline", "image": "data:image/png;base64," + png},
        {"_id": "corrupt", "image": str(corrupt)},
        {"_id": "dotdot", "image": str(out / "images" / ".." / ".." / outside.name)},
        {"_id": "symlink", "image": str(link)},
        {"_id": "url", "image": "http://127.0.0.1:1/x.png"},
        {"_id": "bad-field", "marqo__x": "y"},
    ], tensor_fields=["image"])
    status = {it["_id"]: it["status"] for it in r["items"]}
    assert r["errors"] is True
    assert status == {"ok": 200, "inline": 200, "corrupt": 400, "dotdot": 400,
                      "symlink": 400, "url": 400, "bad-field": 400}, r
    msgs = {it["_id"]: it.get("message", "") for it in r["items"]}
    assert "--allow-dir" in msgs["symlink"] and "--allow-url" in msgs["url"]
    with pytest.raises(MarqoWebError) as e:
        ix.search(str(corrupt))
    assert e.value.status_code == 400
    mq.delete_index("bad-docs")


def test_request_errors_are_marqo_shaped(mq, server, catalogue):
    ix = mq.index("catalogue")
    with pytest.raises(MarqoWebError) as e:
        mq.index("no-such-index").search("x")
    assert e.value.code == "index_not_found" and e.value.status_code == 404
    with pytest.raises(MarqoWebError) as e:
        ix.search("x", limit="ten")
    assert e.value.status_code == 422
    with pytest.raises(MarqoWebError) as e:
        ix.add_documents([{"title": str(i)} for i in range(129)], tensor_fields=["title"])
    assert e.value.status_code == 400 and "--max-batch-docs" in str(e.value)
    with pytest.raises(MarqoWebError) as e:
        ix.add_documents([{"title": "x"}])  # no tensor_fields
    assert e.value.code == "invalid_argument"
    with pytest.raises(MarqoWebError) as e:
        ix.search("x", facets={"fields": {"title": {"type": "string"}}})
    assert e.value.status_code == 400 and "facets" in str(e.value)
    with pytest.raises(MarqoWebError) as e:
        ix.search("x" * 20_000)
    assert "--max-query-chars" in str(e.value)
    # Malformed JSON and wrong types, sent raw.
    for body in ["{", "[1, 2", "\x00", '{"q": }']:
        st, j, _ = server.raw("POST", "/indexes/catalogue/search", body)
        assert st == 400 and j["code"] == "bad_request", (body, st, j)
    st, j, _ = server.raw("POST", "/indexes/catalogue/search", '{"q": ["a"]}')
    assert st == 422 and j["code"] == "unprocessable_entity"
    st, j, _ = server.raw("POST", "/indexes/catalogue/documents", '{"documents": "x", "tensorFields": []}')
    assert st == 422
    st, j, _ = server.raw("GET", "/indexes/catalogue/documents", '{"not": "a list"}')
    assert st == 422
    st, j, _ = server.raw("POST", "/indexes/catalogue/search", json.dumps({"q": "x", "limit": 5000}))
    assert st == 400 and j["code"] == "invalid_argument"
    st, j, _ = server.raw("GET", "/no/such/route")
    assert st == 404 and j["code"] == "not_found"
    # The server is still fine after all of that.
    assert ix.search("boots", limit=1)["hits"]


def test_api_key(gclip_bin, tmp_path):
    srv = Server(gclip_bin, tmp_path / "data", env={"GCLIP_API_KEY": "k3y-for-tests"})
    srv.start()
    try:
        st, j, _ = srv.raw("GET", "/health")
        assert st == 200 and j["status"] == "green"
        with pytest.raises(MarqoWebError) as e:
            marqo.Client(url=srv.url).get_indexes()
        assert e.value.status_code == 401 and e.value.code == "unauthorized"
        with pytest.raises(MarqoWebError) as e:
            marqo.Client(url=srv.url, api_key="wrong").get_indexes()
        assert e.value.status_code == 401
        good = marqo.Client(url=srv.url, api_key="k3y-for-tests")
        good.create_index("keyed")
        good.index("keyed").add_documents([{"_id": "1", "t": "hello"}], tensor_fields=["t"])
        assert good.index("keyed").search("hello")["hits"][0]["_id"] == "1"
    finally:
        srv.stop()


def test_image_urls_with_allow_url(gclip_bin, shop, tmp_path):
    """--allow-url downloads image URLs; the images come from a local HTTP server whose port
    is let through by the testing-only loopback option, while every other loopback port (here
    the gclip server's own) stays refused."""
    import functools
    import http.server
    import threading

    out, docs = shop
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out / "images"))
    handler.log_message = lambda *a: None
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    srv = Server(gclip_bin, tmp_path / "data", "--allow-url",
                 "--test-allow-url-loopback-port", site.server_port)
    try:
        srv.start()
        mq = marqo.Client(url=srv.url)
        mq.create_index("web", treat_urls_and_pointers_as_images=True)
        ix = mq.index("web")
        base = f"http://127.0.0.1:{site.server_port}/"
        names = [pathlib.Path(d["image"]).name for d in docs[:3]]
        r = ix.add_documents(
            [{"_id": n, "image": base + n} for n in names]
            + [{"_id": "self", "image": srv.url + "/health"},
               {"_id": "missing", "image": base + "no-such.png"}],
            tensor_fields=["image"])
        status = {it["_id"]: it["status"] for it in r["items"]}
        assert status == {**{n: 200 for n in names}, "self": 400, "missing": 400}, r
        msgs = {it["_id"]: it.get("message", "") for it in r["items"]}
        assert "loopback" in msgs["self"] and "HTTP 404" in msgs["missing"], msgs
        hits = ix.search(base + names[1], limit=3)["hits"]
        assert hits[0]["_id"] == names[1]
    finally:
        srv.stop()
        site.shutdown()
        site.server_close()
