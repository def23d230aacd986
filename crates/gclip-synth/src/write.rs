//! Writing a dataset directory.
//!
//! Layout of `DIR` (all paths inside files are relative to `DIR`):
//!
//! - `images/p000000.png` ... one image per product (`.jpg` for JPEG).
//! - `corpus.json`: all documents, an object keyed by `product_id` with
//!   `product_id`, `title`, `image` and `image_local` (same path),
//!   `doc_set` (`seen`/`unseen`), `popularity` and `attributes`.
//!   `corpus_1.json` / `corpus_2.json` hold the seen / unseen halves (the
//!   GS-10M names: in-domain and novel-query retrieval run over corpus 1,
//!   novel-document and zero-shot over corpus 2).
//! - `queries.json`: every query with its attributes and split membership.
//! - `train.csv`, `test_in_domain.csv`, `test_novel_query.csv`,
//!   `test_novel_document.csv`, `test_zero_shot.csv` with the GS-10M
//!   columns `query,product_id,title,image,position,score_linear,
//!   score_reciprocal,no_score,query_id,pair_id,score`, where
//!   `score_linear = max_results + 1 - position` (100 for the first
//!   result), `score_reciprocal = 1 / position`, `no_score = 1` and
//!   `score = score_linear`. Positions are those of the query's ranking
//!   over all documents, so a split holding one document half has gaps.
//! - `zeroshot/<set>/<class>/000.png`: folder-per-class classification sets
//!   (`category`, `heldout_combo`, `seen_combo`).
//! - with `caption_views` V > 0: `views/p000000_0.png` ... V further renders of each
//!   training (seen) document, and `captions.csv` (the split columns) pairing each view
//!   with a caption of what it shows ("a photo of a red bag.", "striped shirt"): a
//!   CLIP-style caption table to train alongside `train.csv`. Held-out colour x category
//!   products are unseen documents, so no caption names a held-out combination.
//! - `manifest.json`: seed, configuration, counts, vocabularies, held-out
//!   combinations, split sizes and the zero-shot classes ([`Manifest`]).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ImageEncoder, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::catalog::{AttributeNames, Catalog, DocSet, Product, QuerySet, Split};
use crate::render::render_attributes_with_mask;
use crate::vocab::{AUDIENCES, BRANDS, CATEGORIES, COLOURS, MATERIALS, PATTERNS, STYLES};
use crate::{ImageFormat, SynthConfig, SynthError};

/// Column order of the split tables (the Marqo-GS-10M columns plus `score`).
pub const COLUMNS: [&str; 11] = [
    "query",
    "product_id",
    "title",
    "image",
    "position",
    "score_linear",
    "score_reciprocal",
    "no_score",
    "query_id",
    "pair_id",
    "score",
];

/// Stage of [`generate`], reported through the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Building products, queries and rankings.
    Catalog,
    /// Rendering product images.
    Images,
    /// Rendering zero-shot classification images.
    ZeroShot,
    /// Rendering the captioned views of the training documents.
    Captions,
    /// Writing CSV and JSON files.
    Tables,
}

/// Progress report: `done` of `total` units of `stage`.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Current stage.
    pub stage: Stage,
    /// Units done.
    pub done: usize,
    /// Units in this stage.
    pub total: usize,
}

/// Counts of the generated world.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counts {
    /// Products (documents).
    pub products: usize,
    /// Documents in the training half.
    pub seen_documents: usize,
    /// Documents never trained on.
    pub unseen_documents: usize,
    /// Queries.
    pub queries: usize,
    /// Training queries.
    pub seen_queries: usize,
    /// Queries never trained on.
    pub unseen_queries: usize,
    /// Query-product pairs over all documents.
    pub judgements: usize,
}

/// Attribute vocabularies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VocabManifest {
    /// Category names (drawn).
    pub categories: Vec<String>,
    /// Colour names (drawn).
    pub colours: Vec<String>,
    /// Pattern names (drawn).
    pub patterns: Vec<String>,
    /// Material names (title only).
    pub materials: Vec<String>,
    /// Style names (title only).
    pub styles: Vec<String>,
    /// Audience names (title only).
    pub audiences: Vec<String>,
    /// Brand names (title only).
    pub brands: Vec<String>,
}

/// A held-out colour x category combination.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComboManifest {
    /// Colour name.
    pub colour: String,
    /// Category name.
    pub category: String,
    /// Label, e.g. "green boot".
    pub label: String,
}

