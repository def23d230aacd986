//! `gclip index ...`: the search engine from the command line (create, add, update, get,
//! delete, search, stats, compact, list, drop) and the ANN benchmark (`bench`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use gclip::index::{
    self as gi, AddDocuments, Embedder, Engine, IndexSettings, Mapping, Query, SearchMethod,
    SearchRequest, VectorNumericType,
};
use serde_json::{json, Value};

use crate::common::ModelArgs;
use gclip::io::walk_images;
use gclip::progress::bar as progress;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory (default: $GCLIP_DATA_DIR, else $XDG_DATA_HOME/gclip, else
    /// ~/.local/share/gclip).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Create an index pinned to the model (settings: Marqo's camelCase JSON, or @FILE).
    Create {
        name: String,
        #[arg(long, value_name = "JSON|@FILE")]
        settings: Option<String>,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Add documents from a JSONL file (one object per line) or a folder of images.
    Add {
        name: String,
        /// JSONL documents ("-" for stdin).
        #[arg(long, value_name = "FILE", conflicts_with = "images")]
        jsonl: Option<PathBuf>,
        /// A folder of images (walked recursively); each becomes {"_id": path, "image": path}.
        #[arg(long, value_name = "DIR")]
        images: Option<PathBuf>,
        /// Fields to embed (comma separated; default for --images: image).
        #[arg(long, value_delimiter = ',')]
        tensor_fields: Vec<String>,
        /// Marqo mappings JSON (multimodal_combination / custom_vector), or @FILE.
        #[arg(long, value_name = "JSON|@FILE")]
        mappings: Option<String>,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Partial update from a JSONL file of {"_id", fields...}.
    Update {
        name: String,
        #[arg(long, value_name = "FILE")]
        jsonl: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Print documents by id as JSON.
    Get {
        name: String,
        ids: Vec<String>,
        /// Include each chunk and its vector (`_tensor_facets`).
        #[arg(long)]
        facets: bool,
    },
    /// Delete documents by id or by filter.
    Delete {
        name: String,
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        filter: Option<String>,
    },
    /// Search: a text (or image path), with Marqo's parameters.
    Search {
        name: String,
        /// The query text (or an image path when the index treats pointers as images).
        query: Option<String>,
        /// A whole Marqo search body as JSON (or @FILE); other flags are then ignored.
        #[arg(long, value_name = "JSON|@FILE")]
        request: Option<String>,
        #[arg(long, value_enum, default_value = "tensor")]
        method: MethodArg,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long)]
        filter: Option<String>,
        /// Fields to return (comma separated).
        #[arg(long, value_delimiter = ',')]
        attributes: Vec<String>,
        #[arg(long)]
        ef: Option<usize>,
        /// Exact scan instead of the graph.
        #[arg(long)]
        exact: bool,
        #[arg(long, value_enum, default_value = "json")]
        format: FormatArg,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Documents, vectors and bytes of an index.
    Stats { name: String },
    /// Take deleted vectors out of the graph and the store (repairs the links that point at
    /// them); prints what it did as JSON.
    Compact { name: String },
    /// Names of all indexes.
    List,
    /// Delete an index and its files.
    Drop { name: String },
    /// ANN benchmark on .npy float32 arrays: one JSON line with the build, one per ef.
    Bench(BenchArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum MethodArg {
    Tensor,
    Lexical,
    Hybrid,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum FormatArg {
    Json,
    Table,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum PrecisionArg {
    Float32,
    Float16,
    Int8,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long)]
    base: PathBuf,
    #[arg(long)]
    queries: PathBuf,
    #[arg(long, default_value_t = 10)]
    k: usize,
    #[arg(long, value_delimiter = ',', default_value = "16,32,64")]
    ef: Vec<usize>,
    #[arg(long, default_value_t = 16)]
    m: usize,
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Query threads (each runs one query at a time).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, default_value_t = 2)]
    build_threads: usize,
    #[arg(long, value_enum, default_value = "float32")]
    precision: PrecisionArg,
    /// Also measure filtered search keeping these fractions of the base (e.g. 0.01,0.1).
    #[arg(long, value_delimiter = ',')]
    filter_selectivity: Vec<f64>,
}

fn json_arg(s: &str) -> anyhow::Result<Value> {
    let text = match s.strip_prefix('@') {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {p}"))?,
        None => s.to_string(),
    };
    serde_json::from_str(&text).context("parsing JSON argument")
}

fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Value>> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let mut docs = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        docs.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?,
        );
    }
    Ok(docs)
}

