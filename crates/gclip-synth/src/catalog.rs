//! The in-memory catalogue: products, queries, graded relevance and the
//! four query x document splits of the Marqo-GS-10M design.

use std::collections::{BTreeSet, HashSet};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::text::{query_text, title};
use crate::vocab::{
    colour_similarity, material_index, AUDIENCES, BRANDS, CATEGORIES, COLOURS, MATERIALS, PATTERNS,
    PLAIN, STYLES,
};
use crate::{SynthConfig, SynthError};

/// Attributes of a product, as indices into the tables of [`crate::vocab`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Attributes {
    /// Index into [`CATEGORIES`] (drawn silhouette).
    pub category: usize,
    /// Index into [`COLOURS`] (drawn).
    pub colour: usize,
    /// Index into [`PATTERNS`] (drawn).
    pub pattern: usize,
    /// Index into [`MATERIALS`] (title only).
    pub material: usize,
    /// Index into [`STYLES`] (title only).
    pub style: usize,
    /// Index into [`AUDIENCES`] for wearables (title only).
    pub audience: Option<usize>,
    /// Index into [`BRANDS`] (title only).
    pub brand: usize,
}

/// Attribute names, as written to `corpus.json`.
#[derive(Debug, Clone, Serialize)]
pub struct AttributeNames {
    /// Category name.
    pub category: &'static str,
    /// Colour name.
    pub colour: &'static str,
    /// Pattern name.
    pub pattern: &'static str,
    /// Material name.
    pub material: &'static str,
    /// Style name.
    pub style: &'static str,
    /// Audience name, if the product is worn.
    pub audience: Option<&'static str>,
    /// Brand name.
    pub brand: &'static str,
}

impl Attributes {
    /// The attribute names.
    pub fn names(&self) -> AttributeNames {
        AttributeNames {
            category: CATEGORIES[self.category].name,
            colour: COLOURS[self.colour].name,
            pattern: PATTERNS[self.pattern],
            material: MATERIALS[self.material],
            style: STYLES[self.style],
            audience: self.audience.map(|a| AUDIENCES[a]),
            brand: BRANDS[self.brand],
        }
    }

    /// Draws random attributes; `category` and `colour` may be fixed.
    pub fn random<R: Rng + ?Sized>(
        rng: &mut R,
        category: Option<usize>,
        colour: Option<usize>,
    ) -> Self {
        let category = category.unwrap_or_else(|| rng.random_range(0..CATEGORIES.len()));
        let colour = colour.unwrap_or_else(|| rng.random_range(0..COLOURS.len()));
        // Plain products are the most common, as in real catalogues.
        let pattern = if rng.random::<f32>() < 0.35 {
            PLAIN
        } else {
            rng.random_range(1..PATTERNS.len())
        };
        let spec = &CATEGORIES[category];
        let material = material_index(spec.materials.choose(rng).copied().unwrap_or(MATERIALS[0]));
        let style = rng.random_range(0..STYLES.len());
        let audience = if !spec.wearable {
            None
        } else if spec.name == "dress" {
            Some(if rng.random::<f32>() < 0.8 { 1 } else { 2 })
        } else {
            Some(rng.random_range(0..AUDIENCES.len()))
        };
        let brand = rng.random_range(0..BRANDS.len());
        Attributes {
            category,
            colour,
            pattern,
            material,
            style,
            audience,
            brand,
        }
    }
}

/// Which half of the documents a product belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum DocSet {
    /// Documents of the training split (`corpus_1.json`), 50% by default.
    Seen,
    /// Documents never trained on (`corpus_2.json`).
    Unseen,
}

/// Which part of the queries a query belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum QuerySet {
    /// Training queries, 80% by default.
    Seen,
    /// Queries never trained on.
    Unseen,
}

/// One catalogue document.
#[derive(Debug, Clone)]
pub struct Product {
    /// Position in [`Catalog::products`].
    pub index: usize,
    /// Identifier, e.g. `p000042`.
    pub product_id: String,
    /// Product title (the text field of the document).
    pub title: String,
    /// True attributes.
    pub attributes: Attributes,
    /// Popularity in [0, 1); nudges the ranking among equally relevant products.
    pub popularity: f32,
    /// Document half.
    pub doc_set: DocSet,
    /// Seed of the image's own RNG (so images render in any order).
    pub render_seed: u64,
}

