//! `gclip tokenize`: CLIP BPE token ids as JSON, one array per text.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gclip::tokenizer::{Tokenizer, DEFAULT_CONTEXT_LENGTH};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory: its tokenizer.json or vocab.json + merges.txt are used
    /// when present (else the built-in OpenAI vocabulary), and its config
    /// supplies the context length.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Context length (default: from the model's config, else 77).
    #[arg(long)]
    context_length: Option<usize>,
    /// Print only SOT + ids + EOT (truncated), without zero padding.
    #[arg(long)]
    no_pad: bool,
    /// Texts to tokenize.
    #[arg(required = true)]
    texts: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let tokenizer = match &args.model {
        Some(dir) if has_tokenizer_files(dir) => Tokenizer::from_dir(dir)
            .with_context(|| format!("loading the tokenizer of {}", dir.display()))?,
        Some(dir) if !dir.exists() => anyhow::bail!("model path {} does not exist", dir.display()),
        _ => Tokenizer::openai(),
    };
    let context_length = match args.context_length {
        Some(n) => n,
        None => args
            .model
            .as_deref()
            .and_then(context_length_from_config)
            .unwrap_or(DEFAULT_CONTEXT_LENGTH),
    };
    anyhow::ensure!(
        context_length >= 2,
        "--context-length must be at least 2 (SOT and EOT)"
    );
    let mut out = String::new();
    for text in &args.texts {
        let ids = if args.no_pad {
            tokenizer.tokenize_unpadded(text, context_length)
        } else {
            tokenizer.tokenize(text, context_length)
        };
        out.push_str(&serde_json::to_string(&ids)?);
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}

fn has_tokenizer_files(dir: &Path) -> bool {
    dir.is_dir()
        && (dir.join("tokenizer.json").is_file()
            || (dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file()))
}

/// Context length from `open_clip_config.json` (`model_cfg.text_cfg.context_length`)
/// or a Hugging Face `config.json` (`text_config.max_position_embeddings`).
fn context_length_from_config(dir: &Path) -> Option<usize> {
    let read = |name: &str| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join(name)).ok()?;
        serde_json::from_str(&text).ok()
    };
    let as_len = |v: &serde_json::Value| v.as_u64().and_then(|n| usize::try_from(n).ok());
    if let Some(cfg) = read("open_clip_config.json") {
        if let Some(n) = as_len(&cfg["model_cfg"]["text_cfg"]["context_length"]) {
            return Some(n);
        }
    }
    let cfg = read("config.json")?;
    as_len(&cfg["text_config"]["max_position_embeddings"])
        .or_else(|| as_len(&cfg["max_position_embeddings"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gclip-tokenize-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn context_length_read_from_open_clip_then_hf_config() {
        let dir = temp_dir("cfg");
        assert_eq!(context_length_from_config(&dir), None);
        std::fs::write(
            dir.join("config.json"),
            r#"{"text_config": {"max_position_embeddings": 64}}"#,
        )
        .unwrap();
        assert_eq!(context_length_from_config(&dir), Some(64));
        std::fs::write(
            dir.join("open_clip_config.json"),
            r#"{"model_cfg": {"text_cfg": {"context_length": 32}}}"#,
        )
        .unwrap();
        assert_eq!(context_length_from_config(&dir), Some(32));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