/// One split table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitManifest {
    /// Split name (`train`, `in_domain`, `novel_query`, `novel_document`, `zero_shot`).
    pub name: String,
    /// CSV file.
    pub file: String,
    /// Corpus the split's retrieval runs over.
    pub corpus: String,
    /// Distinct queries with at least one row.
    pub queries: usize,
    /// Distinct documents with at least one row.
    pub documents: usize,
    /// Rows.
    pub rows: usize,
}

/// One zero-shot class folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZeroShotClassManifest {
    /// Folder under the set's directory.
    pub folder: String,
    /// Label text for prompts.
    pub label: String,
    /// Number of images.
    pub images: usize,
}

/// One zero-shot classification set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZeroShotManifest {
    /// Set name.
    pub name: String,
    /// Directory relative to the dataset root.
    pub dir: String,
    /// What the set measures.
    pub description: String,
    /// Classes.
    pub classes: Vec<ZeroShotClassManifest>,
}

/// Description of a generated dataset, written as `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Generator name and version.
    pub generator: String,
    /// Seed (also in `config`).
    pub seed: u64,
    /// Full configuration.
    pub config: SynthConfig,
    /// Counts.
    pub counts: Counts,
    /// Vocabularies.
    pub vocab: VocabManifest,
    /// Colour x category combinations absent from `train.csv` (their
    /// products are all unseen documents, their queries all unseen queries).
    pub held_out_combos: Vec<ComboManifest>,
    /// Split tables.
    pub splits: Vec<SplitManifest>,
    /// CSV column order.
    pub columns: Vec<String>,
    /// How the score columns derive from the position.
    pub score_definitions: Vec<(String, String)>,
    /// All documents.
    pub corpus: String,
    /// Query list.
    pub queries_file: String,
    /// Image directory.
    pub images_dir: String,
    /// Zero-shot classification sets.
    pub zeroshot: Vec<ZeroShotManifest>,
    /// The caption table, when `caption_views` > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captions: Option<CaptionsManifest>,
}

/// What `captions.csv` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptionsManifest {
    /// The table (split columns; `query` is the caption, `score` the top score).
    pub file: String,
    /// Directory of the rendered views.
    pub views_dir: String,
    /// Rows (one per view).
    pub rows: usize,
    /// Caption templates (`{}` is the noun phrase).
    pub templates: Vec<String>,
}

impl Manifest {
    /// Reads `manifest.json` from a dataset directory.
    pub fn load(dir: &Path) -> Result<Manifest, SynthError> {
        let path = dir.join("manifest.json");
        let text = fs::read_to_string(&path).map_err(|source| SynthError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| SynthError::Json { path, source })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Relative image path of a product.
pub fn image_path(product: &Product, format: ImageFormat) -> String {
    format!("images/{}.{}", product.product_id, format.extension())
}

fn save_image(img: &RgbImage, path: &Path, cfg: &SynthConfig) -> Result<(), SynthError> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::new(file);
    let (wd, ht) = img.dimensions();
    let res =
        match cfg.image_format {
            ImageFormat::Png => PngEncoder::new(&mut w).write_image(
                img.as_raw(),
                wd,
                ht,
                image::ExtendedColorType::Rgb8,
            ),
            ImageFormat::Jpeg => JpegEncoder::new_with_quality(&mut w, cfg.jpeg_quality)
                .write_image(img.as_raw(), wd, ht, image::ExtendedColorType::Rgb8),
        };
    res.map_err(|source| SynthError::Image {
        path: path.to_path_buf(),
        source,
    })?;
    w.flush().map_err(io_err(path))
}

fn prepare_dir(out: &Path) -> Result<(), SynthError> {
    let dir_err = |reason: &str| SynthError::OutputDir {
        path: out.to_path_buf(),
        reason: reason.to_string(),
    };
    if out.exists() {
        if !out.is_dir() {
            return Err(dir_err("exists and is not a directory"));
        }
        let mut entries = fs::read_dir(out).map_err(io_err(out))?;
        let empty = entries.next().is_none();
        if !empty {
            if !out.join("manifest.json").is_file() {
                return Err(dir_err("is not empty and holds no earlier gclip-synth output (manifest.json); refusing to write into it"));
            }
            // An earlier run of ours: drop its image folders so no stale files remain.
            for sub in ["images", "zeroshot", "views"] {
                let p = out.join(sub);
                if p.is_dir() {
                    fs::remove_dir_all(&p).map_err(io_err(&p))?;
                }
            }
        }
    }
    fs::create_dir_all(out.join("images")).map_err(io_err(out))
}

#[derive(Serialize)]
struct CorpusEntry<'a> {
    product_id: &'a str,
    title: &'a str,
    image: String,
    image_local: String,
    doc_set: &'static str,
    popularity: f32,
    attributes: AttributeNames,
}