impl Product {
    /// The product's image as [`crate::generate`] writes it (rendered from
    /// `render_seed`), before file encoding.
    pub fn image(&self, size: u32) -> Result<image::RgbImage, SynthError> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.render_seed);
        crate::render_product(self, size, &mut rng)
    }
}

/// The attribute subset a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct QuerySpec {
    /// Category index.
    pub category: Option<usize>,
    /// Colour index.
    pub colour: Option<usize>,
    /// Pattern index (never plain).
    pub pattern: Option<usize>,
    /// Material index.
    pub material: Option<usize>,
    /// Style index.
    pub style: Option<usize>,
    /// Audience index.
    pub audience: Option<usize>,
    /// Brand index.
    pub brand: Option<usize>,
}

/// Relevance weights of the query attributes (category dominates, then colour).
const W_CATEGORY: f32 = 3.0;
const W_COLOUR: f32 = 2.0;
const W_PATTERN: f32 = 1.0;
const W_MATERIAL: f32 = 1.0;
const W_STYLE: f32 = 0.6;
const W_AUDIENCE: f32 = 1.0;
const W_BRAND: f32 = 0.8;
/// Products of another category keep this fraction of their relevance.
const WRONG_CATEGORY: f32 = 0.3;
/// Weight of popularity in the ranking score.
const POPULARITY_WEIGHT: f32 = 0.08;
/// Standard deviation of per-pair ranking noise.
const PAIR_NOISE: f32 = 0.02;

impl QuerySpec {
    /// Graded relevance in [0, 1]: weighted fraction of the query's
    /// attributes the product has (related colours get partial credit);
    /// products of another category than asked for are heavily discounted.
    pub fn relevance(&self, a: &Attributes) -> f32 {
        let mut num = 0.0;
        let mut den = 0.0;
        let mut add = |w: f32, m: f32| {
            num += w * m;
            den += w;
        };
        if let Some(c) = self.category {
            add(W_CATEGORY, (c == a.category) as u8 as f32);
        }
        if let Some(c) = self.colour {
            add(W_COLOUR, colour_similarity(c, a.colour));
        }
        if let Some(p) = self.pattern {
            add(W_PATTERN, (p == a.pattern) as u8 as f32);
        }
        if let Some(m) = self.material {
            add(W_MATERIAL, (m == a.material) as u8 as f32);
        }
        if let Some(s) = self.style {
            add(W_STYLE, (s == a.style) as u8 as f32);
        }
        if let Some(au) = self.audience {
            let m = match a.audience {
                Some(x) if x == au => 1.0,
                // Unisex items partly answer "for men" / "for women" and vice versa.
                Some(x) if AUDIENCES[x] == "unisex" || AUDIENCES[au] == "unisex" => 0.5,
                _ => 0.0,
            };
            add(W_AUDIENCE, m);
        }
        if let Some(b) = self.brand {
            add(W_BRAND, (b == a.brand) as u8 as f32);
        }
        if den == 0.0 {
            return 0.0;
        }
        let mut r = num / den;
        if matches!(self.category, Some(c) if c != a.category) {
            r *= WRONG_CATEGORY;
        }
        r
    }

    /// Whether the query asks for a colour x category combination in `combos`.
    pub fn hits_combo(&self, combos: &[HeldOutCombo]) -> bool {
        match (self.colour, self.category) {
            (Some(c), Some(k)) => combos.iter().any(|h| h.colour == c && h.category == k),
            _ => false,
        }
    }
}

/// A colour x category combination kept out of the training split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeldOutCombo {
    /// Colour index.
    pub colour: usize,
    /// Category index.
    pub category: usize,
}

impl HeldOutCombo {
    /// Whether a product has this combination.
    pub fn matches(&self, a: &Attributes) -> bool {
        a.colour == self.colour && a.category == self.category
    }

