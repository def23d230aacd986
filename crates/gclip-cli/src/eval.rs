//! `gclip eval`: trec_eval-exact metrics on TREC files, Marqo's GCL retrieval protocol,
//! zero-shot classification and image-text pair recall.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gclip::eval::metrics::MetricConfig;
use gclip::eval::report::{metrics_table, per_query_lines};
use gclip::eval::{
    CachedEncoder, FieldEncoder, FieldKind, FieldSpec, RetrievalConfig, Table, MARQO_CUTOFFS,
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Score a TREC run file against a qrels file (trec_eval definitions, plus MRR@k, ERR, RBP).
    Trec(TrecArgs),
    /// Marqo's GCL retrieval protocol: weighted query sample, top-k cosine retrieval, graded metrics.
    Retrieval(Box<RetrievalArgs>),
    /// Zero-shot classification of a folder-per-class image set.
    Zeroshot(ZeroshotArgs),
    /// Image-text retrieval recall on image-caption pairs.
    Pairs(PairsArgs),
    /// The protocol's ceiling on a generated shop: every split ranked by attribute overlap.
    Oracle(OracleArgs),
}

#[derive(clap::Args)]
pub struct TrecArgs {
    /// Run file: `qid Q0 docno rank score tag` per line.
    pub run: PathBuf,
    /// Qrels file: `qid iter docno relevance` per line.
    pub qrels: PathBuf,
    /// Cut-offs for ndcg, map, recall, precision and mrr.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5,10,100,1000")]
    pub k: Vec<usize>,
    /// RBP persistence values.
    #[arg(long, value_delimiter = ',', default_value = "0.7,0.8,0.9")]
    pub rbp: Vec<f64>,
    /// Minimum relevance counted as relevant (trec_eval -l).
    #[arg(long, default_value_t = 1)]
    pub relevance_level: i64,
    /// Write the means (and per-query values with --per-query) as JSON here.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also report every query's values.
    #[arg(long)]
    pub per_query: bool,
    /// Average over all qrels queries, absent ones scoring 0 (trec_eval -c).
    #[arg(long)]
    pub complete: bool,
}

