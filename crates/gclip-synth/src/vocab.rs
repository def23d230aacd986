//! Attribute vocabularies of the synthetic catalogue.
//!
//! Attributes are stored on products as indices into these tables, so label
//! lists for zero-shot classification can be built directly from them
//! (e.g. `CATEGORIES.iter().map(|c| c.name)`).

/// One product category: its drawn silhouette plus the words used for it.
#[derive(Debug, Clone, Copy)]
pub struct CategorySpec {
    /// Canonical single-word name (used for folder names and labels).
    pub name: &'static str,
    /// Synonyms as (singular, plural); the first entry is the canonical one.
    pub synonyms: &'static [(&'static str, &'static str)],
    /// Materials a product of this category can be made of.
    pub materials: &'static [&'static str],
    /// Whether the product is worn (and so has an audience such as "men").
    pub wearable: bool,
    /// Items sold as a pair ("boots", "sunglasses") are named in the plural.
    pub plural_item: bool,
}

/// The product categories, each with a distinct silhouette.
pub const CATEGORIES: &[CategorySpec] = &[
    CategorySpec {
        name: "shirt",
        synonyms: &[
            ("shirt", "shirts"),
            ("t-shirt", "t-shirts"),
            ("tee", "tees"),
            ("top", "tops"),
        ],
        materials: &["cotton", "linen", "silk", "wool"],
        wearable: true,
        plural_item: false,
    },
    CategorySpec {
        name: "dress",
        synonyms: &[
            ("dress", "dresses"),
            ("sundress", "sundresses"),
            ("frock", "frocks"),
        ],
        materials: &["cotton", "linen", "silk"],
        wearable: true,
        plural_item: false,
    },
    CategorySpec {
        name: "trousers",
        synonyms: &[
            ("trousers", "trousers"),
            ("pants", "pants"),
            ("slacks", "slacks"),
        ],
        materials: &["cotton", "linen", "wool", "denim"],
        wearable: true,
        plural_item: true,
    },
    CategorySpec {
        name: "shoe",
        synonyms: &[
            ("shoe", "shoes"),
            ("sneaker", "sneakers"),
            ("trainer", "trainers"),
        ],
        materials: &["leather", "suede", "canvas", "nylon"],
        wearable: true,
        plural_item: true,
    },
    CategorySpec {
        name: "boot",
        synonyms: &[
            ("boot", "boots"),
            ("ankle boot", "ankle boots"),
            ("chelsea boot", "chelsea boots"),
        ],
        materials: &["leather", "suede", "rubber"],
        wearable: true,
        plural_item: true,
    },
    CategorySpec {
        name: "hat",
        synonyms: &[
            ("hat", "hats"),
            ("fedora", "fedoras"),
            ("sun hat", "sun hats"),
        ],
        materials: &["wool", "cotton", "straw", "leather"],
        wearable: true,
        plural_item: false,
    },
    CategorySpec {
        name: "bag",
        synonyms: &[
            ("bag", "bags"),
            ("handbag", "handbags"),
            ("tote", "totes"),
            ("purse", "purses"),
        ],
        materials: &["leather", "canvas", "nylon", "suede"],
        wearable: true,
        plural_item: false,
    },
    CategorySpec {
        name: "mug",
        synonyms: &[
            ("mug", "mugs"),
            ("coffee mug", "coffee mugs"),
            ("cup", "cups"),
        ],
        materials: &["ceramic", "porcelain", "glass", "stainless steel"],
        wearable: false,
        plural_item: false,
    },
    CategorySpec {
        name: "chair",
        synonyms: &[
            ("chair", "chairs"),
            ("dining chair", "dining chairs"),
            ("seat", "seats"),
        ],
        materials: &["wood", "plastic", "metal", "bamboo"],
        wearable: false,
        plural_item: false,
    },
    CategorySpec {
        name: "lamp",
        synonyms: &[
            ("lamp", "lamps"),
            ("table lamp", "table lamps"),
            ("desk lamp", "desk lamps"),
        ],
        materials: &["metal", "ceramic", "glass", "wood"],
        wearable: false,
        plural_item: false,
    },
    CategorySpec {
        name: "watch",
        synonyms: &[
            ("watch", "watches"),
            ("wristwatch", "wristwatches"),
            ("timepiece", "timepieces"),
        ],
        materials: &["leather", "stainless steel", "silicone", "nylon"],
        wearable: true,
        plural_item: false,
    },
    CategorySpec {
        name: "bottle",
        synonyms: &[
            ("bottle", "bottles"),
            ("water bottle", "water bottles"),
            ("flask", "flasks"),
        ],
        materials: &["glass", "plastic", "stainless steel", "aluminium"],
        wearable: false,
        plural_item: false,
    },
    CategorySpec {
        name: "umbrella",
        synonyms: &[("umbrella", "umbrellas"), ("parasol", "parasols")],
        materials: &["nylon", "polyester", "cotton"],
        wearable: false,
        plural_item: false,
    },
    CategorySpec {
        name: "sunglasses",
        synonyms: &[
            ("sunglasses", "sunglasses"),
            ("shades", "shades"),
            ("sunnies", "sunnies"),
        ],
        materials: &["plastic", "metal", "acetate", "wood"],
        wearable: true,
        plural_item: true,
    },
];

