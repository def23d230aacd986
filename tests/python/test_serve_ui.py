"""The search page in a real browser: headless Chromium opens /ui on a served catalogue, the
page runs a query, and the DOM and the screenshot must show the result thumbnails."""

import json
import subprocess
import struct
import zlib

import marqo
import numpy as np

from conftest import require_tool
from gclip_serve import Server

LIMIT = 8


def read_png(path):
    """RGB(A) 8-bit PNG -> (H, W, C) uint8 array (what Chromium writes), standard library + numpy."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            c = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * c
    rows = []
    prev = bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        cur = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for x in range(c, stride):
                cur[x] = (cur[x] + cur[x - c]) & 255
        elif f == 2:
            cur = bytearray((a + b) & 255 for a, b in zip(cur, prev))
        elif f == 3:
            for x in range(stride):
                a = cur[x - c] if x >= c else 0
                cur[x] = (cur[x] + ((a + prev[x]) >> 1)) & 255
        elif f == 4:
            for x in range(stride):
                a = cur[x - c] if x >= c else 0
                b = prev[x]
                cc = prev[x - c] if x >= c else 0
                pa, pb, pc = abs(b - cc), abs(a - cc), abs(a + b - 2 * cc)
                cur[x] = (cur[x] + (a if pa <= pb and pa <= pc else (b if pb <= pc else cc))) & 255
        rows.append(bytes(cur))
        prev = cur
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(h, w, c)


def chromium(binary, profile, *args):
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
         "--window-size=1000,700", *args],
        capture_output=True, text=True, timeout=120)


def test_search_page_shows_thumbnails(gclip_bin, tmp_path):
    browser = require_tool("chromium")
    shop = tmp_path / "shop"
    subprocess.run([str(gclip_bin), "synth", "--out", str(shop), "--products", "20", "--queries", "2",
                    "--seed", "4"], check=True, timeout=300, stdout=subprocess.DEVNULL)
    corpus = json.loads((shop / "corpus.json").read_text())
    srv = Server(gclip_bin, tmp_path / "data", "--allow-dir", shop).start()
    try:
        mq = marqo.Client(url=srv.url)
        mq.create_index("demo", treat_urls_and_pointers_as_images=True)
        docs = [{"_id": pid, "title": p["title"], "image": str(shop / p["image"])} for pid, p in corpus.items()]
        r = mq.index("demo").add_documents(docs, tensor_fields=["title", "image"])
        assert r["errors"] is False
        # The page shell is HTML, and a browser asking for / is sent to it.
        st, _, raw = srv.raw("GET", "/ui")
        assert st == 200 and b"gclip search" in raw
        page = f"{srv.url}/ui?index=demo&q=red+sneakers&limit={LIMIT}"
        dom = chromium(browser, tmp_path / "profile1", "--dump-dom", page)
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert dom.stdout.count('class="hit"') == LIMIT, dom.stdout[-3000:]
        assert dom.stdout.count('data-loaded="1"') == LIMIT, dom.stdout[-3000:]
        assert f"{LIMIT} results" in dom.stdout
        shot = tmp_path / "shot.png"
        res = chromium(browser, tmp_path / "profile2", f"--screenshot={shot}", page)
        assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
        img = read_png(shot)[..., :3]
        grid = img[120:, :, :]  # below the header and the status line
        assert grid.std() > 20, "the result grid looks blank"
        colours = len(np.unique(grid.reshape(-1, 3), axis=0))
        assert colours > 2000, f"only {colours} distinct colours: no thumbnails drawn"
    finally:
        srv.stop()