/// Options shared by the model-based subcommands.
#[derive(clap::Args)]
pub struct ModelArgs {
    #[command(flatten)]
    pub source: crate::common::ModelArgs,
    /// Inputs per encoder call.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Embedding cache directory [default: $XDG_CACHE_HOME/gclip/embeddings].
    #[arg(long, env = "GCLIP_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the embedding cache.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(clap::Args)]
pub struct RetrievalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Query-document pairs (CSV, TSV, JSONL or JSON); image paths are relative to this file.
    #[arg(long)]
    pub data: PathBuf,
    /// Documents to search ({id: {field: value}} JSON, or a table with the id column);
    /// default: the distinct documents of --data.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Query fields.
    #[arg(long, value_delimiter = ',', default_value = "query")]
    pub left_keys: Vec<String>,
    /// Query field weights [default: all 1].
    #[arg(long, value_delimiter = ',')]
    pub left_weights: Vec<f32>,
    /// Query field kinds, text or image [default: detected from the values].
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    pub left_kinds: Vec<FieldKind>,
    /// Document fields.
    #[arg(long, value_delimiter = ',', default_value = "image,title")]
    pub right_keys: Vec<String>,
    /// Document field weights [default: 0.9,0.1 with the default keys, else all 1].
    #[arg(long, value_delimiter = ',')]
    pub right_weights: Vec<f32>,
    /// Document field kinds, text or image [default: detected from the values].
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    pub right_kinds: Vec<FieldKind>,
    /// Column with the pair weight (absent or constant: every weight is 1).
    #[arg(long, default_value = "score")]
    pub weight_key: String,
    /// Column with the document id.
    #[arg(long, default_value = "product_id")]
    pub doc_id_key: String,
    /// Column with the query id [default: the query field values].
    #[arg(long)]
    pub query_id_key: Option<String>,
    /// Queries to sample, weighted by summed weight (0 = all).
    #[arg(long, default_value_t = 2000)]
    pub queries: usize,
    /// Documents retrieved (and judged at most) per query.
    #[arg(long, default_value_t = 1000)]
    pub top_k: usize,
    /// Sampling seed (numpy RandomState seed, as in Marqo's eval).
    #[arg(long, default_value_t = 1)]
    pub seed: u32,
    /// Cut-offs [default: Marqo's 1,2,3,4,5,6,8,10,12,20,...,1000 up to --top-k].
    #[arg(long, value_delimiter = ',')]
    pub k: Vec<usize>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Include every query's values in the JSON.
    #[arg(long)]
    pub per_query: bool,
    /// Also write the retrieval run in TREC format (for trec_eval).
    #[arg(long)]
    pub run_out: Option<PathBuf>,
    /// Also write the qrels in TREC format.
    #[arg(long)]
    pub qrels_out: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ZeroshotArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Folder with one sub-folder of images per class.
    #[arg(long)]
    pub images: PathBuf,
    /// Prompt template with `{}` (or `{c}`) for the class name (repeatable)
    /// [default: "a photo of a {}."].
    #[arg(long)]
    pub template: Vec<String>,
    /// File with one template per line (added to --template).
    #[arg(long)]
    pub templates_file: Option<PathBuf>,
    /// Use folder names verbatim instead of turning `_` into spaces.
    #[arg(long)]
    pub keep_underscores: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct OracleArgs {
    /// A `gclip synth` output directory (manifest.json, queries.json, corpus.json, splits).
    #[arg(long)]
    pub shop: PathBuf,
    /// Splits to score [default: every test split in the manifest].
    #[arg(long, value_delimiter = ',')]
    pub splits: Vec<String>,
    /// Queries to sample per split, weighted by summed weight, as `eval retrieval` (0 = all).
    #[arg(long, default_value_t = 2000)]
    pub queries: usize,
    /// Documents ranked (and judged at most) per query.
    #[arg(long, default_value_t = 1000)]
    pub top_k: usize,
    /// Sampling seed, as `eval retrieval`.
    #[arg(long, default_value_t = 1)]
    pub seed: u32,
    /// Write `<split>.run` and `<split>.qrels` (TREC) here, for `gclip eval trec`.
    #[arg(long)]
    pub trec_dir: Option<PathBuf>,
    /// Write the per-split reports as one JSON object here.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct PairsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image-caption pairs (CSV, TSV, JSONL or JSON); image paths are relative to this file.
    #[arg(long)]
    pub data: PathBuf,
    /// Column with the image path.
    #[arg(long, default_value = "image")]
    pub image_key: String,
    /// Column with the caption.
    #[arg(long, default_value = "caption")]
    pub caption_key: String,
    /// Recall cut-offs.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10")]
    pub k: Vec<usize>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

fn parse_kind(s: &str) -> Result<FieldKind, String> {
    match s.to_ascii_lowercase().as_str() {
        "text" | "txt" => Ok(FieldKind::Text),
        "image" | "img" => Ok(FieldKind::Image),
        _ => Err(format!("{s:?} is not a field kind (text or image)")),
    }
}

pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Trec(a) => trec(a),
        Command::Retrieval(a) => retrieval(*a),
        Command::Zeroshot(a) => zeroshot(a),
        Command::Pairs(a) => pairs(a),
        Command::Oracle(a) => oracle(a),
    }
}

