//! `gclip similarity`: cosine matrix between two lists of texts and/or images.

use anyhow::bail;

use crate::common::{self, Item, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Row items: texts or image paths (`text:` / `image:` prefixes to be explicit).
    #[arg(long, num_args = 1.., required = true, value_name = "ITEM")]
    a: Vec<String>,
    /// Column items, as --a.
    #[arg(long, num_args = 1.., required = true, value_name = "ITEM")]
    b: Vec<String>,
    /// Also print row-wise softmax probabilities at the model's logit scale (or --scale).
    #[arg(long)]
    softmax: bool,
    /// Softmax scale instead of the model's learned logit scale (Marqo's demo uses 10).
    #[arg(long)]
    scale: Option<f32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.scale.is_some_and(|s| !s.is_finite() || s <= 0.0) {
        bail!("--scale must be a positive number");
    }
    let a: Vec<Item> = args
        .a
        .iter()
        .map(|s| Item::parse(s))
        .collect::<anyhow::Result<_>>()?;
    let b: Vec<Item> = args
        .b
        .iter()
        .map(|s| Item::parse(s))
        .collect::<anyhow::Result<_>>()?;
    let clip = args.model.load()?;
    let ea = common::embed_items(&clip, &a, true)?;
    let eb = common::embed_items(&clip, &b, true)?;
    let cos = gclip::cosine_matrix(&ea, &eb)?;
    let scale = match args.scale {
        Some(s) => s,
        None => clip.logit_scale()?,
    };
    let probs = args.softmax.then(|| gclip::softmax_rows(&cos, scale));
    if args.json {
        let mut out = serde_json::json!({
            "a": a.iter().map(Item::label).collect::<Vec<_>>(),
            "b": b.iter().map(Item::label).collect::<Vec<_>>(),
            "cosine": cos,
        });
        if let Some(p) = &probs {
            out["scale"] = scale.into();
            out["probabilities"] = serde_json::to_value(p)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_table("cosine similarity", &a, &b, &cos);
    if let Some(p) = &probs {
        println!();
        print_table(
            &format!("softmax probabilities (scale {scale:.2})"),
            &a,
            &b,
            p,
        );
    }
    Ok(())
}

fn print_table(title: &str, a: &[Item], b: &[Item], m: &[Vec<f32>]) {
    let short = |s: String| {
        if s.chars().count() > 28 {
            format!("{}…", s.chars().take(27).collect::<String>())
        } else {
            s
        }
    };
    let row_w = a
        .iter()
        .map(|i| short(i.label()).chars().count())
        .max()
        .unwrap_or(0)
        .max(title.len().min(28));
    println!("{title}");
    print!("{:row_w$}", "");
    for item in b {
        print!("  {:>28}", short(item.label()));
    }
    println!();
    for (item, row) in a.iter().zip(m) {
        print!("{:row_w$}", short(item.label()));
        for v in row {
            print!("  {v:>28.4}");
        }
        println!();
    }
}
