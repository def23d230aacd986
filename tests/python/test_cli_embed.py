"""The binary as a Python user's subprocess sees it: embeddings come back as numbers that agree."""

import json
import subprocess

import numpy as np


def embed(gclip_bin, *texts):
    args = [str(gclip_bin), "embed"]
    for t in texts:
        args += ["--text", t]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=120).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return np.array([r["embedding"] for r in rows], dtype=np.float32)


def test_embed_texts_are_unit_rows_and_deterministic(gclip_bin):
    a = embed(gclip_bin, "red sneakers", "a blue silk dress")
    b = embed(gclip_bin, "a blue silk dress")
    assert a.shape[0] == 2 and a.shape[1] > 0
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # The same text alone and in a batch embeds the same.
    np.testing.assert_allclose(a[1], b[0], atol=1e-5)
    assert float(a[0] @ a[1]) < 0.9999


def test_bad_image_is_a_clear_error(gclip_bin, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    proc = subprocess.run([str(gclip_bin), "embed", "--image", str(bad)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "broken.png" in proc.stderr