fn write_output(path: Option<&Path>, json: &str) -> anyhow::Result<()> {
    if let Some(p) = path {
        std::fs::write(p, json).with_context(|| format!("writing {}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn trec(a: TrecArgs) -> anyhow::Result<()> {
    let run = gclip::eval::trec::read_run(&a.run)?;
    let qrels = gclip::eval::trec::read_qrels(&a.qrels)?;
    let cfg = MetricConfig {
        cutoffs: a.k,
        rbp_ps: a.rbp,
        relevance_level: a.relevance_level,
    };
    let ev = gclip::eval::evaluate(&run, &qrels, &cfg, a.complete)?;
    if ev.per_query.is_empty() {
        eprintln!("warning: no query is in both the run and the qrels");
    }
    if a.per_query {
        print!("{}", per_query_lines(&ev));
    }
    print!("{}", metrics_table(&ev));
    write_output(a.output.as_deref(), &ev.to_json(a.per_query)?)
}

/// The model's encoder, wrapped in the on-disk embedding cache unless disabled.
fn encoder(m: &ModelArgs) -> anyhow::Result<Box<dyn FieldEncoder>> {
    let enc: Box<dyn FieldEncoder> = Box::new(m.source.load()?);
    if m.no_cache {
        return Ok(enc);
    }
    let dir = match &m.cache_dir {
        Some(d) => d.clone(),
        None => default_cache_dir()?,
    };
    let cached = CachedEncoder::open(enc, &dir)?;
    tracing::info!(path = %cached.path().display(), entries = cached.len(), "embedding cache");
    Ok(Box::new(cached))
}

fn default_cache_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("no cache directory: set --cache-dir, GCLIP_CACHE_DIR or HOME")?;
    Ok(base.join("gclip").join("embeddings"))
}

fn retrieval(a: RetrievalArgs) -> anyhow::Result<()> {
    let right_weights = if a.right_weights.is_empty() && a.right_keys == ["image", "title"] {
        vec![0.9, 0.1]
    } else {
        a.right_weights.clone()
    };
    let cutoffs = if a.k.is_empty() {
        let mut k: Vec<usize> = MARQO_CUTOFFS
            .iter()
            .copied()
            .filter(|&k| k <= a.top_k)
            .collect();
        if k.is_empty() {
            k.push(a.top_k);
        }
        k
    } else {
        a.k.clone()
    };
    let cfg = RetrievalConfig {
        left: FieldSpec::list(&a.left_keys, &a.left_weights, &a.left_kinds)?,
        right: FieldSpec::list(&a.right_keys, &right_weights, &a.right_kinds)?,
        weight_key: Some(a.weight_key.clone()),
        doc_id_key: a.doc_id_key.clone(),
        query_id_key: a.query_id_key.clone(),
        num_queries: (a.queries > 0).then_some(a.queries),
        top_k: a.top_k,
        seed: a.seed,
        metrics: MetricConfig::with_cutoffs(cutoffs),
        batch_size: a.model.batch_size,
        progress: gclip::progress::Progress::Bar,
    };
    cfg.metrics.validate()?;
    let data = Table::read(&a.data, &a.doc_id_key)?;
    let corpus = a
        .corpus
        .as_deref()
        .map(|c| Table::read(c, &a.doc_id_key))
        .transpose()?;
    let mut enc = encoder(&a.model)?;
    let rep = gclip::eval::evaluate_retrieval(&data, corpus.as_ref(), &cfg, enc.as_mut())?;
    println!(
        "model {} | {} documents | {} of {} queries (seed {}) | top {}",
        rep.model_id,
        rep.num_documents,
        rep.queries.len(),
        rep.num_candidate_queries,
        rep.seed,
        rep.top_k
    );
    print!("{}", metrics_table(&rep.evaluation));
    if let Some(p) = &a.run_out {
        gclip::eval::trec::write_run(p, &rep.run, "gclip")?;
    }
    if let Some(p) = &a.qrels_out {
        gclip::eval::trec::write_qrels(p, &rep.qrels)?;
    }
    write_output(a.output.as_deref(), &rep.to_json(a.per_query)?)
}

fn zeroshot(a: ZeroshotArgs) -> anyhow::Result<()> {
    let mut templates = a.template.clone();
    if let Some(f) = &a.templates_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        templates.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    if templates.is_empty() {
        templates.push("a photo of a {}.".into());
    }
    let gclip::eval::ImageFolder {
        classes: folders,
        images,
    } = gclip::eval::image_folder(&a.images)?;
    let classes: Vec<String> = if a.keep_underscores {
        folders
    } else {
        folders.iter().map(|c| c.replace('_', " ")).collect()
    };
    let mut enc = encoder(&a.model)?;
    let rep = gclip::eval::evaluate_zero_shot(
        enc.as_mut(),
        &classes,
        &templates,
        &images,
        a.model.batch_size,
    )?;
    println!(
        "model {} | {} images | {} classes | {} templates",
        rep.model, rep.num_images, rep.num_classes, rep.num_templates
    );
    println!("top-1 accuracy          {:.4}", rep.top1);
    println!("top-5 accuracy          {:.4}", rep.top5);
    println!("mean per-class recall   {:.4}", rep.mean_per_class_recall);
    write_output(a.output.as_deref(), &serde_json::to_string_pretty(&rep)?)
}

fn pairs(a: PairsArgs) -> anyhow::Result<()> {
    let table = Table::read(&a.data, &a.image_key)?;
    let ic = table.require(&a.image_key, "image path")?;
    let cc = table.require(&a.caption_key, "caption")?;
    let mut pairs = Vec::with_capacity(table.rows.len());
    for (i, r) in table.rows.iter().enumerate() {
        match (&r[ic], &r[cc]) {
            (Some(img), Some(cap)) => pairs.push((table.resolve(img), cap.clone())),
            _ => bail!(
                "{}: row {} lacks an image or a caption",
                a.data.display(),
                i + 1
            ),
        }
    }
    if a.k.contains(&0) {
        bail!("recall cut-off 0 is meaningless");
    }
    let mut enc = encoder(&a.model)?;
    let rep = gclip::eval::evaluate_pairs(enc.as_mut(), &pairs, &a.k, a.model.batch_size)?;
    println!(
        "model {} | {} images | {} captions",
        rep.model, rep.num_images, rep.num_captions
    );
    println!("{:>6} {:>8} {:>8}", "k", "t2i", "i2t");
    for (i, k) in rep.ks.iter().enumerate() {
        println!("{:>6} {:>8.4} {:>8.4}", k, rep.t2i[i], rep.i2t[i]);
    }
    write_output(a.output.as_deref(), &serde_json::to_string_pretty(&rep)?)
}

fn oracle(a: OracleArgs) -> anyhow::Result<()> {
    let manifest_path = a.shop.join("manifest.json");
    let manifest: gclip::synth::Manifest = serde_json::from_slice(
        &std::fs::read(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?,
    )
    .with_context(|| format!("parsing {}", manifest_path.display()))?;
    let oracle = gclip::synth::AttributeOracle::load(&a.shop)?;
    let wanted: Vec<&gclip::synth::write::SplitManifest> = if a.splits.is_empty() {
        manifest
            .splits
            .iter()
            .filter(|s| s.name != "train")
            .collect()
    } else {
        a.splits
            .iter()
            .map(|name| {
                manifest
                    .splits
                    .iter()
                    .find(|s| &s.name == name)
                    .with_context(|| {
                        let known: Vec<&str> =
                            manifest.splits.iter().map(|s| s.name.as_str()).collect();
                        format!(
                            "no split {name:?} in {}; known: {known:?}",
                            manifest_path.display()
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let cutoffs: Vec<usize> = MARQO_CUTOFFS
        .iter()
        .copied()
        .filter(|&k| k <= a.top_k)
        .collect();
    let cfg = RetrievalConfig {
        num_queries: (a.queries > 0).then_some(a.queries),
        top_k: a.top_k,
        seed: a.seed,
        metrics: MetricConfig::with_cutoffs(if cutoffs.is_empty() {
            vec![a.top_k]
        } else {
            cutoffs
        }),
        progress: gclip::progress::Progress::Silent,
        ..RetrievalConfig::default()
    };
    if let Some(d) = &a.trec_dir {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut reports = serde_json::Map::new();
    let mut summary = String::from("split            nDCG@10      ERR  RBP@0.9   MRR@10\n");
    for split in wanted {
        let data = Table::read(&a.shop.join(&split.file), &cfg.doc_id_key)?;
        let corpus = Table::read(&a.shop.join(&split.corpus), &cfg.doc_id_key)?;
        let score = |q: &str, d: &str| oracle.score(q, d).unwrap_or(f64::NAN);
        let rep = gclip::eval::evaluate_scorer(
            &data,
            Some(&corpus),
            &cfg,
            "attribute-overlap oracle",
            &score,
        )?;
        println!(
            "split {} ({} over {}) | {} documents | {} of {} queries (seed {}) | top {}",
            split.name,
            split.file,
            split.corpus,
            rep.num_documents,
            rep.queries.len(),
            rep.num_candidate_queries,
            rep.seed,
            rep.top_k
        );
        print!("{}", metrics_table(&rep.evaluation));
        if let Some(d) = &a.trec_dir {
            let run = d.join(format!("{}.run", split.name));
            let qrels = d.join(format!("{}.qrels", split.name));
            gclip::eval::trec::write_run(&run, &rep.run, "oracle")?;
            gclip::eval::trec::write_qrels(&qrels, &rep.qrels)?;
            eprintln!("wrote {} and {}", run.display(), qrels.display());
        }
        let m = |name: &str| rep.evaluation.mean_of(name).unwrap_or(f64::NAN);
        summary += &format!(
            "{:<15} {:>8.4} {:>8.4} {:>8.4} {:>8.4}\n",
            split.name,
            m("ndcg@10"),
            m("err"),
            m("rbp@0.9"),
            m("mrr@10")
        );
        reports.insert(
            split.name.clone(),
            serde_json::from_str(&rep.to_json(false)?)?,
        );
    }
    print!(
        "\nattribute-overlap oracle on {}\n{summary}",
        a.shop.display()
    );
    write_output(
        a.output.as_deref(),
        &serde_json::to_string_pretty(&serde_json::Value::Object(reports))?,
    )
}