    /// Natural label, e.g. "green boot".
    pub fn label(&self) -> String {
        format!(
            "{} {}",
            COLOURS[self.colour].name, CATEGORIES[self.category].name
        )
    }
}

/// One search query.
#[derive(Debug, Clone)]
pub struct Query {
    /// Position in [`Catalog::queries`].
    pub index: usize,
    /// Identifier, e.g. `q000042`.
    pub query_id: String,
    /// Query text.
    pub text: String,
    /// Attributes asked for.
    pub spec: QuerySpec,
    /// Query half.
    pub query_set: QuerySet,
}

/// One ranked result of a query over the whole catalogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// Product index.
    pub product: usize,
    /// Result position 1..=max_results over all documents, by noisy score.
    pub position: u32,
    /// Graded relevance of the pair in (0, 1].
    pub relevance: f32,
}

/// The five CSV tables written by [`crate::generate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// Seen queries x seen documents (the training data).
    Train,
    /// A sample of the training queries with their training rows (as in
    /// Marqo-GS-10M, the in-domain test shares queries and documents with
    /// training).
    InDomain,
    /// Unseen queries x seen documents.
    NovelQuery,
    /// Seen queries x unseen documents.
    NovelDocument,
    /// Unseen queries x unseen documents.
    ZeroShot,
}

impl Split {
    /// All splits in file order.
    pub const ALL: [Split; 5] = [
        Split::Train,
        Split::InDomain,
        Split::NovelQuery,
        Split::NovelDocument,
        Split::ZeroShot,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::InDomain => "in_domain",
            Split::NovelQuery => "novel_query",
            Split::NovelDocument => "novel_document",
            Split::ZeroShot => "zero_shot",
        }
    }

    /// CSV file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.csv",
            Split::InDomain => "test_in_domain.csv",
            Split::NovelQuery => "test_novel_query.csv",
            Split::NovelDocument => "test_novel_document.csv",
            Split::ZeroShot => "test_zero_shot.csv",
        }
    }

    /// Corpus file the split's retrieval runs over.
    pub fn corpus_file(self) -> &'static str {
        match self.doc_set() {
            DocSet::Seen => "corpus_1.json",
            DocSet::Unseen => "corpus_2.json",
        }
    }

    /// Document half of the split.
    pub fn doc_set(self) -> DocSet {
        match self {
            Split::Train | Split::InDomain | Split::NovelQuery => DocSet::Seen,
            Split::NovelDocument | Split::ZeroShot => DocSet::Unseen,
        }
    }

    /// Query half of the split.
    pub fn query_set(self) -> QuerySet {
        match self {
            Split::Train | Split::InDomain | Split::NovelDocument => QuerySet::Seen,
            Split::NovelQuery | Split::ZeroShot => QuerySet::Unseen,
        }
    }
}

/// One class of a zero-shot classification set.
#[derive(Debug, Clone)]
pub struct ZeroShotClass {
    /// Folder name (no spaces), e.g. `green_boot`.
    pub folder: String,
    /// Label text, e.g. `green boot`.
    pub label: String,
    /// Attributes and image seed of each example.
    pub items: Vec<(Attributes, u64)>,
}

/// A folder-per-class zero-shot classification set.
#[derive(Debug, Clone)]
pub struct ZeroShotSet {
    /// Set name and folder under `zeroshot/`.
    pub name: &'static str,
    /// What the set measures.
    pub description: &'static str,
    /// Classes in label order.
    pub classes: Vec<ZeroShotClass>,
}

/// The whole generated world, before anything is written to disk.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// All products (documents).
    pub products: Vec<Product>,
    /// All queries.
    pub queries: Vec<Query>,
    /// Per query (same order as `queries`), its ranked results over all
    /// products, positions 1..=n ascending.
    pub results: Vec<Vec<Judgement>>,
    /// Colour x category combinations absent from the training split.
    pub held_out: Vec<HeldOutCombo>,
    /// Training queries sampled for the in-domain test, ascending.
    pub in_domain_queries: Vec<usize>,
    /// Zero-shot classification sets.
    pub zeroshot: Vec<ZeroShotSet>,
}