/// A JSON object keyed by product id, in product order.
struct CorpusMap<'a> {
    products: Vec<&'a Product>,
    format: ImageFormat,
}

impl Serialize for CorpusMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.products.len()))?;
        for p in &self.products {
            let image = image_path(p, self.format);
            m.serialize_entry(
                &p.product_id,
                &CorpusEntry {
                    product_id: &p.product_id,
                    title: &p.title,
                    image: image.clone(),
                    image_local: image,
                    doc_set: doc_set_name(p.doc_set),
                    popularity: p.popularity,
                    attributes: p.attributes.names(),
                },
            )?;
        }
        m.end()
    }
}

fn doc_set_name(d: DocSet) -> &'static str {
    match d {
        DocSet::Seen => "seen",
        DocSet::Unseen => "unseen",
    }
}

#[derive(Serialize)]
struct QueryEntry<'a> {
    query_id: &'a str,
    query: &'a str,
    query_set: &'static str,
    in_domain_test: bool,
    held_out_combo: bool,
    attributes: QueryAttributes,
}

#[derive(Serialize)]
struct QueryAttributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    colour: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pattern: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    material: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    style: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    brand: Option<&'static str>,
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SynthError> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut w, value).map_err(|source| SynthError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    w.write_all(b"\n").map_err(io_err(path))?;
    w.flush().map_err(io_err(path))
}

fn write_split(
    cat: &Catalog,
    cfg: &SynthConfig,
    split: Split,
    path: &Path,
) -> Result<SplitManifest, SynthError> {
    let csv_err = |source| SynthError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_path(path).map_err(csv_err)?;
    w.write_record(COLUMNS).map_err(csv_err)?;
    let rows = cat.split_rows(split);
    let mut queries = std::collections::BTreeSet::new();
    let mut docs = std::collections::BTreeSet::new();
    for (q, j) in &rows {
        let query = &cat.queries[*q];
        let p = &cat.products[j.product];
        queries.insert(*q);
        docs.insert(j.product);
        let linear = (cfg.max_results as u32 + 1 - j.position).to_string();
        w.write_record([
            query.text.as_str(),
            p.product_id.as_str(),
            p.title.as_str(),
            image_path(p, cfg.image_format).as_str(),
            j.position.to_string().as_str(),
            linear.as_str(),
            (1.0 / j.position as f64).to_string().as_str(),
            "1",
            query.query_id.as_str(),
            format!("{}_{}", query.query_id, p.product_id).as_str(),
            linear.as_str(),
        ])
        .map_err(csv_err)?;
    }
    w.flush().map_err(io_err(path))?;
    Ok(SplitManifest {
        name: split.name().to_string(),
        file: split.file_name().to_string(),
        corpus: split.corpus_file().to_string(),
        queries: queries.len(),
        documents: docs.len(),
        rows: rows.len(),
    })
}

