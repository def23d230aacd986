//! `gclip serve`: the Marqo-compatible HTTP server (crates/gclip-server) on a loaded model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use gclip_server::{AddBatchPolicy, BatchPolicy, Limits, ServerConfig, UrlPolicy};

use crate::common::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (port 0: any free port; the first stdout line names it).
    #[arg(long, default_value = "127.0.0.1:8882")]
    addr: SocketAddr,
    /// Data directory (default: $GCLIP_DATA_DIR, else $XDG_DATA_HOME/gclip, else
    /// ~/.local/share/gclip).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Require this key in the x-api-key header on every route but /health.
    #[arg(long, env = "GCLIP_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// A directory whose images may be read by path (documents, queries, thumbnails);
    /// repeatable. Without one, images come only as data:image/...;base64 URIs.
    #[arg(long = "allow-dir", value_name = "DIR")]
    allow_dirs: Vec<PathBuf>,
    /// Download http(s) image URLs in documents and queries. Only public addresses are
    /// fetched (loopback, private, link-local and other non-global ones are refused, on
    /// every redirect), under --max-image-bytes, --url-timeout-ms and --max-url-redirects.
    #[arg(long)]
    allow_url: bool,
    /// Total time for one image URL (connecting, redirects, body), in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    url_timeout_ms: u64,
    /// Redirects followed at most for one image URL.
    #[arg(long, default_value_t = 3, value_name = "N")]
    max_url_redirects: u32,
    /// TESTING ONLY (hidden): also fetch from loopback addresses on this port, so tests can
    /// serve images from 127.0.0.1. Never use it in production.
    #[arg(
        long = "test-allow-url-loopback-port",
        hide = true,
        value_name = "PORT"
    )]
    test_loopback_ports: Vec<u16>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Documents per add / update request.
    #[arg(long, default_value_t = Limits::default().max_batch_docs)]
    max_batch_docs: usize,
    /// Ids per delete-batch or batch get request.
    #[arg(long, default_value_t = Limits::default().max_batch_ids)]
    max_batch_ids: usize,
    /// Largest image, in pixels (width x height).
    #[arg(long, default_value_t = Limits::default().max_image_pixels)]
    max_image_pixels: u64,
    /// Largest image file or data URI, in bytes.
    #[arg(long, default_value_t = Limits::default().max_image_bytes)]
    max_image_bytes: u64,
    /// Longest text query, in characters.
    #[arg(long, default_value_t = Limits::default().max_query_chars)]
    max_query_chars: usize,
    /// Longest filter string, in characters.
    #[arg(long, default_value_t = Limits::default().max_filter_chars)]
    max_filter_chars: usize,
    /// Most entries of a weighted query or an embed request.
    #[arg(long, default_value_t = Limits::default().max_query_terms)]
    max_query_terms: usize,
    /// Milliseconds the text batcher waits for concurrent requests to join a forward pass.
    #[arg(long, default_value_t = 2)]
    batch_window_ms: u64,
    /// Most texts in one forward pass of the batcher.
    #[arg(long, default_value_t = 64)]
    max_text_batch: usize,
    /// Most documents in one merged commit of concurrent add requests to an index (1: each
    /// request commits on its own).
    #[arg(long, default_value_t = AddBatchPolicy::default().max_docs)]
    max_add_batch_docs: usize,
    /// Milliseconds the add merger waits for another request while adds arrive concurrently.
    #[arg(long, default_value_t = 2)]
    add_batch_window_ms: u64,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if !a.test_loopback_ports.is_empty() {
        tracing::warn!(
            ports = ?a.test_loopback_ports,
            "--test-allow-url-loopback-port is for tests only: image URLs may reach this \
             machine's own services on those ports"
        );
    }
    let clip = Arc::new(a.model.load()?);
    let config = ServerConfig {
        addr: a.addr,
        data_dir: a.data_dir.unwrap_or_else(gclip::index::default_data_dir),
        api_key: a.api_key.filter(|k| !k.is_empty()),
        allow_dirs: a.allow_dirs,
        urls: a.allow_url.then(|| UrlPolicy {
            timeout: std::time::Duration::from_millis(a.url_timeout_ms),
            max_redirects: a.max_url_redirects,
            test_loopback_ports: a.test_loopback_ports,
        }),
        limits: Limits {
            max_body_bytes: a.max_body_bytes,
            max_batch_docs: a.max_batch_docs,
            max_batch_ids: a.max_batch_ids,
            max_image_pixels: a.max_image_pixels,
            max_image_bytes: a.max_image_bytes,
            max_query_chars: a.max_query_chars,
            max_filter_chars: a.max_filter_chars,
            max_query_terms: a.max_query_terms,
        },
        batch: BatchPolicy {
            window: std::time::Duration::from_millis(a.batch_window_ms),
            max_texts: a.max_text_batch.max(1),
        },
        add_batch: AddBatchPolicy {
            max_docs: a.max_add_batch_docs.max(1),
            window: std::time::Duration::from_millis(a.add_batch_window_ms),
        },
    };
    gclip_server::run(config, clip).context("gclip serve")
}
