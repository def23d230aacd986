//! The demo's HTML page.

use std::fmt::Write as _;
use std::path::Path;

use gclip_synth::Product;

use super::{all_ok, ResultBlock};
use crate::error::{io_err, Result};

/// Everything the HTML page shows.
#[derive(Default)]
pub(super) struct Page {
    pub intro: String,
    pub sections: Vec<(String, String)>,
}

pub(super) fn html_blocks(blocks: &[ResultBlock], products: &[Product], rel: &[String]) -> String {
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

pub(super) fn esc(s: &str) -> String {
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

pub(super) fn write_page(path: &Path, page: &Page) -> Result<()> {
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
    std::fs::write(path, s).map_err(io_err(path))
}