/// Renders `caption_views` new views of every seen document and writes `captions.csv`.
fn write_captions(
    cat: &Catalog,
    cfg: &SynthConfig,
    out_dir: &Path,
    progress: &(impl Fn(Progress) + Sync),
) -> Result<CaptionsManifest, SynthError> {
    let views_dir = out_dir.join("views");
    fs::create_dir_all(&views_dir).map_err(io_err(&views_dir))?;
    let seen: Vec<(usize, &Product)> = cat
        .products
        .iter()
        .enumerate()
        .filter(|(_, p)| p.doc_set == DocSet::Seen)
        .collect();
    let views = cfg.caption_views;
    let total = seen.len() * views;
    let done = AtomicUsize::new(0);
    // Each view and its caption come from their own seeded RNG (order-independent).
    let rows: Vec<(String, String, &Product)> = seen
        .par_iter()
        .flat_map_iter(|&(i, p)| (0..views).map(move |k| (i, k, p)))
        .map(|(i, k, p)| {
            let seed = crate::catalog::sub_seed(
                cfg.seed,
                crate::catalog::stream::CAPTIONS,
                (i * 64 + k) as u64,
            );
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let img = crate::render_product(p, cfg.image_size, &mut rng)?;
            let rel = format!(
                "views/{}_{k}.{}",
                p.product_id,
                cfg.image_format.extension()
            );
            save_image(&img, &out_dir.join(&rel), cfg)?;
            let caption = crate::text::caption_text(&p.attributes, &mut rng);
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(Progress {
                stage: Stage::Captions,
                done: d,
                total,
            });
            Ok::<_, SynthError>((caption, rel, p))
        })
        .collect::<Result<_, _>>()?;
    let path = out_dir.join("captions.csv");
    let csv_err = |source| SynthError::Csv {
        path: path.clone(),
        source,
    };
    let mut w = csv::Writer::from_path(&path).map_err(csv_err)?;
    w.write_record(COLUMNS).map_err(csv_err)?;
    let top = cfg.max_results.to_string();
    for (caption, image, p) in &rows {
        // Equal captions share a query id, so they are never each other's negatives.
        let query_id = format!("caption: {caption}");
        let pair_id = format!("{query_id}_{image}");
        w.write_record([
            caption.as_str(),
            p.product_id.as_str(),
            p.title.as_str(),
            image.as_str(),
            "1",
            top.as_str(),
            "1",
            "1",
            query_id.as_str(),
            pair_id.as_str(),
            top.as_str(),
        ])
        .map_err(csv_err)?;
    }
    w.flush().map_err(io_err(&path))?;
    Ok(CaptionsManifest {
        file: "captions.csv".into(),
        views_dir: "views".into(),
        rows: rows.len(),
        templates: crate::text::CAPTION_TEMPLATES
            .iter()
            .map(|t| t.to_string())
            .collect(),
    })
}

/// What [`generate`] wrote: the manifest, and the in-memory catalogue the files were written
/// from (every product's true attributes, the queries and their judgements), so callers need
/// not regenerate it.
#[derive(Debug, Clone)]
pub struct Generated {
    pub manifest: Manifest,
    pub catalog: Catalog,
}

