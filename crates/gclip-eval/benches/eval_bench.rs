//! Throughput of metric evaluation and exact top-k retrieval, side by side with the
//! Python reference (pytrec_eval; numpy matmul + argpartition) when
//! `GCLIP_REF_PYTHON` points at a Python that has them (e.g. /work/refvenv/bin/python).
//!
//! Run: GCLIP_REF_PYTHON=/work/refvenv/bin/python cargo bench -p gclip-eval

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use gclip_eval::metrics::{evaluate, MetricConfig};
use gclip_eval::sampling::Mt19937;
use gclip_eval::search::top_k;
use gclip_eval::trec::{read_qrels, read_run};
use gclip_eval::Embeddings;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Mt19937::new(42);
    let (nq, nret, njudged) = (2000usize, 1000usize, 100usize);

    // A GCL-sized evaluation: 2000 queries x 1000 retrieved, graded qrels.
    let run_p = dir.path().join("bench.run");
    let qrels_p = dir.path().join("bench.qrels");
    {
        let mut run = std::io::BufWriter::new(std::fs::File::create(&run_p).unwrap());
        let mut qrels = std::io::BufWriter::new(std::fs::File::create(&qrels_p).unwrap());
        for q in 0..nq {
            for d in 0..nret {
                let s = (rng.next_f64() * 1000.0).round() / 1000.0;
                writeln!(
                    run,
                    "q{q} Q0 d{} {} {s} b",
                    (q * 7 + d * 13) % 50_000,
                    d + 1
                )
                .unwrap();
            }
            for j in 0..njudged {
                let rel = 1 + rng.next_u32() % 100;
                writeln!(qrels, "q{q} 0 d{} {rel}", (q * 7 + j * 131) % 50_000).unwrap();
            }
        }
    }
    let cfg = MetricConfig::with_cutoffs(gclip_eval::MARQO_CUTOFFS.to_vec());
    let t = Instant::now();
    let run = read_run(&run_p).unwrap();
    let qrels = read_qrels(&qrels_p).unwrap();
    let t_parse = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let ev = evaluate(&run, &qrels, &cfg, false).unwrap();
    let t_eval = t.elapsed().as_secs_f64();
    println!(
        "metrics: {nq} queries x {nret} docs, {} measures: parse {:.3} s, evaluate {:.3} s (ndcg@10 {:.4})",
        ev.metrics.len(),
        t_parse,
        t_eval,
        ev.mean_of("ndcg@10").unwrap_or(f64::NAN)
    );

    // Exact top-1000 over a 100k x 512 corpus for 256 queries.
    let (nd, dim, nqs, k) = (100_000usize, 512usize, 256usize, 1000usize);
    let gen = |rng: &mut Mt19937, n: usize| -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| (0..dim).map(|_| rng.next_f64() as f32 - 0.5).collect())
            .collect()
    };
    let mut docs = Embeddings::from_rows(dim, &gen(&mut rng, nd)).unwrap();
    let mut queries = Embeddings::from_rows(dim, &gen(&mut rng, nqs)).unwrap();
    docs.normalize();
    queries.normalize();
    let t = Instant::now();
    let hits = top_k(&queries, &docs, k, None).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let gflop = 2.0 * (nd * dim * nqs) as f64 / 1e9;
    println!(
        "search: {nqs} queries x {nd} docs x {dim} dims, top {k}: {secs:.3} s ({:.1} GFLOP/s, {:.0} queries/s, {} hits)",
        gflop / secs,
        nqs as f64 / secs,
        hits.iter().map(Vec::len).sum::<usize>()
    );

    let Ok(py) = std::env::var("GCLIP_REF_PYTHON") else {
        println!("(set GCLIP_REF_PYTHON to time pytrec_eval and numpy on the same work)");
        return;
    };
    let script = format!(
        r#"
import time, numpy as np, pytrec_eval
t=time.time()
run={{}}; qrels={{}}
for l in open({run:?}):
    q,_,d,_,s,_=l.split(); run.setdefault(q,{{}})[d]=float(s)
for l in open({qrels:?}):
    q,_,d,r=l.split(); qrels.setdefault(q,{{}})[d]=int(r)
tp=time.time()-t
ks=",".join(str(k) for k in {ks:?})
t=time.time()
ev=pytrec_eval.RelevanceEvaluator(qrels,{{"ndcg_cut."+ks,"map_cut."+ks,"P."+ks,"recall."+ks}})
res=ev.evaluate(run)
te=time.time()-t
print(f"pytrec_eval: parse {{tp:.3f}} s, evaluate {{te:.3f}} s (ndcg@10 {{np.mean([v['ndcg_cut_10'] for v in res.values()]):.4f}}) [no mrr/err/rbp]")
rng=np.random.default_rng(0)
D=rng.random(({nd},{dim}),dtype=np.float32)-0.5; D/=np.linalg.norm(D,axis=1,keepdims=True)
Q=rng.random(({nqs},{dim}),dtype=np.float32)-0.5; Q/=np.linalg.norm(Q,axis=1,keepdims=True)
t=time.time()
S=Q@D.T
idx=np.argpartition(-S,{k},axis=1)[:,:{k}]
top=np.take_along_axis(S,idx,1); order=np.argsort(-top,axis=1)
s=time.time()-t
print(f"numpy matmul+argpartition: {{s:.3f}} s ({{2*{nd}*{dim}*{nqs}/1e9/s:.1f}} GFLOP/s)")
"#,
        run = run_p.to_str().unwrap(),
        qrels = qrels_p.to_str().unwrap(),
        ks = gclip_eval::MARQO_CUTOFFS,
    );
    match Command::new(&py).arg("-c").arg(&script).output() {
        Ok(o) => {
            print!("{}", String::from_utf8_lossy(&o.stdout));
            eprint!("{}", String::from_utf8_lossy(&o.stderr));
        }
        Err(e) => println!("could not run {py}: {e}"),
    }
}
