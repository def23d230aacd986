//! The demo: a tour of gclip's main job on a generated shop.
//!
//! Generates a small procedural catalogue, embeds its images and titles, and runs
//! text-to-image, image-to-image and multi-field (image + title) searches, zero-shot
//! classification and the two classic CLIP examples over it. A transcript goes to the
//! caller's line sink (the CLI prints it) and a page to `DIR/index.html`, which shows the
//! images. Because the generator knows every product's true attributes, each result is
//! marked with the attributes it really has, so the output shows how good the model is,
//! not just what it returns.

mod examples;
mod page;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gclip_eval::search::top_k;
use gclip_progress::Progress;
use gclip_synth::vocab::{CATEGORIES, COLOURS, PATTERNS, PATTERN_SYNONYMS, PLAIN};
use gclip_synth::{Attributes, Product, SynthConfig};
use gclip_vectors::Embeddings;

use crate::error::{io_err, Error, Result};
use crate::{Clip, ZeroShotClassifier};
use page::{esc, html_blocks, write_page, Page};

/// What the demo does and where it writes.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Output directory: the catalogue goes to `out/catalogue`, the page to `out/index.html`.
    pub out: PathBuf,
    /// Products in the generated catalogue (at least 20, so every category can appear).
    pub products: usize,
    /// Seed of the generated catalogue.
    pub seed: u64,
    /// Results shown per search (at least 1).
    pub top: usize,
    /// Progress bars while drawing and embedding.
    pub progress: Progress,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("gclip-demo"),
            products: 240,
            seed: 0,
            top: 5,
            progress: Progress::Bar,
        }
    }
}

/// What a demo run produced.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The HTML page.
    pub index: PathBuf,
    /// Products in the catalogue.
    pub products: usize,
    /// Zero-shot category accuracy over all products, in [0, 1].
    pub zero_shot_accuracy: f64,
    /// Per text query (in order): exact matches in the top results with documents embedded as
    /// image only, title only, and fused image + title.
    pub exact_matches: Vec<QueryMatches>,
}

/// Exact matches of one text query per document representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMatches {
    pub query: String,
    pub image: usize,
    pub title: usize,
    pub fused: usize,
}

/// Writes one transcript line to the caller's sink.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => { ($out)(&format!($($arg)*)) };
}
pub(crate) use say;

/// Field weights of the fused document (image, title): Marqo's default.
const FUSION_WEIGHTS: [f32; 2] = [0.9, 0.1];
/// Zero-shot prompt template.
const TEMPLATE: &str = "a photo of a {}.";
/// Softmax scale of Marqo's product example (instead of the learned ~100).
const MARQO_DEMO_SCALE: f32 = 10.0;

/// A search query built from catalogue attributes, so its true matches are known.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct QuerySpec {
    category: Option<usize>,
    colour: Option<usize>,
    pattern: Option<usize>,
}

impl QuerySpec {
    fn text(&self) -> String {
        let mut words = Vec::new();
        if let Some(c) = self.colour {
            words.push(COLOURS[c].name);
        }
        if let Some(p) = self.pattern {
            words.push(PATTERN_SYNONYMS[p][0]);
        }
        if let Some(c) = self.category {
            words.push(CATEGORIES[c].name);
        }
        words.join(" ")
    }

    /// Per asked attribute: its name and whether `a` has it.
    fn marks(&self, a: &Attributes) -> Vec<(&'static str, bool)> {
        let mut m = Vec::new();
        if let Some(c) = self.category {
            m.push((CATEGORIES[c].name, a.category == c));
        }
        if let Some(c) = self.colour {
            m.push((COLOURS[c].name, a.colour == c));
        }
        if let Some(p) = self.pattern {
            m.push((PATTERN_SYNONYMS[p][0], a.pattern == p));
        }
        m
    }

    fn matches(&self, a: &Attributes) -> bool {
        self.marks(a).iter().all(|(_, ok)| *ok)
    }
}