fn embedder(m: &ModelArgs) -> anyhow::Result<Arc<dyn Embedder>> {
    Ok(Arc::new(m.load()?))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Cmd::Bench(b) = &args.command {
        return bench(b);
    }
    let dir = args.data_dir.clone().unwrap_or_else(gi::default_data_dir);
    let engine =
        Engine::open(&dir).with_context(|| format!("opening data directory {}", dir.display()))?;
    let mut out = std::io::stdout().lock();
    match args.command {
        Cmd::Create {
            name,
            settings,
            model,
        } => {
            let settings = match settings {
                Some(s) => IndexSettings::from_json(&json_arg(&s)?)?,
                None => IndexSettings::default(),
            };
            let e = embedder(&model)?;
            let ix = engine.create_index(&name, settings, e)?;
            writeln!(
                out,
                "{}",
                json!({"acknowledged": true, "index": ix.name(), "model": ix.model_id(), "dim": ix.dim()})
            )?;
        }
        Cmd::Add {
            name,
            jsonl,
            images,
            mut tensor_fields,
            mappings,
            batch,
            model,
        } => {
            let ix = engine.index(&name, Some(embedder(&model)?))?;
            let docs: Vec<Value> = match (&jsonl, &images) {
                (Some(p), _) => read_jsonl(p)?,
                (None, Some(d)) => {
                    if !ix.settings().treat_urls_and_pointers_as_images {
                        bail!(
                            "index `{name}` reads strings as text; create it with --settings \
                             '{{\"treatUrlsAndPointersAsImages\": true}}' to add images by path"
                        );
                    }
                    if tensor_fields.is_empty() {
                        tensor_fields.push("image".into());
                    }
                    walk_images(d)?
                        .into_iter()
                        .map(|p| {
                            let abs = std::fs::canonicalize(&p).unwrap_or(p.clone());
                            let id = p
                                .strip_prefix(d)
                                .unwrap_or(&p)
                                .to_string_lossy()
                                .replace('/', "_");
                            json!({"_id": id, "image": abs.to_string_lossy()})
                        })
                        .collect()
                }
                (None, None) => bail!("give --jsonl FILE or --images DIR"),
            };
            let mappings: std::collections::BTreeMap<String, Mapping> = match mappings {
                Some(m) => serde_json::from_value(json_arg(&m)?).context("mappings")?,
                None => Default::default(),
            };
            let pb = progress(docs.len() as u64, "indexing");
            let (mut ok, mut failed) = (0usize, 0usize);
            for chunk in docs.chunks(batch.max(1)) {
                let r = ix.add_documents(&AddDocuments {
                    documents: chunk.to_vec(),
                    tensor_fields: tensor_fields.clone(),
                    mappings: mappings.clone(),
                    ..Default::default()
                })?;
                for item in &r.items {
                    if item.is_ok() {
                        ok += 1;
                    } else {
                        failed += 1;
                        pb.suspend(|| {
                            eprintln!("{}: {}", item.id, item.message.clone().unwrap_or_default())
                        });
                    }
                }
                pb.inc(chunk.len() as u64);
            }
            pb.finish_and_clear();
            ix.checkpoint()?;
            writeln!(out, "{}", json!({"added": ok, "failed": failed}))?;
            if failed > 0 && ok == 0 {
                bail!("no document was added");
            }
        }
        Cmd::Update { name, jsonl, model } => {
            let ix = engine.index(&name, Some(embedder(&model)?))?;
            let r = ix.update_documents(&read_jsonl(&jsonl)?)?;
            writeln!(out, "{}", serde_json::to_string(&r)?)?;
        }
        Cmd::Get { name, ids, facets } => {
            let ix = engine.index(&name, None)?;
            for d in ix.get_documents(&ids, facets) {
                writeln!(out, "{}", Value::Object(d))?;
            }
        }
        Cmd::Delete { name, ids, filter } => {
            let ix = engine.index(&name, None)?;
            match filter {
                Some(f) => writeln!(out, "{}", json!({"deleted": ix.delete_by_filter(&f)?}))?,
                None => writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&ix.delete_documents(&ids)?)?
                )?,
            }
        }
        Cmd::Search {
            name,
            query,
            request,
            method,
            limit,
            offset,
            filter,
            attributes,
            ef,
            exact,
            format,
            model,
        } => {
            let req: SearchRequest = match request {
                Some(r) => serde_json::from_value(json_arg(&r)?).context("search request")?,
                None => SearchRequest {
                    q: query.map(Query::Content),
                    search_method: match method {
                        MethodArg::Tensor => SearchMethod::Tensor,
                        MethodArg::Lexical => SearchMethod::Lexical,
                        MethodArg::Hybrid => SearchMethod::Hybrid,
                    },
                    limit,
                    offset,
                    filter,
                    attributes_to_retrieve: (!attributes.is_empty()).then_some(attributes),
                    ef_search: ef,
                    approximate: Some(!exact),
                    ..SearchRequest::default()
                },
            };
            let needs_model = req.search_method != SearchMethod::Lexical
                && !matches!(req.q, Some(Query::Vector(_)));
            let ix = engine.index(
                &name,
                if needs_model {
                    Some(embedder(&model)?)
                } else {
                    None
                },
            )?;
            let r = ix.search(&req)?;
            if format == FormatArg::Json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                writeln!(out, "{:<4} {:<10} {:<24} highlight", "rank", "score", "_id")?;
                for (i, h) in r.hits.iter().enumerate() {
                    let hl = h
                        .get("_highlights")
                        .and_then(|v| v.get(0))
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    let id = h["_id"].as_str().unwrap_or("");
                    writeln!(
                        out,
                        "{:<4} {:<10.4} {:<24} {}",
                        i + 1,
                        h["_score"].as_f64().unwrap_or(0.0),
                        id,
                        hl
                    )?;
                }
            }
        }
        Cmd::Stats { name } => {
            let ix = engine.index(&name, None)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&ix.stats()?)?)?;
        }
        Cmd::Compact { name } => {
            let ix = engine.index(&name, None)?;
            let before = ix.stats()?;
            let t0 = std::time::Instant::now();
            ix.compact()?;
            let secs = t0.elapsed().as_secs_f64();
            let after = ix.stats()?;
            writeln!(
                out,
                "{}",
                json!({
                    "acknowledged": true,
                    // Deleted vectors this run took out (earlier compactions' not counted).
                    "vectorsCompacted": after.compacted_vectors.saturating_sub(before.compacted_vectors),
                    "deletedVectors": after.deleted_vectors,
                    "compactedVectors": after.compacted_vectors,
                    "graphNodes": after.graph_nodes,
                    "numberOfVectors": after.number_of_vectors,
                    "bytesOnDiskBefore": before.bytes_on_disk,
                    "bytesOnDiskAfter": after.bytes_on_disk,
                    "seconds": secs,
                })
            )?;
        }
        Cmd::List => {
            let names = engine.list()?;
            writeln!(
                out,
                "{}",
                json!({"results": names.iter().map(|n| json!({"indexName": n})).collect::<Vec<_>>()})
            )?;
        }
        Cmd::Drop { name } => {
            engine.drop_index(&name)?;
            writeln!(out, "{}", json!({"acknowledged": true}))?;
        }
        Cmd::Bench(_) => unreachable!("handled above"),
    }
    Ok(())
}

fn bench(b: &BenchArgs) -> anyhow::Result<()> {
    let (n, dim, base) = gi::npy::read_f32_2d(&b.base)?;
    let (nq, qdim, queries) = gi::npy::read_f32_2d(&b.queries)?;
    if dim != qdim {
        bail!("base has dimension {dim}, queries {qdim}");
    }
    tracing::info!(n, nq, dim, "benchmark inputs loaded");
    let cfg = gi::bench::BenchConfig {
        k: b.k,
        efs: b.ef.clone(),
        m: b.m,
        ef_construction: b.ef_construction,
        threads: b.threads,
        build_threads: b.build_threads,
        precision: match b.precision {
            PrecisionArg::Float32 => VectorNumericType::Float32,
            PrecisionArg::Float16 => VectorNumericType::Float16,
            PrecisionArg::Int8 => VectorNumericType::Int8,
        },
        filter_selectivity: b.filter_selectivity.clone(),
    };
    let mut out = std::io::stdout().lock();
    let mut err = None;
    gi::bench::run(dim, &base, &queries, &cfg, &mut |line| {
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            err.get_or_insert(e);
        }
    })?;
    match err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
