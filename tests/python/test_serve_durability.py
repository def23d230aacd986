"""Durability over HTTP: two marqo clients stream adds, the server is killed with SIGKILL
mid-stream, restarted on the same data directory, and every acknowledged document is found
by id and by search (lexical on a unique token, tensor on its unique custom vector)."""

import random
import threading
import time

import marqo
from marqo.errors import BackendCommunicationError, MarqoWebError

from gclip_serve import Server

DIM_PROBE = "probe"


def test_acknowledged_adds_survive_kill9(gclip_bin, tmp_path):
    data = tmp_path / "data"
    srv = Server(gclip_bin, data).start()
    acked = {}
    lock = threading.Lock()
    try:
        mq = marqo.Client(url=srv.url)
        mq.create_index("durable")
        dim = len(mq.index("durable").embed(DIM_PROBE)["embeddings"][0])
        stop = threading.Event()

        def writer(w):
            client = marqo.Client(url=srv.url)
            rng = random.Random(w)
            i = 0
            while not stop.is_set():
                batch = []
                for _ in range(3):
                    doc_id = f"w{w}-{i}"
                    v = [rng.gauss(0, 1) for _ in range(dim)]
                    batch.append({"_id": doc_id, "text": f"token{w}x{i} streamed document",
                                  "vec": {"vector": v, "content": doc_id}})
                    i += 1
                try:
                    r = client.index("durable").add_documents(
                        batch, tensor_fields=["text", "vec"],
                        mappings={"vec": {"type": "custom_vector"}})
                except (BackendCommunicationError, MarqoWebError, OSError):
                    return  # the server is gone
                with lock:
                    for it, d in zip(r["items"], batch):
                        assert it["_id"] == d["_id"]
                        if it["status"] == 200:
                            acked[d["_id"]] = d

        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in (1, 2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= 60:
                    break
            time.sleep(0.05)
        srv.kill9()  # mid-stream: both writers have requests in flight
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert len(acked) >= 60, f"only {len(acked)} documents acknowledged before the deadline"
    finally:
        srv.stop()

    srv = Server(gclip_bin, data).start()
    try:
        ix = marqo.Client(url=srv.url).index("durable")
        ids = sorted(acked)
        got = ix.get_documents(ids)["results"]
        missing = [g["_id"] for g in got if not g["_found"]]
        assert not missing, f"{len(missing)} acknowledged documents lost: {missing[:5]}"
        assert ix.get_stats()["numberOfDocuments"] >= len(acked)
        for doc_id in random.Random(0).sample(ids, 20):
            d = acked[doc_id]
            w, i = doc_id[1:].split("-")
            lex = ix.search(f"token{w}x{i}", search_method="LEXICAL", limit=1)["hits"]
            assert lex and lex[0]["_id"] == doc_id
            ten = ix.search({"customVector": {"vector": d["vec"]["vector"]}},
                            searchable_attributes=["vec"], limit=1)["hits"]
            assert ten and ten[0]["_id"] == doc_id
    finally:
        srv.stop()

