//! The markdown report of the experiment.

use super::{
    metric, own_docs, Results, RetrievalResult, SeedSummary, Spread, Variant, HEADLINE, SPLITS,
};

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".into(), |v| format!("{v:.3}"))
}

/// The README-ready report of an experiment's results.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Shop: `{}` (seed {}). Every model: same architecture, {} steps x {} pairs, lr {}, seed {}.\n\n",
        r.data.display(),
        r.seed,
        r.steps,
        r.batch_size,
        r.lr,
        r.seed
    ));
    s.push_str("Retrieval (Marqo GCL protocol: weighted query sample with seed 1, top 1000 over the split's corpus, graded relevance = rescaled score):\n\n");
    s.push_str("| model | documents embedded as | split | nDCG@10 | ERR | RBP@0.9 | MRR@10 |\n");
    s.push_str("|---|---|---|---|---|---|---|\n");
    // Each model as trained first, then the cross-check rows.
    let mut rows: Vec<&RetrievalResult> = r.retrieval.iter().collect();
    rows.sort_by_key(|x| (x.docs != own_docs(x.model), x.model.order()));
    for (i, rr) in rows.iter().enumerate() {
        let own = rr.docs == own_docs(rr.model);
        if i > 0 && !own && rows[i - 1].docs == own_docs(rows[i - 1].model) {
            s.push_str("| *cross-check* | | | | | | |\n");
        }
        for sp in &rr.splits {
            let label = SPLITS
                .iter()
                .find(|(n, _)| *n == sp.split)
                .map_or(sp.split.as_str(), |(_, l)| l);
            s.push_str(&format!(
                "| {} | {} | {} ({} q) |",
                rr.model.name().to_uppercase(),
                rr.docs.label(),
                label,
                sp.num_queries
            ));
            for (m, _) in HEADLINE {
                s.push_str(&format!(" {} |", fmt_opt(metric(sp, m))));
            }
            s.push('\n');
        }
    }
    s.push_str(
        "\nZero-shot classification, top-1 accuracy (prompt `{}` / `a photo of a {}.`):\n\n",
    );
    s.push_str("| model | set | classes | images | top-1 (bare) | top-1 (photo) |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    let mut variants: Vec<Variant> = r.runs.iter().map(|x| x.model).collect();
    variants.sort_by_key(|v| v.order());
    for v in variants {
        let mut sets: Vec<&str> = r
            .zero_shot
            .iter()
            .filter(|z| z.model == v)
            .map(|z| z.set.as_str())
            .collect();
        sets.dedup();
        for set in sets {
            let get = |t: &str| {
                r.zero_shot
                    .iter()
                    .find(|z| z.model == v && z.set == set && z.template == t)
            };
            let (b, p) = (get("bare"), get("photo"));
            let any = b.or(p);
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                v.name().to_uppercase(),
                set,
                any.map_or(0, |z| z.num_classes),
                any.map_or(0, |z| z.num_images),
                fmt_opt(b.map(|z| z.top1)),
                fmt_opt(p.map(|z| z.top1)),
            ));
        }
    }
    s.push_str(
        "\nTraining (loss: first step / mean of the last 20 steps; chance level is ln(batch)):\n\n\
         | model | steps | seconds | steps/s | first loss | last-20 loss |\n|---|---|---|---|---|---|\n",
    );
    for run in &r.runs {
        let last = fmt_opt(run.last_loss);
        match &run.summary {
            Some(sm) => s.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.4} | {last} |\n",
                run.model.label(),
                sm.steps,
                run.train_seconds.unwrap_or(f64::NAN),
                sm.steps_per_s,
                sm.first_loss,
            )),
            None => s.push_str(&format!(
                "| {} | (reused) | | | | {last} |\n",
                run.model.label()
            )),
        }
    }
    s.push_str(&format!(
        "\nEvaluation took {:.0} s. Best model (mean nDCG@10, own document form): {}.\n",
        r.eval_seconds,
        r.best.name().to_uppercase()
    ));
    s
}

fn fmt_spread(x: Option<&Spread>) -> String {
    x.map_or_else(|| "n/a".into(), |s| format!("{:.3} ± {:.3}", s.mean, s.sd))
}

/// The README-ready summary across seeds: mean ± sample standard deviation.
pub fn seeds_markdown(r: &SeedSummary) -> String {
    let seeds: Vec<String> = r.seeds.iter().map(u64::to_string).collect();
    let mut s = format!(
        "Seeds {} (each its own shop, init and data order); every model {} steps x {} pairs. \
         Mean ± sample standard deviation across seeds; documents embedded as each model \
         was trained.\n\n",
        seeds.join(", "),
        r.steps,
        r.batch_size
    );
    s.push_str("| model | split | nDCG@10 | ERR | RBP@0.9 | MRR@10 |\n|---|---|---|---|---|---|\n");
    for sp in &r.retrieval {
        let label = SPLITS
            .iter()
            .find(|(n, _)| *n == sp.split)
            .map_or(sp.split.as_str(), |(_, l)| l);
        s.push_str(&format!("| {} | {} |", sp.model.name(), label));
        for (m, _) in HEADLINE {
            s.push_str(&format!(" {} |", fmt_spread(sp.metrics.get(m))));
        }
        s.push('\n');
    }
    s.push_str(
        "\nZero-shot classification, top-1 (prompt `{}` = bare, `a photo of a {}.` = photo):\n\n",
    );
    s.push_str("| model | set | prompt | top-1 |\n|---|---|---|---|\n");
    for z in &r.zero_shot {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            z.model.name(),
            z.set,
            z.template,
            fmt_spread(Some(&z.top1))
        ));
    }
    if !r.train_seconds.is_empty() {
        s.push_str("\nTraining seconds per run:\n\n| model | seconds |\n|---|---|\n");
        for (m, t) in &r.train_seconds {
            s.push_str(&format!("| {m} | {:.0} ± {:.0} |\n", t.mean, t.sd));
        }
    }
    s
}