/// Independent RNG streams, so changing one stage leaves the others unchanged.
pub(crate) mod stream {
    pub const HELD_OUT: u64 = 1;
    pub const PRODUCTS: u64 = 2;
    pub const DOC_SPLIT: u64 = 3;
    pub const QUERIES: u64 = 4;
    pub const QUERY_SPLIT: u64 = 5;
    pub const RELEVANCE: u64 = 6;
    pub const IN_DOMAIN: u64 = 7;
    pub const IMAGES: u64 = 8;
    pub const ZEROSHOT: u64 = 9;
    pub const CAPTIONS: u64 = 10;
}

/// Seed of sub-stream `(stream, index)` of the run seed (SplitMix64 mixing).
pub(crate) fn sub_seed(seed: u64, stream: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    for _ in 0..2 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

fn rng_for(seed: u64, s: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(sub_seed(seed, s, 0))
}

impl Catalog {
    /// Generates the catalogue for a configuration (no I/O, no images).
    pub fn generate(cfg: &SynthConfig) -> Result<Catalog, SynthError> {
        cfg.validate()?;
        let held_out = pick_held_out(cfg);
        let products = make_products(cfg, &held_out);
        let queries = make_queries(cfg, &products, &held_out)?;
        let results = rank_all(cfg, &products, &queries);
        let seen: Vec<usize> = queries
            .iter()
            .filter(|q| q.query_set == QuerySet::Seen)
            .map(|q| q.index)
            .collect();
        let mut rng = rng_for(cfg.seed, stream::IN_DOMAIN);
        let n_in = ((seen.len() as f64 * cfg.in_domain_fraction).ceil() as usize)
            .clamp(1, seen.len().max(1));
        let mut in_domain: Vec<usize> = seen
            .choose_multiple(&mut rng, n_in.min(seen.len()))
            .copied()
            .collect();
        in_domain.sort_unstable();
        let zeroshot = make_zeroshot(cfg, &held_out);
        Ok(Catalog {
            products,
            queries,
            results,
            held_out,
            in_domain_queries: in_domain,
            zeroshot,
        })
    }

    /// Rows of a split as (query index, judgement), queries ascending, positions ascending.
    pub fn split_rows(&self, split: Split) -> Vec<(usize, Judgement)> {
        let qs: Box<dyn Iterator<Item = usize>> = match split {
            Split::InDomain => Box::new(self.in_domain_queries.iter().copied()),
            _ => Box::new(
                (0..self.queries.len()).filter(|&q| self.queries[q].query_set == split.query_set()),
            ),
        };
        let docs = split.doc_set();
        qs.flat_map(|q| {
            self.results[q]
                .iter()
                .filter(|j| self.products[j.product].doc_set == docs)
                .map(move |j| (q, *j))
                .collect::<Vec<_>>()
        })
        .collect()
    }

    /// Products of a document half.
    pub fn products_in(&self, set: DocSet) -> impl Iterator<Item = &Product> {
        self.products.iter().filter(move |p| p.doc_set == set)
    }
}

fn pick_held_out(cfg: &SynthConfig) -> Vec<HeldOutCombo> {
    let mut rng = rng_for(cfg.seed, stream::HELD_OUT);
    let mut cats: Vec<usize> = (0..CATEGORIES.len()).collect();
    let mut cols: Vec<usize> = (0..COLOURS.len()).collect();
    cats.shuffle(&mut rng);
    cols.shuffle(&mut rng);
    // Distinct categories and colours: each still appears in training with
    // other partners, only the pairing is new.
    let mut v: Vec<HeldOutCombo> = cats
        .into_iter()
        .zip(cols)
        .take(cfg.held_out_combos)
        .map(|(category, colour)| HeldOutCombo { colour, category })
        .collect();
    v.sort_by_key(|h| (h.category, h.colour));
    v
}

fn make_products(cfg: &SynthConfig, held_out: &[HeldOutCombo]) -> Vec<Product> {
    let mut rng = rng_for(cfg.seed, stream::PRODUCTS);
    let mut products: Vec<Product> = (0..cfg.products)
        .map(|i| {
            let attributes = Attributes::random(&mut rng, None, None);
            let title = title(&attributes, &mut rng);
            let u: f32 = rng.random();
            Product {
                index: i,
                product_id: format!("p{i:06}"),
                title,
                attributes,
                popularity: u * u,
                doc_set: DocSet::Unseen,
                render_seed: sub_seed(cfg.seed, stream::IMAGES, i as u64),
            }
        })
        .collect();
    // Held-out combinations always go to the unseen half; the rest fill the
    // seen half up to its target share.
    let mut rng = rng_for(cfg.seed, stream::DOC_SPLIT);
    let mut free: Vec<usize> = products
        .iter()
        .filter(|p| !held_out.iter().any(|h| h.matches(&p.attributes)))
        .map(|p| p.index)
        .collect();
    free.shuffle(&mut rng);
    let n_seen = ((cfg.products as f64 * cfg.train_doc_fraction).round() as usize).min(free.len());
    for &i in &free[..n_seen] {
        products[i].doc_set = DocSet::Seen;
    }
    products
}

fn random_spec<R: Rng + ?Sized>(rng: &mut R, a: &Attributes) -> QuerySpec {
    let mut q = QuerySpec {
        category: (rng.random::<f32>() < 0.9).then_some(a.category),
        ..Default::default()
    };
    // Candidate extra attributes with sampling weights.
    let mut cands: Vec<(u8, f32)> = vec![(0, 3.0), (2, 2.0), (3, 1.0), (5, 0.7)];
    if a.pattern != PLAIN {
        cands.push((1, 2.0));
    }
    if a.audience.is_some() {
        cands.push((4, 1.5));
    }
    let r: f32 = rng.random();
    let k = if r < 0.45 {
        1
    } else if r < 0.85 {
        2
    } else {
        3
    };
    for _ in 0..k {
        let Ok(&(kind, _)) = cands.choose_weighted(rng, |c| c.1) else {
            break;
        };
        cands.retain(|c| c.0 != kind);
        match kind {
            0 => q.colour = Some(a.colour),
            1 => q.pattern = Some(a.pattern),
            2 => q.material = Some(a.material),
            3 => q.style = Some(a.style),
            4 => q.audience = a.audience,
            _ => q.brand = Some(a.brand),
        }
    }
    q
}

fn make_queries(
    cfg: &SynthConfig,
    products: &[Product],
    held_out: &[HeldOutCombo],
) -> Result<Vec<Query>, SynthError> {
    let mut rng = rng_for(cfg.seed, stream::QUERIES);
    let mut specs = HashSet::new();
    let mut texts = HashSet::new();
    let mut out: Vec<(QuerySpec, String)> = Vec::new();
    let max_attempts = cfg.queries.saturating_mul(50).max(1000);
    for _ in 0..max_attempts {
        if out.len() == cfg.queries {
            break;
        }
        let Some(seed_product) = products.choose(&mut rng) else {
            break;
        };
        let spec = random_spec(&mut rng, &seed_product.attributes);
        if specs.contains(&spec) {
            continue;
        }
        let text = query_text(&spec, &mut rng);
        if text.is_empty() || texts.contains(&text) {
            continue;
        }
        specs.insert(spec);
        texts.insert(text.clone());
        out.push((spec, text));
    }
    if out.len() < 2 {
        return Err(SynthError::InvalidConfig(format!(
            "only {} distinct queries could be made from {} products",
            out.len(),
            products.len()
        )));
    }
    // Queries naming a held-out combination must stay out of training.
    let mut rng = rng_for(cfg.seed, stream::QUERY_SPLIT);
    let mut free: Vec<usize> = (0..out.len())
        .filter(|&i| !out[i].0.hits_combo(held_out))
        .collect();
    free.shuffle(&mut rng);
    let n_seen = ((out.len() as f64 * cfg.train_query_fraction).round() as usize).min(free.len());
    let seen: BTreeSet<usize> = free[..n_seen].iter().copied().collect();
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(i, (spec, text))| Query {
            index: i,
            query_id: format!("q{i:06}"),
            text,
            spec,
            query_set: if seen.contains(&i) {
                QuerySet::Seen
            } else {
                QuerySet::Unseen
            },
        })
        .collect())
}

