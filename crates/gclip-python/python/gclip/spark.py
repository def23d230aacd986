"""Embedding at scale on Apache Spark.

* :func:`embed_dataframe` adds an ``array<float>`` embedding column to a DataFrame, computed
  in Arrow batches by ``mapInPandas``; each executor's Python worker loads the model once.
* :func:`embed_files` is the clip-retrieval shape of job: image files (or texts) in, shards of
  ``embeddings_NNNNN.npy`` + ``metadata_NNNNN.parquet`` out. It is resumable: a shard whose
  files exist is skipped, so a failed or interrupted job is finished by running it again.
* :func:`read_embeddings` reads such an output directory back (for a :class:`gclip.Index`).

The model must be readable at the same path on every executor (a shared filesystem, or a
file shipped with ``spark-submit --files`` / ``SparkContext.addFile`` and named by its
``SparkFiles.get`` path); ``model=None`` is the default model embedded in the wheel.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ._images import IMAGE_EXTENSIONS as _IMAGE_EXTENSIONS

# One model per (path, precision, threads) and Python process: Spark reuses its Python
# workers (spark.python.worker.reuse, on by default), so this is once per executor process.
_MODELS: Dict[Tuple[Optional[str], str, Optional[int]], Any] = {}


def _task_threads() -> int:
    """Cores Spark gave this task (spark.task.cpus), so parallel tasks do not oversubscribe."""
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is not None:
            return max(1, int(ctx.cpus()))
    except Exception:  # outside a task, or an older Spark without cpus()
        pass
    return 1


def _model(path: Optional[str], precision: str, threads: Optional[int]) -> Any:
    import gclip

    key = (path, precision, threads)
    m = _MODELS.get(key)
    if m is None:
        m = gclip.load(path, precision=precision, threads=threads or _task_threads())
        _MODELS[key] = m
    return m


def _is_null(v: Any) -> bool:
    # pandas hands a null string over as None or NaN, depending on the column's dtype.
    return v is None or (isinstance(v, float) and v != v)


def embed_dataframe(
    df: Any,
    model: Optional[str] = None,
    text_col: Optional[str] = None,
    image_col: Optional[str] = None,
    output_col: str = "embedding",
    batch_size: int = 256,
    *,
    normalize: bool = True,
    precision: str = "fp32",
    threads: Optional[int] = None,
) -> Any:
    """``df`` with an ``array<float>`` column ``output_col`` holding each row's embedding.

    Give exactly one of ``text_col`` (strings) or ``image_col`` (encoded image bytes, a
    ``binary`` column as ``spark.read.format("binaryFile")`` gives in ``content``, or file
    paths as strings). Rows whose value is null get a null embedding; an unreadable image
    fails the task with the file named. ``batch_size`` rows go through the model at a time
    (Spark's Arrow batches are ``spark.sql.execution.arrow.maxRecordsPerBatch`` rows).
    ``threads`` per task defaults to ``spark.task.cpus``.
    """
    from pyspark.sql.types import ArrayType, FloatType, StructField, StructType

    if (text_col is None) == (image_col is None):
        raise ValueError("give exactly one of text_col or image_col")
    col = text_col if text_col is not None else image_col
    if col not in df.columns:
        raise ValueError(f"column {col!r} not in the DataFrame (columns: {', '.join(df.columns)})")
    if output_col in df.columns:
        raise ValueError(f"output column {output_col!r} already exists")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    schema = StructType(list(df.schema.fields) + [StructField(output_col, ArrayType(FloatType()), True)])
    is_text = text_col is not None

    def embed_batches(frames: Iterator[Any]) -> Iterator[Any]:
        m = _model(model, precision, threads)
        for pdf in frames:
            values = pdf[col].tolist()
            out: List[Optional[np.ndarray]] = [None] * len(values)
            present = [i for i, v in enumerate(values) if not _is_null(v)]
            for s in range(0, len(present), batch_size):
                idx = present[s : s + batch_size]
                items = [values[i] for i in idx]
                if is_text:
                    emb = m.embed_texts(items, normalize)
                else:
                    emb = m.embed_images([bytes(v) if isinstance(v, (bytearray, memoryview)) else v for v in items], normalize)
                for i, row in zip(idx, emb):
                    out[i] = row
            pdf[output_col] = out
            yield pdf

    return df.mapInPandas(embed_batches, schema=schema)


def _list_inputs(inputs: Any, kind: str) -> List[str]:
    if isinstance(inputs, (str, os.PathLike)):
        p = Path(inputs)
        if kind == "image":
            if p.is_dir():
                return sorted(
                    str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _IMAGE_EXTENSIONS
                )
            return [str(p)]
        if p.is_file():
            # A text file: one text per non-empty line.
            return [l.rstrip("\r") for l in p.read_text(encoding="utf-8").split("\n") if l.strip()]
        return [str(inputs)]
    return [os.fspath(x) if isinstance(x, os.PathLike) else str(x) for x in inputs]


def _shard_done(out: Path, k: int) -> bool:
    # The metadata is written last (after the embeddings), each by an atomic rename.
    return (out / f"metadata_{k:05d}.parquet").exists() and (out / f"embeddings_{k:05d}.npy").exists()


def _write_shard(
    out: str,
    k: int,
    start: int,
    items: Sequence[str],
    kind: str,
    model: Optional[str],
    precision: str,
    threads: Optional[int],
    batch_size: int,
    normalize: bool,
) -> Dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import gclip

    t0 = time.perf_counter()
    m = _model(model, precision, threads)
    rows: List[np.ndarray] = []
    kept: List[int] = []
    errors: List[Dict[str, Any]] = []
    for s in range(0, len(items), batch_size):
        chunk = list(items[s : s + batch_size])
        try:
            emb = m.embed_texts(chunk, normalize) if kind == "text" else m.embed_images(chunk, normalize)
            rows.extend(emb)
            kept.extend(range(s, s + len(chunk)))
        except gclip.ImageError:
            # Find the unreadable images one by one; the rest of the batch is kept.
            for j, item in enumerate(chunk):
                try:
                    rows.append(m.embed_images([item], normalize)[0])
                    kept.append(s + j)
                except gclip.ImageError as e:
                    errors.append({"index": start + s + j, "input": item, "error": str(e)})
    emb = np.stack(rows).astype(np.float32) if rows else np.zeros((0, m.dim), np.float32)
    base = Path(out)
    tmp = base / f".embeddings_{k:05d}.npy.tmp"
    with open(tmp, "wb") as f:
        np.save(f, emb)
    os.replace(tmp, base / f"embeddings_{k:05d}.npy")
    table = pa.table(
        {
            "id": pa.array([start + i for i in kept], pa.int64()),
            "input": pa.array([items[i] for i in kept], pa.string()),
            "shard": pa.array([k] * len(kept), pa.int32()),
            "row": pa.array(list(range(len(kept))), pa.int32()),
        }
    )
    if errors:
        (base / f"errors_{k:05d}.json").write_text(json.dumps(errors, indent=1))
    tmp = base / f".metadata_{k:05d}.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, base / f"metadata_{k:05d}.parquet")
    return {"shard": k, "items": len(kept), "failed": len(errors), "seconds": time.perf_counter() - t0}


def embed_files(
    spark: Any,
    inputs: Any,
    output_dir: Any,
    *,
    model: Optional[str] = None,
    kind: str = "image",
    shard_size: int = 1000,
    batch_size: int = 64,
    normalize: bool = True,
    precision: str = "fp32",
    threads: Optional[int] = None,
) -> Dict[str, Any]:
    """Embeds files (``kind="image"``) or texts (``kind="text"``) into shards under
    ``output_dir``: ``embeddings_NNNNN.npy`` (float32 ``[rows, dim]``) and
    ``metadata_NNNNN.parquet`` (``id``: position in the sorted input list, ``input``: the path
    or text, ``shard``, ``row``: the row in the shard's array). Unreadable images are left
    out of their shard and listed in ``errors_NNNNN.json``.

    ``inputs``: a directory (walked for image files, sorted), a list of paths or texts, or
    for texts a UTF-8 file with one text per line. Shards already complete in
    ``output_dir`` are skipped, so running the same job again resumes it; each shard is one
    Spark task. Returns ``{"shards", "skipped", "items", "failed", "seconds", "dim"}``.
    """
    if kind not in ("image", "text"):
        raise ValueError('kind must be "image" or "text"')
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be at least 1")
    items = _list_inputs(inputs, kind)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = [(k, s, items[s : s + shard_size]) for k, s in enumerate(range(0, len(items), shard_size))]
    todo = [sh for sh in shards if not _shard_done(out, sh[0])]
    t0 = time.perf_counter()
    out_s = str(out.resolve())
    results: List[Dict[str, Any]] = []
    if todo:
        rdd = spark.sparkContext.parallelize(todo, len(todo))
        results = rdd.map(
            lambda sh: _write_shard(
                out_s, sh[0], sh[1], sh[2], kind, model, precision, threads, batch_size, normalize
            )
        ).collect()
    (out / "gclip-embed.json").write_text(
        json.dumps({"kind": kind, "model": model, "normalize": normalize, "shards": len(shards),
                    "shard_size": shard_size, "inputs": len(items)}, indent=1)
    )
    dim = None
    if shards:
        dim = int(np.load(out / f"embeddings_{shards[0][0]:05d}.npy", mmap_mode="r").shape[1])
    return {
        "shards": len(shards),
        "skipped": len(shards) - len(todo),
        "items": sum(r["items"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "seconds": time.perf_counter() - t0,
        "dim": dim,
    }


def read_embeddings(output_dir: Any) -> Tuple[np.ndarray, Any]:
    """All shards of an :func:`embed_files` output, in order: the float32 embeddings
    ``[rows, dim]`` and the metadata as a pandas DataFrame (row ``i`` describes embedding
    ``i``)."""
    import pandas as pd
    import pyarrow.parquet as pq

    out = Path(output_dir)
    metas = sorted(out.glob("metadata_*.parquet"))
    if not metas:
        raise FileNotFoundError(f"no metadata_*.parquet shards in {out}")
    embs, frames = [], []
    for meta in metas:
        k = meta.stem.split("_")[1]
        embs.append(np.load(out / f"embeddings_{k}.npy"))
        frames.append(pq.read_table(meta).to_pandas())
    return np.concatenate(embs), pd.concat(frames, ignore_index=True)


def index_documents(output_dir: Any, field: str = "vector") -> Iterable[Dict[str, Any]]:
    """Documents for :meth:`gclip.Index.add` from an :func:`embed_files` output: ``_id`` is
    the input's position, ``input`` the path or text, and ``field`` the precomputed vector
    (add them with ``mappings={field: {"type": "custom_vector"}}``, ``tensor_fields=[field]``)."""
    emb, meta = read_embeddings(output_dir)
    for v, (i, inp) in zip(emb, zip(meta["id"].tolist(), meta["input"].tolist())):
        yield {"_id": str(i), "input": inp, field: {"vector": v, "content": inp}}
