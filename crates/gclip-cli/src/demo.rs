//! `gclip demo`: a tour of gclip's main job on a generated shop.
//!
//! Generates a small procedural catalogue, embeds its images and titles, and runs
//! text-to-image, image-to-image and multi-field (image + title) searches, zero-shot
//! classification and the two classic CLIP examples over it. Results go to the terminal
//! and to `DIR/index.html`, which shows the images. Because the generator knows every
//! product's true attributes, each result is marked with the attributes it really has,
//! so the output shows how good the model is, not just what it returns.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use gclip::{cosine_matrix, softmax_rows, Clip, Embeddings, ZeroShotClassifier};
use gclip_eval::search::{top_k, Matrix};
use gclip_synth::vocab::{CATEGORIES, COLOURS, MATERIALS, PATTERNS, PATTERN_SYNONYMS, PLAIN};
use gclip_synth::{Attributes, Catalog, Product, SynthConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common::{self, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output directory: the catalogue goes to DIR/catalogue, the page to DIR/index.html.
    #[arg(long, value_name = "DIR", default_value = "gclip-demo")]
    out: PathBuf,
    /// Number of products in the generated catalogue.
    #[arg(long, default_value_t = 240)]
    products: usize,
    /// Seed of the generated catalogue.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Results shown per search.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

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
struct Hit {
    product: usize,
    score: f32,
    marks: Vec<(&'static str, bool)>,
}

/// One block of results (a query and its hits), for the page.
struct ResultBlock {
    title: String,
    /// Image shown next to the title (image-to-image queries).
    query_image: Option<String>,
    note: String,
    hits: Vec<Hit>,
}

/// Everything the HTML page shows.
#[derive(Default)]
struct Page {
    intro: String,
    sections: Vec<(String, String)>,
}

/// The generated shop with its embeddings: what every section searches.
struct Shop {
    products: Vec<Product>,
    /// Image paths relative to the page (and to `--out`).
    rel: Vec<String>,
    images: Embeddings,
    image_m: Matrix,
    title_m: Matrix,
    /// Image and title embeddings fused with [`FUSION_WEIGHTS`].
    fused_m: Matrix,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    if args.products < 20 {
        bail!(
            "--products must be at least 20 (got {}) so every category can appear",
            args.products
        );
    }
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    // The model first: without one there is nothing to show, so nothing is written.
    let clip = load_model(&args.model)?;
    prepare_out(&args.out)?;
    let size = clip.config().vision.image_size;
    println!(
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
            args.products,
            args.seed
        ),
        ..Page::default()
    };

    println!("\n1. Catalogue");
    let (products, rel) = make_catalogue(&args, size, &mut page)?;
    println!("\n2. Embedding");
    let shop = embed_shop(&clip, &args.out, products, rel)?;

    println!("\n3. Text-to-image search (query text vs product images, cosine)");
    let queries = pick_queries(&shop.products);
    let query_texts: Vec<String> = queries.iter().map(QuerySpec::text).collect();
    let query_m = to_matrix(&clip.embed_texts(&query_texts, true)?)?;
    let image_results = search_blocks(&query_m, &shop.image_m, &queries, &shop, args.top)?;
    print_blocks(&image_results, &shop.products);
    page.sections.push((
        "Text-to-image search".into(),
        html_blocks(&image_results, &shop),
    ));

    println!("\n4. Image-to-image search (nearest product images)");
    let html = image_search(&shop, args.top)?;
    page.sections.push(("Image-to-image search".into(), html));

    println!(
        "\n5. Multi-field search (documents = {} x image + {} x title, fused as Marqo does)",
        FUSION_WEIGHTS[0], FUSION_WEIGHTS[1]
    );
    let html = multi_field_search(&shop, &queries, &query_m, &image_results, args.top)?;
    page.sections
        .push(("Multi-field search (image 0.9 + title 0.1)".into(), html));

    println!("\n6. Zero-shot classification (\"{TEMPLATE}\" over the categories)");
    let html = zero_shot(&clip, &shop)?;
    page.sections
        .push(("Zero-shot classification".into(), html));

    println!("\n7. Examples");
    let html = seed_examples(&clip, size, &args.out, args.seed)?;
    page.sections.push(("Examples".into(), html));

    let index = args.out.join("index.html");
    write_page(&index, &page)?;
    println!("\nHTML page: {}", index.display());
    println!("done in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Writes the catalogue into DIR/catalogue; returns its products and their image paths
/// relative to DIR.
fn make_catalogue(
    args: &Args,
    size: usize,
    page: &mut Page,
) -> anyhow::Result<(Vec<Product>, Vec<String>)> {
    let cat_dir = args.out.join("catalogue");
    let cfg = SynthConfig {
        seed: args.seed,
        products: args.products,
        // Queries and zero-shot folders are not used here; keep them minimal.
        queries: 20,
        zeroshot_per_class: 0,
        image_size: u32::try_from(size).context("model image size does not fit in u32")?,
        ..SynthConfig::default()
    };
    // The writer does not hand back its in-memory catalogue; generation is a pure
    // function of the configuration, so this is the same one (attributes included).
    let catalog = Catalog::generate(&cfg).context("generating the catalogue")?;
    let bar = common::progress(catalog.products.len() as u64, "drawing products");
    gclip_synth::generate(&cfg, &cat_dir, |p| {
        if p.stage == gclip_synth::Stage::Images {
            bar.set_position(p.done as u64);
        }
    })
    .with_context(|| format!("writing the catalogue into {}", cat_dir.display()))?;
    bar.finish_and_clear();
    let products = catalog.products;
    let rel: Vec<String> = products
        .iter()
        .map(|p| {
            format!(
                "catalogue/{}",
                gclip_synth::write::image_path(p, cfg.image_format)
            )
        })
        .collect();
    println!(
        "   {} products ({} categories, {} colours, {} patterns) in {}",
        products.len(),
        CATEGORIES.len(),
        COLOURS.len(),
        PATTERNS.len(),
        cat_dir.display()
    );
    for p in products.iter().take(3) {
        println!("   e.g. {}  {}", p.product_id, p.title);
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

/// Embeds every product image and title and builds the three document matrices.
fn embed_shop(
    clip: &Clip,
    out: &Path,
    products: Vec<Product>,
    rel: Vec<String>,
) -> anyhow::Result<Shop> {
    let t = Instant::now();
    let files: Vec<PathBuf> = rel.iter().map(|r| out.join(r)).collect();
    let images = embed_files(clip, &files)?;
    let titles: Vec<&str> = products.iter().map(|p| p.title.as_str()).collect();
    let title_emb = embed_texts(clip, &titles)?;
    println!(
        "   {} images and {} titles in {:.1} s",
        images.len(),
        title_emb.len(),
        t.elapsed().as_secs_f64()
    );
    let fused_rows: Vec<Vec<f32>> = images
        .rows()
        .zip(title_emb.rows())
        .map(|(i, t)| {
            gclip_eval::data::fuse(&[Some(i), Some(t)], &FUSION_WEIGHTS)
                .context("internal: fusing image and title embeddings")
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Shop {
        image_m: to_matrix(&images)?,
        title_m: to_matrix(&title_emb)?,
        fused_m: Matrix::from_rows(&fused_rows)?,
        images,
        products,
        rel,
    })
}

/// Nearest neighbours of two product images, marked by the attributes they share.
fn image_search(shop: &Shop, top: usize) -> anyhow::Result<String> {
    let products = &shop.products;
    let mut blocks = Vec::new();
    for s in pick_image_queries(products) {
        let q = Matrix::from_rows(&[shop.images.row(s).to_vec()])?;
        // One extra: the product itself comes first.
        let ranked = top_k(&q, &shop.image_m, top + 1, None)?;
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
    print_blocks(&blocks, products);
    Ok(html_blocks(&blocks, shop))
}

/// The text queries against fused image + title documents, compared with each field alone.
fn multi_field_search(
    shop: &Shop,
    queries: &[QuerySpec],
    query_m: &Matrix,
    image_results: &[ResultBlock],
    top: usize,
) -> anyhow::Result<String> {
    let fused_results = search_blocks(query_m, &shop.fused_m, queries, shop, top)?;
    let title_results = search_blocks(query_m, &shop.title_m, queries, shop, top)?;
    print_blocks(&fused_results, &shop.products);
    let mut cmp = String::from(
        "<table><tr><th>query</th><th>image only</th><th>title only</th><th>image+title</th></tr>",
    );
    println!(
        "   exact matches in the top {top} by document field:\n     {:<32} {:>6} {:>6} {:>6}",
        "query", "image", "title", "fused"
    );
    let n_match = |b: &ResultBlock| b.hits.iter().filter(|h| all_ok(&h.marks)).count();
    for ((q, a), (b, c)) in queries
        .iter()
        .zip(image_results)
        .zip(title_results.iter().zip(&fused_results))
    {
        let (q, a, b, c) = (q.text(), n_match(a), n_match(b), n_match(c));
        println!("     {q:<32} {a:>6} {b:>6} {c:>6}");
        let _ = write!(
            cmp,
            "<tr><td>{}</td><td>{a}</td><td>{b}</td><td>{c}</td></tr>",
            esc(&q)
        );
    }
    cmp.push_str("</table>");
    Ok(format!(
        "<p>Exact matches in the top {top} per document representation:</p>{cmp}{}",
        html_blocks(&fused_results, shop)
    ))
}

/// Category classification of a few products shown, and accuracy over all of them.
fn zero_shot(clip: &Clip, shop: &Shop) -> anyhow::Result<String> {
    let products = &shop.products;
    let labels: Vec<String> = CATEGORIES.iter().map(|c| c.name.to_owned()).collect();
    let classifier = ZeroShotClassifier::new(clip, &labels, &[TEMPLATE.to_owned()], None)
        .context("embedding the category labels")?;
    let preds = classifier.classify(&shop.images, 3);
    let truth = |i: usize| CATEGORIES[products[i].attributes.category].name;
    let right = |i: usize| preds[i].first().is_some_and(|p| p.label == truth(i));
    let correct = (0..products.len()).filter(|&i| right(i)).count();
    let mut grid = String::from("<div class=grid>");
    for i in pick_distinct_categories(products, 6) {
        let top: Vec<String> = preds[i]
            .iter()
            .map(|p| format!("{} {:.2}", p.label, p.probability))
            .collect();
        println!(
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
    let acc = 100.0 * correct as f64 / products.len() as f64;
    let chance = 100.0 / labels.len() as f64;
    println!(
        "   accuracy over all {} products: {acc:.1}% (chance {chance:.1}%), softmax scale {:.1}",
        products.len(),
        classifier.scale()
    );
    Ok(format!(
        "<p>Prompt \"{}\", {} category labels, softmax at the model's scale {:.1}. \
         Top-1 accuracy over all {} products: <b>{acc:.1}%</b> (chance {chance:.1}%).</p>{grid}",
        esc(TEMPLATE),
        labels.len(),
        classifier.scale(),
        products.len(),
    ))
}

/// Refuses to scatter files into a directory that holds something else.
fn prepare_out(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        if !out.is_dir() {
            bail!("--out {} exists and is not a directory", out.display());
        }
        let ours = out.join("catalogue").join("manifest.json").is_file();
        let empty = std::fs::read_dir(out)
            .with_context(|| format!("reading {}", out.display()))?
            .next()
            .is_none();
        if !ours && !empty {
            bail!(
                "--out {} is not empty and holds no earlier demo output; pick a new directory",
                out.display()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

/// Loads the model, turning "no default model" into advice on what to pass instead.
fn load_model(args: &ModelArgs) -> anyhow::Result<Clip> {
    args.load().map_err(|e| {
        let no_default = e
            .chain()
            .any(|c| matches!(c.downcast_ref(), Some(gclip::Error::NoDefaultModel(_))));
        if no_default {
            e.context(
                "the demo needs a model: pass --model DIR (a checkpoint directory; \
                 tests/fixtures/reference/cli/model is a tiny random one that exercises the \
                 pipeline) or set GCLIP_MODEL",
            )
        } else {
            e
        }
    })
}

fn embed_files(clip: &Clip, files: &[PathBuf]) -> anyhow::Result<Embeddings> {
    let bar = common::progress(files.len() as u64, "embedding images");
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; files.len()];
    let mut failure = None;
    clip.embed_image_files_with(files, true, |i, outcome| {
        bar.inc(1);
        match outcome {
            gclip::ImageOutcome::Embedded(v) => rows[i] = Some(v),
            gclip::ImageOutcome::Failed(e) => {
                failure.get_or_insert(e);
            }
        }
    })?;
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e.into());
    }
    let mut out = Embeddings::empty(clip.dim());
    for r in rows {
        out.push(&r.context("internal: an image got no embedding")?);
    }
    Ok(out)
}

fn embed_texts(clip: &Clip, texts: &[&str]) -> anyhow::Result<Embeddings> {
    let bar = common::progress(texts.len() as u64, "embedding titles");
    let mut out = Embeddings::empty(clip.dim());
    for chunk in texts.chunks(64) {
        out.extend(&clip.embed_texts(chunk, true)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

fn to_matrix(e: &Embeddings) -> anyhow::Result<Matrix> {
    let rows: Vec<Vec<f32>> = e.rows().map(<[f32]>::to_vec).collect();
    Ok(Matrix::from_rows(&rows)?)
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
    queries: &Matrix,
    docs: &Matrix,
    specs: &[QuerySpec],
    shop: &Shop,
    top: usize,
) -> anyhow::Result<Vec<ResultBlock>> {
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

fn all_ok(marks: &[(&str, bool)]) -> bool {
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

fn print_blocks(blocks: &[ResultBlock], products: &[Product]) {
    for b in blocks {
        println!("   {}  ({})", b.title, b.note);
        for (r, h) in b.hits.iter().enumerate() {
            let p = &products[h.product];
            println!(
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

fn html_blocks(blocks: &[ResultBlock], shop: &Shop) -> String {
    let (products, rel) = (&shop.products, &shop.rel);
    let mut s = String::new();
    for b in blocks {
        let _ = write!(s, "<h3>");
        if let Some(img) = &b.query_image {
            let _ = write!(s, "<img class=q src=\"{}\"> ", esc(img));
        }
        let _ = write!(
            s,
            "{} <small>{}</small></h3><div class=grid>",
            esc(&b.title),
            esc(&b.note)
        );
        for (r, h) in b.hits.iter().enumerate() {
            let p = &products[h.product];
            let marks: Vec<String> = h
                .marks
                .iter()
                .map(|(n, ok)| {
                    if *ok {
                        format!("<b>+{}</b>", esc(n))
                    } else {
                        format!("<s>{}</s>", esc(n))
                    }
                })
                .collect();
            let _ = write!(
                s,
                "<figure class={}><img src=\"{}\" title=\"{}\"><figcaption>#{} {:.3}<br>{}<br>{}</figcaption></figure>",
                if all_ok(&h.marks) { "ok" } else { "bad" },
                esc(&rel[h.product]),
                esc(&p.title),
                r + 1,
                h.score,
                esc(&p.product_id),
                marks.join(" ")
            );
        }
        s.push_str("</div>");
    }
    s
}

/// Draws a product with chosen attributes into DIR/examples and returns its page-relative path.
fn draw_example(
    out: &Path,
    name: &str,
    attrs: &Attributes,
    size: usize,
    seed: u64,
) -> anyhow::Result<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let side = u32::try_from(size).context("model image size does not fit in u32")?;
    let (img, _) = gclip_synth::render_attributes_with_mask(attrs, side, &mut rng)
        .with_context(|| format!("drawing the example image {name}"))?;
    let rel = format!("examples/{name}.png");
    let path = out.join(&rel);
    img.save(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(rel)
}

fn attrs(
    category: &str,
    colour: &str,
    pattern: usize,
    material: &str,
) -> anyhow::Result<Attributes> {
    let find = |names: Vec<&str>, want: &str| {
        names
            .iter()
            .position(|n| *n == want)
            .with_context(|| format!("internal: {want:?} is not in the synth vocabulary"))
    };
    Ok(Attributes {
        category: find(CATEGORIES.iter().map(|c| c.name).collect(), category)?,
        colour: find(COLOURS.iter().map(|c| c.name).collect(), colour)?,
        pattern,
        material: find(MATERIALS.to_vec(), material)?,
        ..Attributes::default()
    })
}

/// The two classic examples: open_clip's (images x captions, softmax at the model's scale)
/// and Marqo's (a product image against three captions, softmax at scale 10).
fn seed_examples(clip: &Clip, size: usize, out: &Path, seed: u64) -> anyhow::Result<String> {
    let dir = out.join("examples");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut html = String::new();
    let striped = PATTERNS.iter().position(|p| *p == "striped").unwrap_or(1);
    let items = [
        (
            "red-striped-shirt",
            attrs("shirt", "red", striped, "cotton")?,
        ),
        ("blue-mug", attrs("mug", "blue", PLAIN, "ceramic")?),
        (
            "yellow-umbrella",
            attrs("umbrella", "yellow", PLAIN, "nylon")?,
        ),
    ];
    let captions: Vec<String> = [
        "a red striped shirt",
        "a blue mug",
        "a yellow umbrella",
        "a dog",
        "a cat",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut paths = Vec::new();
    for (k, (name, a)) in items.iter().enumerate() {
        paths.push(draw_example(out, name, a, size, seed ^ (k as u64 + 1))?);
    }
    let files: Vec<PathBuf> = paths.iter().map(|p| out.join(p)).collect();
    let img = clip.embed_image_files(&files, true)?;
    let txt = clip.embed_texts(&captions, true)?;
    let cos = cosine_matrix(&img, &txt);
    let scale = clip.logit_scale()?;
    let probs = softmax_rows(&cos, scale);
    println!("   a) three images x five captions: cosine, and softmax over captions at the model's scale {scale:.1}");
    // Each column as wide as its caption, so the matrix stays narrow.
    let widths: Vec<usize> = captions.iter().map(|c| c.len().max(13) + 2).collect();
    println!(
        "      {:<18}{}",
        "",
        captions
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<String>()
    );
    let _ = write!(
        html,
        "<h3>Images x captions <small>cosine / softmax at the model's logit scale {scale:.1}</small></h3><table><tr><th></th>"
    );
    for c in &captions {
        let _ = write!(html, "<th>{}</th>", esc(c));
    }
    html.push_str("</tr>");
    for (k, (name, _)) in items.iter().enumerate() {
        let cells: String = cos[k]
            .iter()
            .zip(&probs[k])
            .zip(&widths)
            .map(|((c, p), w)| format!("{:>w$}", format!("{c:.3} / {p:.2}")))
            .collect();
        println!("      {name:<18}{cells}");
        let _ = write!(
            html,
            "<tr><td><img class=q src=\"{}\"></td>{}</tr>",
            esc(&paths[k]),
            cos[k]
                .iter()
                .zip(&probs[k])
                .map(|(c, p)| format!("<td>{c:.3} / <b>{p:.2}</b></td>"))
                .collect::<String>()
        );
    }
    html.push_str("</table>");

    // Marqo's example: women's vintage oxfords. Style and audience are title-only
    // attributes in the synthetic world, so the picture shows a brown leather shoe.
    let mut oxford = attrs("shoe", "brown", PLAIN, "leather")?;
    oxford.style = gclip_synth::vocab::STYLES
        .iter()
        .position(|s| *s == "vintage")
        .unwrap_or(0);
    oxford.audience = gclip_synth::vocab::AUDIENCES
        .iter()
        .position(|a| *a == "women");
    let path = draw_example(out, "vintage-oxfords", &oxford, size, seed ^ 0x0f)?;
    let labels: Vec<String> = ["A dog", "Vintage Style Women's Oxfords", "A cat"]
        .map(str::to_owned)
        .to_vec();
    let img = clip.embed_image_files(&[out.join(&path)], true)?;
    let txt = clip.embed_texts(&labels, true)?;
    let cos = cosine_matrix(&img, &txt);
    let probs = softmax_rows(&cos, MARQO_DEMO_SCALE);
    println!(
        "   b) a brown leather shoe against three captions, softmax at scale {MARQO_DEMO_SCALE}"
    );
    let _ = write!(
        html,
        "<h3><img class=q src=\"{}\"> One product image against three captions <small>softmax(10 x cosine)</small></h3><table><tr><th>caption</th><th>cosine</th><th>probability</th></tr>",
        esc(&path)
    );
    for ((l, c), p) in labels.iter().zip(&cos[0]).zip(&probs[0]) {
        println!("      {l:<32} cosine {c:.3}  probability {p:.3}");
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{c:.3}</td><td><b>{p:.3}</b></td></tr>",
            esc(l)
        );
    }
    html.push_str("</table>");
    Ok(html)
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn write_page(path: &Path, page: &Page) -> anyhow::Result<()> {
    let mut s = String::from(
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>gclip demo</title><style>\
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1100px;color:#222}\
h2{border-bottom:1px solid #ccc;padding-top:.6em}h3{font-size:1em;margin:1.2em 0 .4em}\
h3 small{font-weight:normal;color:#666}\
.grid{display:flex;flex-wrap:wrap;gap:10px}\
figure{margin:0;width:130px;font-size:12px;border:2px solid #ddd;padding:4px;border-radius:4px}\
figure.ok{border-color:#3a3}figure.bad{border-color:#d88}\
img{width:120px;height:120px;image-rendering:pixelated;display:block}\
img.q{width:64px;height:64px;display:inline-block;vertical-align:middle}\
s{color:#b33}b{color:#161}table{border-collapse:collapse}\
td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:right}\
</style></head><body><h1>gclip demo</h1>",
    );
    let _ = write!(s, "<p>{}</p>", page.intro);
    for (title, body) in &page.sections {
        let _ = write!(s, "<h2>{}</h2>{body}", esc(title));
    }
    s.push_str("</body></html>\n");
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}