fn rank_all(cfg: &SynthConfig, products: &[Product], queries: &[Query]) -> Vec<Vec<Judgement>> {
    queries
        .par_iter()
        .map(|q| {
            // Each query has its own noise stream: results do not depend on thread scheduling.
            let mut rng =
                ChaCha8Rng::seed_from_u64(sub_seed(cfg.seed, stream::RELEVANCE, q.index as u64));
            let mut scored: Vec<(f32, usize, f32)> = products
                .iter()
                .filter_map(|p| {
                    let rel = q.spec.relevance(&p.attributes);
                    // Drawn for every product so the stream does not depend on which match.
                    let noise =
                        (rng.random::<f32>() + rng.random::<f32>() - 1.0) * PAIR_NOISE * 1.7;
                    (rel > 0.0).then_some({
                        (
                            rel + POPULARITY_WEIGHT * (p.popularity - 0.5) + noise,
                            p.index,
                            rel,
                        )
                    })
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored
                .into_iter()
                .take(cfg.max_results)
                .enumerate()
                .map(|(i, (_, product, relevance))| Judgement {
                    product,
                    position: i as u32 + 1,
                    relevance,
                })
                .collect()
        })
        .collect()
}

/// Draws the example products of zero-shot classes, each with its own image seed.
struct ItemMaker {
    seed: u64,
    per_class: usize,
    next: u64,
    rng: ChaCha8Rng,
}

impl ItemMaker {
    fn items(&mut self, category: usize, colour: Option<usize>) -> Vec<(Attributes, u64)> {
        (0..self.per_class)
            .map(|_| {
                self.next += 1;
                (
                    Attributes::random(&mut self.rng, Some(category), colour),
                    sub_seed(self.seed, stream::ZEROSHOT, self.next),
                )
            })
            .collect()
    }

    fn combo_class(&mut self, h: &HeldOutCombo) -> ZeroShotClass {
        ZeroShotClass {
            folder: h.label().replace(' ', "_"),
            label: h.label(),
            items: self.items(h.category, Some(h.colour)),
        }
    }
}

fn make_zeroshot(cfg: &SynthConfig, held_out: &[HeldOutCombo]) -> Vec<ZeroShotSet> {
    let mut maker = ItemMaker {
        seed: cfg.seed,
        per_class: cfg.zeroshot_per_class,
        next: 0,
        rng: rng_for(cfg.seed, stream::ZEROSHOT),
    };
    let category = ZeroShotSet {
        name: "category",
        description: "one class per category; fresh products of any colour and pattern",
        classes: (0..CATEGORIES.len())
            .map(|c| ZeroShotClass {
                folder: CATEGORIES[c].name.to_string(),
                label: CATEGORIES[c].name.to_string(),
                items: maker.items(c, None),
            })
            .collect(),
    };
    let held: Vec<ZeroShotClass> = held_out.iter().map(|h| maker.combo_class(h)).collect();
    // Seen controls: as many colour x category pairs that do occur in training.
    let mut seen_pairs: Vec<HeldOutCombo> = (0..CATEGORIES.len())
        .flat_map(|category| {
            (0..COLOURS.len()).map(move |colour| HeldOutCombo { colour, category })
        })
        .filter(|c| !held_out.contains(c))
        .collect();
    seen_pairs.shuffle(&mut maker.rng);
    seen_pairs.truncate(held_out.len());
    seen_pairs.sort_by_key(|h| (h.category, h.colour));
    let seen: Vec<ZeroShotClass> = seen_pairs.iter().map(|h| maker.combo_class(h)).collect();
    let mut sets = vec![category];
    if !held.is_empty() {
        sets.push(ZeroShotSet {
            name: "heldout_combo",
            description: "colour x category pairs never seen together in the training split",
            classes: held,
        });
        sets.push(ZeroShotSet {
            name: "seen_combo",
            description: "control: as many colour x category pairs that do occur in training",
            classes: seen,
        });
    }
    sets
}