/// Generates the dataset into `out_dir` (created if missing; an existing
/// directory must be empty or hold an earlier output of this generator).
///
/// `progress` is called from worker threads as work completes.
pub fn generate(
    cfg: &SynthConfig,
    out_dir: &Path,
    progress: impl Fn(Progress) + Sync,
) -> Result<Generated, SynthError> {
    cfg.validate()?;
    progress(Progress {
        stage: Stage::Catalog,
        done: 0,
        total: 1,
    });
    let cat = Catalog::generate(cfg)?;
    progress(Progress {
        stage: Stage::Catalog,
        done: 1,
        total: 1,
    });
    prepare_dir(out_dir)?;

    // Product images, each from its own seeded RNG (order-independent).
    let total = cat.products.len();
    let done = AtomicUsize::new(0);
    cat.products.par_iter().try_for_each(|p| {
        let img = p.image(cfg.image_size)?;
        save_image(&img, &out_dir.join(image_path(p, cfg.image_format)), cfg)?;
        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
        progress(Progress {
            stage: Stage::Images,
            done: d,
            total,
        });
        Ok::<(), SynthError>(())
    })?;

    // Zero-shot classification folders.
    let mut jobs: Vec<(PathBuf, crate::Attributes, u64)> = Vec::new();
    let mut zs_manifest = Vec::new();
    for set in &cat.zeroshot {
        let set_dir = format!("zeroshot/{}", set.name);
        let mut classes = Vec::new();
        for class in &set.classes {
            let dir = out_dir.join(&set_dir).join(&class.folder);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            for (k, (attrs, seed)) in class.items.iter().enumerate() {
                jobs.push((
                    dir.join(format!("{k:03}.{}", cfg.image_format.extension())),
                    *attrs,
                    *seed,
                ));
            }
            classes.push(ZeroShotClassManifest {
                folder: class.folder.clone(),
                label: class.label.clone(),
                images: class.items.len(),
            });
        }
        zs_manifest.push(ZeroShotManifest {
            name: set.name.to_string(),
            dir: set_dir,
            description: set.description.to_string(),
            classes,
        });
    }
    let total = jobs.len();
    let done = AtomicUsize::new(0);
    jobs.par_iter().try_for_each(|(path, attrs, seed)| {
        let mut rng = ChaCha8Rng::seed_from_u64(*seed);
        let (img, _) = render_attributes_with_mask(attrs, cfg.image_size, &mut rng)?;
        save_image(&img, path, cfg)?;
        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
        progress(Progress {
            stage: Stage::ZeroShot,
            done: d,
            total,
        });
        Ok::<(), SynthError>(())
    })?;

    let captions = if cfg.caption_views > 0 {
        Some(write_captions(&cat, cfg, out_dir, &progress)?)
    } else {
        None
    };

    // Tables.
    let n_tables = 4 + Split::ALL.len();
    let mut step = 0;
    let mut tick = || {
        step += 1;
        progress(Progress {
            stage: Stage::Tables,
            done: step,
            total: n_tables,
        });
    };
    let all: Vec<&Product> = cat.products.iter().collect();
    write_json(
        &out_dir.join("corpus.json"),
        &CorpusMap {
            products: all,
            format: cfg.image_format,
        },
    )?;
    tick();
    for (name, set) in [
        ("corpus_1.json", DocSet::Seen),
        ("corpus_2.json", DocSet::Unseen),
    ] {
        let part: Vec<&Product> = cat.products_in(set).collect();
        write_json(
            &out_dir.join(name),
            &CorpusMap {
                products: part,
                format: cfg.image_format,
            },
        )?;
        tick();
    }
    let in_domain: std::collections::HashSet<usize> =
        cat.in_domain_queries.iter().copied().collect();
    let queries: Vec<QueryEntry> = cat
        .queries
        .iter()
        .map(|q| QueryEntry {
            query_id: &q.query_id,
            query: &q.text,
            query_set: match q.query_set {
                QuerySet::Seen => "seen",
                QuerySet::Unseen => "unseen",
            },
            in_domain_test: in_domain.contains(&q.index),
            held_out_combo: q.spec.hits_combo(&cat.held_out),
            attributes: QueryAttributes {
                category: q.spec.category.map(|c| CATEGORIES[c].name),
                colour: q.spec.colour.map(|c| COLOURS[c].name),
                pattern: q.spec.pattern.map(|p| PATTERNS[p]),
                material: q.spec.material.map(|m| MATERIALS[m]),
                style: q.spec.style.map(|s| STYLES[s]),
                audience: q.spec.audience.map(|a| AUDIENCES[a]),
                brand: q.spec.brand.map(|b| BRANDS[b]),
            },
        })
        .collect();
    write_json(&out_dir.join("queries.json"), &queries)?;
    tick();
    let mut splits = Vec::new();
    for split in Split::ALL {
        splits.push(write_split(
            &cat,
            cfg,
            split,
            &out_dir.join(split.file_name()),
        )?);
        tick();
    }

    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let seen_docs = cat.products_in(DocSet::Seen).count();
    let seen_queries = cat
        .queries
        .iter()
        .filter(|q| q.query_set == QuerySet::Seen)
        .count();
    let manifest = Manifest {
        generator: format!("gclip-synth {}", env!("CARGO_PKG_VERSION")),
        seed: cfg.seed,
        config: cfg.clone(),
        counts: Counts {
            products: cat.products.len(),
            seen_documents: seen_docs,
            unseen_documents: cat.products.len() - seen_docs,
            queries: cat.queries.len(),
            seen_queries,
            unseen_queries: cat.queries.len() - seen_queries,
            judgements: cat.results.iter().map(Vec::len).sum(),
        },
        vocab: VocabManifest {
            categories: CATEGORIES.iter().map(|c| c.name.to_string()).collect(),
            colours: COLOURS.iter().map(|c| c.name.to_string()).collect(),
            patterns: strings(PATTERNS),
            materials: strings(MATERIALS),
            styles: strings(STYLES),
            audiences: strings(AUDIENCES),
            brands: strings(BRANDS),
        },
        held_out_combos: cat
            .held_out
            .iter()
            .map(|h| ComboManifest {
                colour: COLOURS[h.colour].name.to_string(),
                category: CATEGORIES[h.category].name.to_string(),
                label: h.label(),
            })
            .collect(),
        splits,
        columns: strings(&COLUMNS),
        score_definitions: vec![
            (
                "position".into(),
                format!(
                    "rank 1..={} of the product for the query over all documents",
                    cfg.max_results
                ),
            ),
            (
                "score_linear".into(),
                format!("{} - position", cfg.max_results + 1),
            ),
            ("score_reciprocal".into(), "1 / position".into()),
            ("no_score".into(), "1".into()),
            (
                "score".into(),
                "score_linear (the training weight key)".into(),
            ),
        ],
        corpus: "corpus.json".into(),
        queries_file: "queries.json".into(),
        images_dir: "images".into(),
        zeroshot: zs_manifest,
        captions,
    };
    write_json(&out_dir.join("manifest.json"), &manifest)?;
    tick();
    Ok(Generated {
        manifest,
        catalog: cat,
    })
}