/// One colour: its canonical name, synonyms and the sRGB value it is drawn with.
#[derive(Debug, Clone, Copy)]
pub struct ColourSpec {
    /// Canonical single-word name.
    pub name: &'static str,
    /// Synonyms; the first entry is the canonical name.
    pub synonyms: &'static [&'static str],
    /// Base sRGB colour (jittered slightly per product).
    pub rgb: [u8; 3],
}

/// The product colours.
pub const COLOURS: &[ColourSpec] = &[
    ColourSpec {
        name: "red",
        synonyms: &["red", "crimson", "scarlet"],
        rgb: [206, 32, 41],
    },
    ColourSpec {
        name: "orange",
        synonyms: &["orange", "tangerine"],
        rgb: [243, 128, 24],
    },
    ColourSpec {
        name: "yellow",
        synonyms: &["yellow", "lemon", "mustard"],
        rgb: [245, 208, 30],
    },
    ColourSpec {
        name: "green",
        synonyms: &["green", "emerald", "kelly green"],
        rgb: [46, 160, 67],
    },
    ColourSpec {
        name: "teal",
        synonyms: &["teal", "turquoise"],
        rgb: [0, 150, 150],
    },
    ColourSpec {
        name: "blue",
        synonyms: &["blue", "royal blue", "cobalt"],
        rgb: [40, 100, 225],
    },
    ColourSpec {
        name: "navy",
        synonyms: &["navy", "navy blue", "midnight blue"],
        rgb: [22, 32, 92],
    },
    ColourSpec {
        name: "purple",
        synonyms: &["purple", "violet", "plum"],
        rgb: [128, 50, 168],
    },
    ColourSpec {
        name: "pink",
        synonyms: &["pink", "rose", "blush"],
        rgb: [245, 130, 180],
    },
    ColourSpec {
        name: "brown",
        synonyms: &["brown", "chocolate", "coffee"],
        rgb: [120, 72, 36],
    },
    ColourSpec {
        name: "beige",
        synonyms: &["beige", "sand", "khaki"],
        rgb: [222, 200, 160],
    },
    ColourSpec {
        name: "black",
        synonyms: &["black", "jet black", "onyx"],
        rgb: [24, 24, 26],
    },
    ColourSpec {
        name: "grey",
        synonyms: &["grey", "gray", "slate"],
        rgb: [128, 130, 134],
    },
    ColourSpec {
        name: "white",
        synonyms: &["white", "ivory", "snow white"],
        rgb: [246, 246, 242],
    },
];

/// Surface patterns drawn inside the silhouette.
pub const PATTERNS: &[&str] = &["plain", "striped", "dotted", "checked", "gradient"];

/// Words used for each pattern in titles and queries (same order as [`PATTERNS`]).
pub const PATTERN_SYNONYMS: &[&[&str]] = &[
    &["solid", "plain"],
    &["striped", "stripe", "pinstripe"],
    &["polka dot", "dotted", "spotted"],
    &["checked", "plaid", "gingham", "check"],
    &["ombre", "gradient", "colour-fade"],
];