/// One ranked result, ready to print and to show on the page.
pub(super) struct Hit {
    product: usize,
    score: f32,
    marks: Vec<(&'static str, bool)>,
}

/// One block of results (a query and its hits), for the page.
pub(super) struct ResultBlock {
    title: String,
    /// Image shown next to the title (image-to-image queries).
    query_image: Option<String>,
    note: String,
    hits: Vec<Hit>,
}

/// The generated shop with its embeddings: what every section searches.
struct Shop {
    products: Vec<Product>,
    /// Image paths relative to the page (and to the output directory).
    rel: Vec<String>,
    images: Embeddings,
    titles: Embeddings,
    /// Image and title embeddings fused with [`FUSION_WEIGHTS`].
    fused: Embeddings,
}

/// Runs the demo with `clip` into `cfg.out`, sending the transcript line by line to `out`.
/// `cfg.out` must not exist, be empty, or hold an earlier demo's output.
pub fn run(clip: &Clip, cfg: &DemoConfig, out: &mut dyn FnMut(&str)) -> Result<DemoReport> {
    if cfg.products < 20 {
        return Err(Error::Invalid(format!(
            "the demo catalogue needs at least 20 products (got {}) so every category can appear",
            cfg.products
        )));
    }
    if cfg.top == 0 {
        return Err(Error::Invalid(
            "the demo shows at least 1 result per search".into(),
        ));
    }
    prepare_out(&cfg.out)?;
    let size = clip.config().vision.image_size;
    say!(
        out,
        "gclip demo: model {} ({}-d embeddings, {size}px images)",
        clip.source(),
        clip.dim()
    );
    let mut page = Page {
        intro: format!(
            "Model: {} ({}-d embeddings, {size}px images). Catalogue: {} generated products, seed {}. \
             <b>+attr</b> marks an attribute the result really has, <s>attr</s> one it lacks.",
            esc(clip.source()),
            clip.dim(),
            cfg.products,
            cfg.seed
        ),
        ..Page::default()
    };

    say!(out, "\n1. Catalogue");
    let (products, rel) = make_catalogue(cfg, size, &mut page, out)?;
    say!(out, "\n2. Embedding");
    let shop = embed_shop(clip, cfg, products, rel, out)?;

    say!(
        out,
        "\n3. Text-to-image search (query text vs product images, cosine)"
    );
    let queries = pick_queries(&shop.products);
    let query_texts: Vec<String> = queries.iter().map(QuerySpec::text).collect();
    let query_emb = clip.embed_texts(&query_texts, true)?;
    let image_results = search_blocks(&query_emb, &shop.images, &queries, &shop, cfg.top)?;
    print_blocks(&image_results, &shop.products, out);
    page.sections.push((
        "Text-to-image search".into(),
        html_blocks(&image_results, &shop.products, &shop.rel),
    ));

    say!(out, "\n4. Image-to-image search (nearest product images)");
    let html = image_search(&shop, cfg.top, out)?;
    page.sections.push(("Image-to-image search".into(), html));

    say!(
        out,
        "\n5. Multi-field search (documents = {} x image + {} x title, fused as Marqo does)",
        FUSION_WEIGHTS[0],
        FUSION_WEIGHTS[1]
    );
    let (html, exact_matches) =
        multi_field_search(&shop, &queries, &query_emb, &image_results, cfg.top, out)?;
    page.sections
        .push(("Multi-field search (image 0.9 + title 0.1)".into(), html));

    say!(
        out,
        "\n6. Zero-shot classification (\"{TEMPLATE}\" over the categories)"
    );
    let (html, zero_shot_accuracy) = zero_shot(clip, &shop, out)?;
    page.sections
        .push(("Zero-shot classification".into(), html));

    say!(out, "\n7. Examples");
    let html = examples::seed_examples(clip, size, &cfg.out, cfg.seed, out)?;
    page.sections.push(("Examples".into(), html));

    let index = cfg.out.join("index.html");
    write_page(&index, &page)?;
    Ok(DemoReport {
        index,
        products: shop.products.len(),
        zero_shot_accuracy,
        exact_matches,
    })
}

/// Writes the catalogue into `out/catalogue`; returns its products and their image paths
/// relative to `out`.
fn make_catalogue(
    cfg: &DemoConfig,
    size: usize,
    page: &mut Page,
    out: &mut dyn FnMut(&str),
) -> Result<(Vec<Product>, Vec<String>)> {
    let cat_dir = cfg.out.join("catalogue");
    let synth = SynthConfig {
        seed: cfg.seed,
        products: cfg.products,
        // Queries and zero-shot folders are not used here; keep them minimal.
        queries: 20,
        zeroshot_per_class: 0,
        image_size: u32::try_from(size)
            .map_err(|_| Error::Invalid(format!("model image size {size} does not fit in u32")))?,
        ..SynthConfig::default()
    };
    let bar = cfg.progress.bar(cfg.products as u64, "drawing products");
    let generated = gclip_synth::generate(&synth, &cat_dir, |p| {
        if p.stage == gclip_synth::Stage::Images {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
        }
    })?;
    bar.finish_and_clear();
    let products = generated.catalog.products;
    let rel: Vec<String> = products
        .iter()
        .map(|p| {
            format!(
                "catalogue/{}",
                gclip_synth::write::image_path(p, synth.image_format)
            )
        })
        .collect();
    say!(
        out,
        "   {} products ({} categories, {} colours, {} patterns) in {}",
        products.len(),
        CATEGORIES.len(),
        COLOURS.len(),
        PATTERNS.len(),
        cat_dir.display()
    );
    for p in products.iter().take(3) {
        say!(out, "   e.g. {}  {}", p.product_id, p.title);
    }
    let mut sample = String::from("<div class=grid>");
    for (p, r) in products.iter().zip(&rel).take(12) {
        let _ = write!(
            sample,
            "<figure><img src=\"{}\"><figcaption>{}<br>{}</figcaption></figure>",
            esc(r),
            esc(&p.product_id),
            esc(&p.title)
        );
    }
    sample.push_str("</div>");
    page.sections.push((
        "Catalogue".into(),
        format!(
            "<p>{} generated products; the first few. Images show category, colour and pattern; \
             titles add material, style, audience and brand.</p>{sample}",
            products.len()
        ),
    ));
    Ok((products, rel))
}

/// Embeds every product image and title and fuses them into documents.
fn embed_shop(
    clip: &Clip,
    cfg: &DemoConfig,
    products: Vec<Product>,
    rel: Vec<String>,
    out: &mut dyn FnMut(&str),
) -> Result<Shop> {
    let t = std::time::Instant::now();
    let files: Vec<PathBuf> = rel.iter().map(|r| cfg.out.join(r)).collect();
    let images = embed_files(clip, &files, cfg.progress)?;
    let title_texts: Vec<&str> = products.iter().map(|p| p.title.as_str()).collect();
    let titles = embed_texts(clip, &title_texts, cfg.progress)?;
    say!(
        out,
        "   {} images and {} titles in {:.1} s",
        images.len(),
        titles.len(),
        t.elapsed().as_secs_f64()
    );
    let mut fused = Embeddings::empty(clip.dim())?;
    for (i, t) in images.rows().zip(titles.rows()) {
        let row = gclip_eval::data::fuse(&[Some(i), Some(t)], &FUSION_WEIGHTS)?
            .ok_or_else(|| Error::Invalid("internal: fusion weights sum to 0".into()))?;
        fused.push(&row)?;
    }
    Ok(Shop {
        images,
        titles,
        fused,
        products,
        rel,
    })
}

/// Nearest neighbours of two product images, marked by the attributes they share.
fn image_search(shop: &Shop, top: usize, out: &mut dyn FnMut(&str)) -> Result<String> {
    let products = &shop.products;
    let mut blocks = Vec::new();
    for s in pick_image_queries(products) {
        let q = Embeddings::new(shop.images.dim(), shop.images.row(s)?.to_vec())?;
        // One extra: the product itself comes first.
        let ranked = top_k(&q, &shop.images, top + 1, None)?;
        let a = products[s].attributes;
        let hits: Vec<Hit> = ranked[0]
            .iter()
            .filter(|(d, _)| *d != s)
            .take(top)
            .map(|&(d, score)| {
                let b = products[d].attributes;
                Hit {
                    product: d,
                    score,
                    marks: vec![
                        (CATEGORIES[a.category].name, a.category == b.category),
                        (COLOURS[a.colour].name, a.colour == b.colour),
                        (PATTERN_SYNONYMS[a.pattern][0], a.pattern == b.pattern),
                    ],
                }
            })
            .collect();
        blocks.push(ResultBlock {
            title: format!("{} ({})", products[s].product_id, products[s].title),
            query_image: Some(shop.rel[s].clone()),
            note: summary(&hits, top),
            hits,
        });
    }
    print_blocks(&blocks, products, out);
    Ok(html_blocks(&blocks, products, &shop.rel))
}

/// The text queries against fused image + title documents, compared with each field alone.
fn multi_field_search(
    shop: &Shop,
    queries: &[QuerySpec],
    query_emb: &Embeddings,
    image_results: &[ResultBlock],
    top: usize,
    out: &mut dyn FnMut(&str),
) -> Result<(String, Vec<QueryMatches>)> {
    let fused_results = search_blocks(query_emb, &shop.fused, queries, shop, top)?;
    let title_results = search_blocks(query_emb, &shop.titles, queries, shop, top)?;
    print_blocks(&fused_results, &shop.products, out);
    let mut cmp = String::from(
        "<table><tr><th>query</th><th>image only</th><th>title only</th><th>image+title</th></tr>",
    );
    say!(
        out,
        "   exact matches in the top {top} by document field:\n     {:<32} {:>6} {:>6} {:>6}",
        "query",
        "image",
        "title",
        "fused"
    );
    let n_match = |b: &ResultBlock| b.hits.iter().filter(|h| all_ok(&h.marks)).count();
    let mut matches = Vec::new();
    for ((q, a), (b, c)) in queries
        .iter()
        .zip(image_results)
        .zip(title_results.iter().zip(&fused_results))
    {
        let (q, a, b, c) = (q.text(), n_match(a), n_match(b), n_match(c));
        say!(out, "     {q:<32} {a:>6} {b:>6} {c:>6}");
        let _ = write!(
            cmp,
            "<tr><td>{}</td><td>{a}</td><td>{b}</td><td>{c}</td></tr>",
            esc(&q)
        );
        matches.push(QueryMatches {
            query: q,
            image: a,
            title: b,
            fused: c,
        });
    }
    cmp.push_str("</table>");
    let html = format!(
        "<p>Exact matches in the top {top} per document representation:</p>{cmp}{}",
        html_blocks(&fused_results, &shop.products, &shop.rel)
    );
    Ok((html, matches))
}

/// Category classification of a few products shown, and accuracy over all of them.
fn zero_shot(clip: &Clip, shop: &Shop, out: &mut dyn FnMut(&str)) -> Result<(String, f64)> {
    let products = &shop.products;
    let labels: Vec<String> = CATEGORIES.iter().map(|c| c.name.to_owned()).collect();
    let classifier = ZeroShotClassifier::new(clip, &labels, &[TEMPLATE.to_owned()], None)?;
    let preds = classifier.classify(&shop.images, 3)?;
    let truth = |i: usize| CATEGORIES[products[i].attributes.category].name;
    let right = |i: usize| preds[i].first().is_some_and(|p| p.label == truth(i));
    let correct = (0..products.len()).filter(|&i| right(i)).count();
    let mut grid = String::from("<div class=grid>");
    for i in pick_distinct_categories(products, 6) {
        let top: Vec<String> = preds[i]
            .iter()
            .map(|p| format!("{} {:.2}", p.label, p.probability))
            .collect();
        say!(
            out,
            "   {}  true {:<10} {}  predicted {}",
            products[i].product_id,
            truth(i),
            if right(i) { "right" } else { "wrong" },
            top.join(", ")
        );
        let _ = write!(
            grid,
            "<figure class={}><img src=\"{}\"><figcaption>really <b>{}</b><br>{}</figcaption></figure>",
            if right(i) { "ok" } else { "bad" },
            esc(&shop.rel[i]),
            truth(i),
            esc(&top.join("\n")).replace('\n', "<br>")
        );
    }
    grid.push_str("</div>");
    let accuracy = correct as f64 / products.len() as f64;
    let acc = 100.0 * accuracy;
    let chance = 100.0 / labels.len() as f64;
    say!(
        out,
        "   accuracy over all {} products: {acc:.1}% (chance {chance:.1}%), softmax scale {:.1}",
        products.len(),
        classifier.scale()
    );
    let html = format!(
        "<p>Prompt \"{}\", {} category labels, softmax at the model's scale {:.1}. \
         Top-1 accuracy over all {} products: <b>{acc:.1}%</b> (chance {chance:.1}%).</p>{grid}",
        esc(TEMPLATE),
        labels.len(),
        classifier.scale(),
        products.len(),
    );
    Ok((html, accuracy))
}

/// Refuses to scatter files into a directory that holds something else.
fn prepare_out(out: &Path) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(Error::Invalid(format!(
                "{} exists and is not a directory",
                out.display()
            )));
        }
        let ours = out.join("catalogue").join("manifest.json").is_file();
        let empty = std::fs::read_dir(out)
            .map_err(io_err(out))?
            .next()
            .is_none();
        if !ours && !empty {
            return Err(Error::Invalid(format!(
                "{} is not empty and holds no earlier demo output; pick a new directory",
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(io_err(out))
}

fn embed_files(clip: &Clip, files: &[PathBuf], progress: Progress) -> Result<Embeddings> {
    let bar = progress.bar(files.len() as u64, "embedding images");
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; files.len()];
    let mut failure = None;
    clip.embed_image_files_with(files, true, |i, outcome| {
        bar.inc(1);
        match outcome {
            crate::ImageOutcome::Embedded(v) => rows[i] = Some(v),
            crate::ImageOutcome::Failed(e) => {
                failure.get_or_insert(e);
            }
        }
    })?;
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }
    let mut out = Embeddings::empty(clip.dim())?;
    for r in rows {
        let r = r.ok_or_else(|| Error::Invalid("internal: an image got no embedding".into()))?;
        out.push(&r)?;
    }
    Ok(out)
}

fn embed_texts(clip: &Clip, texts: &[&str], progress: Progress) -> Result<Embeddings> {
    let bar = progress.bar(texts.len() as u64, "embedding titles");
    let mut out = Embeddings::empty(clip.dim())?;
    for chunk in texts.chunks(64) {
        out.extend(&clip.embed_texts(chunk, true)?)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Four queries with true matches in the catalogue: the most frequent
/// colour + pattern + category, two colour + category pairs and one bare category,
/// each of a different category.
fn pick_queries(products: &[Product]) -> Vec<QuerySpec> {
    // (with colour, with pattern) of each query, in order.
    let shapes = [(true, true), (true, false), (true, false), (false, false)];
    let mut out: Vec<QuerySpec> = Vec::new();
    for (with_colour, with_pattern) in shapes {
        // A BTreeMap keeps the tie-break among equal counts deterministic.
        let mut counts: BTreeMap<QuerySpec, usize> = BTreeMap::new();
        for p in products {
            let a = &p.attributes;
            let taken = out.iter().any(|q| q.category == Some(a.category));
            if taken || (with_pattern && a.pattern == PLAIN) {
                continue;
            }
            let q = QuerySpec {
                category: Some(a.category),
                colour: with_colour.then_some(a.colour),
                pattern: with_pattern.then_some(a.pattern),
            };
            *counts.entry(q).or_default() += 1;
        }
        // max_by_key keeps the last maximum; iterate in reverse so the smallest key wins.
        if let Some((q, _)) = counts.into_iter().rev().max_by_key(|(_, n)| *n) {
            out.push(q);
        }
    }
    out
}

/// Two query products for image-to-image search: the first patterned one, and the
/// first of another category.
fn pick_image_queries(products: &[Product]) -> Vec<usize> {
    let first = products
        .iter()
        .position(|p| p.attributes.pattern != PLAIN)
        .unwrap_or(0);
    let second = products
        .iter()
        .position(|p| p.attributes.category != products[first].attributes.category)
        .unwrap_or(1.min(products.len() - 1));
    vec![first, second]
}

/// The first product of each of the first `n` categories met.
fn pick_distinct_categories(products: &[Product], n: usize) -> Vec<usize> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (i, p) in products.iter().enumerate() {
        if out.len() == n {
            break;
        }
        if !seen.contains(&p.attributes.category) {
            seen.push(p.attributes.category);
            out.push(i);
        }
    }
    out
}

fn search_blocks(
    queries: &Embeddings,
    docs: &Embeddings,
    specs: &[QuerySpec],
    shop: &Shop,
    top: usize,
) -> Result<Vec<ResultBlock>> {
    let products = &shop.products;
    let ranked = top_k(queries, docs, top, None)?;
    Ok(specs
        .iter()
        .zip(ranked)
        .map(|(q, hits)| {
            let hits: Vec<Hit> = hits
                .into_iter()
                .map(|(d, score)| Hit {
                    product: d,
                    score,
                    marks: q.marks(&products[d].attributes),
                })
                .collect();
            let total = products.iter().filter(|p| q.matches(&p.attributes)).count();
            ResultBlock {
                title: format!("\"{}\"", q.text()),
                query_image: None,
                note: format!(
                    "{}; the catalogue holds {total} exact matches",
                    summary(&hits, top)
                ),
                hits,
            }
        })
        .collect())
}

pub(super) fn all_ok(marks: &[(&str, bool)]) -> bool {
    marks.iter().all(|(_, ok)| *ok)
}

fn summary(hits: &[Hit], top: usize) -> String {
    let n = hits.iter().filter(|h| all_ok(&h.marks)).count();
    format!("{n} of the top {top} match on every attribute")
}

fn marks_text(marks: &[(&str, bool)]) -> String {
    marks
        .iter()
        .map(|(name, ok)| format!("{}{name}", if *ok { '+' } else { '-' }))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_blocks(blocks: &[ResultBlock], products: &[Product], out: &mut dyn FnMut(&str)) {
    for b in blocks {
        say!(out, "   {}  ({})", b.title, b.note);
        for (r, h) in b.hits.iter().enumerate() {
            let p = &products[h.product];
            say!(
                out,
                "     {}. {:.3} {} [{}] {}",
                r + 1,
                h.score,
                p.product_id,
                marks_text(&h.marks),
                truncate(&p.title, 56)
            );
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
