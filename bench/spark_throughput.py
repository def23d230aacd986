# Run (gclip, pyspark, pyarrow, pandas installed; java on PATH):
#   python bench/spark_throughput.py [--model DIR] [--images 512] [--texts 20000] [--masters local[1],local[2]]
"""Throughput of gclip.spark on local Spark masters, side by side in one run.

For each master a fresh session runs `embed_files` over the same generated images (one task
per shard) and `embed_dataframe` over the same texts; items/s is counted from the job start,
so session start-up is excluded and model loading in the executors is included. Spark gives
each task `spark.task.cpus` (1) engine threads.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from python_overhead import texts, write_images  # noqa: E402


def session(master):
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    return (
        SparkSession.builder.master(master)
        .appName("gclip-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the embedded model)")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--texts", type=int, default=20000)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--masters", default="local[1],local[2]")
    args = ap.parse_args()

    import gclip.spark as gs
    from pyspark.sql import functions as F

    tmp = Path(tempfile.mkdtemp(prefix="gclip-spark-bench-"))
    write_images(tmp / "images", args.images)
    t_list = texts(args.texts)
    rows = []
    for master in args.masters.split(","):
        spark = session(master)
        try:
            out = tmp / f"out-{master}"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            r = gs.embed_files(spark, tmp / "images", out, model=args.model, shard_size=args.shard_size)
            img_rate = r["items"] / (time.perf_counter() - t)
            parts = int(master[master.index("[") + 1 : -1]) if "[" in master else 2
            df = spark.createDataFrame([(t_,) for t_ in t_list], ["text"]).repartition(parts * 2)
            df = df.cache()
            n = df.count()
            # A sum over the embeddings forces every row through the model (count() alone
            # could skip the column).
            t = time.perf_counter()
            gs.embed_dataframe(df, model=args.model, text_col="text").select(F.sum(F.element_at("embedding", 1))).collect()
            txt_rate = n / (time.perf_counter() - t)
        finally:
            spark.stop()
        rows.append((master, img_rate, txt_rate))
        print(f"{master}: images {img_rate:.1f}/s, texts {txt_rate:.1f}/s", file=sys.stderr)
    base = rows[0]
    print(f"{'master':10s} {'images/s':>10s} {'speed-up':>9s} {'texts/s':>10s} {'speed-up':>9s}")
    for m, i, t in rows:
        print(f"{m:10s} {i:10.1f} {i / base[1]:8.2f}x {t:10.1f} {t / base[2]:8.2f}x")


if __name__ == "__main__":
    main()