/// Index of the `plain` pattern in [`PATTERNS`].
pub const PLAIN: usize = 0;

/// All materials (the union of the per-category lists); text-only.
pub const MATERIALS: &[&str] = &[
    "cotton",
    "linen",
    "silk",
    "wool",
    "denim",
    "leather",
    "suede",
    "canvas",
    "nylon",
    "rubber",
    "straw",
    "ceramic",
    "porcelain",
    "glass",
    "stainless steel",
    "wood",
    "plastic",
    "metal",
    "bamboo",
    "silicone",
    "aluminium",
    "polyester",
    "acetate",
];

/// Styles; text-only.
pub const STYLES: &[&str] = &[
    "casual",
    "classic",
    "vintage",
    "modern",
    "sporty",
    "elegant",
    "minimalist",
    "rustic",
];

/// Audiences of wearable products; text-only.
pub const AUDIENCES: &[&str] = &["men", "women", "kids", "unisex"];

/// Ways of writing each audience (same order as [`AUDIENCES`]): (possessive prefix, "for" phrase).
pub const AUDIENCE_PHRASES: &[&[(&str, &str)]] = &[
    &[("men's", "for men"), ("mens", "for him")],
    &[("women's", "for women"), ("ladies'", "for her")],
    &[("kids'", "for kids"), ("children's", "for children")],
    &[("unisex", "for everyone"), ("unisex", "unisex")],
];

/// Invented brand names; text-only.
pub const BRANDS: &[&str] = &[
    "Northwind",
    "Alder & Vale",
    "Lumora",
    "Kestrel",
    "Marlowe",
    "Brightfield",
    "Oakhurst",
    "Velvetine",
    "Corvo",
    "Halden",
    "Sundry Co",
    "Pellham",
];

/// Canonical category names, for label lists.
pub fn category_names() -> Vec<&'static str> {
    CATEGORIES.iter().map(|c| c.name).collect()
}

/// Canonical colour names, for label lists.
pub fn colour_names() -> Vec<&'static str> {
    COLOURS.iter().map(|c| c.name).collect()
}

/// Pattern names, for label lists.
pub fn pattern_names() -> Vec<&'static str> {
    PATTERNS.to_vec()
}

/// Index of a material name in [`MATERIALS`].
pub(crate) fn material_index(name: &str) -> usize {
    // The per-category tables are written against MATERIALS; a miss is a bug
    // in this file, caught by the `vocab_tables_are_consistent` test.
    MATERIALS.iter().position(|m| *m == name).unwrap_or(0)
}

/// Similarity in [0, 1] between two colours, used for partial relevance credit
/// ("navy" is a partial answer to "blue").
pub(crate) fn colour_similarity(a: usize, b: usize) -> f32 {
    if a == b {
        return 1.0;
    }
    let (x, y) = (COLOURS[a].name, COLOURS[b].name);
    let near = |p: &str, q: &str| (x == p && y == q) || (x == q && y == p);
    let pairs = [
        ("navy", "blue"),
        ("teal", "green"),
        ("teal", "blue"),
        ("pink", "red"),
        ("pink", "purple"),
        ("orange", "red"),
        ("orange", "yellow"),
        ("beige", "brown"),
        ("beige", "white"),
        ("grey", "black"),
        ("grey", "white"),
        ("navy", "black"),
    ];
    if pairs.iter().any(|(p, q)| near(p, q)) {
        0.4
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_tables_are_consistent() {
        for c in CATEGORIES {
            assert_eq!(c.synonyms[0].0, c.name);
            for m in c.materials {
                assert!(MATERIALS.contains(m), "{m} missing from MATERIALS");
            }
        }
        for c in COLOURS {
            assert_eq!(c.synonyms[0], c.name);
        }
        assert_eq!(PATTERNS.len(), PATTERN_SYNONYMS.len());
        assert_eq!(AUDIENCES.len(), AUDIENCE_PHRASES.len());
        assert!(CATEGORIES.len() >= 12 && COLOURS.len() >= 12 && PATTERNS.len() >= 5);
    }
}
