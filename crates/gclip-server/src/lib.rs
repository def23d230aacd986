//! `gclip serve`: a Marqo-compatible HTTP API over gclip's search engine.
//!
//! The official `marqo` Python client drives it unchanged: indexes, documents (tensor fields,
//! multimodal combinations, custom vectors), search (tensor, lexical, hybrid, filters, score
//! modifiers), embed, stats and health, with Marqo's JSON shapes and error codes. Handlers are
//! thin: they check limits and request shapes, then call [`gclip::index`] on tokio's blocking
//! pool, so embedding, redb commits and searches never run on the async reactor.
//!
//! Safe by default: binds loopback unless told otherwise, an optional API key in `x-api-key`
//! (constant-time comparison) guards every route but `/health`, image paths are read only
//! inside canonicalised `--allow-dir` roots, image URLs are fetched only with `--allow-url` (public
//! addresses only, with size, time and redirect limits: [`fetch`]), and bodies, batches, images,
//! queries and filters have limits ([`Limits`]); going over one is a 4xx naming it.
//!
//! ```no_run
//! use std::sync::Arc;
//! let clip = Arc::new(gclip::Clip::load(&gclip::ModelSource::resolve(None))?);
//! let config = gclip_server::ServerConfig::default();
//! gclip_server::run(config, clip)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod adds;
mod embedder;
mod error;
pub mod fetch;
mod handlers;
mod ui;

pub use adds::{AddBatchPolicy, AddStats};
pub use embedder::{BatchPolicy, BatchStats, ImagePolicy, ServerEmbedder};
pub use error::ApiError;
pub use fetch::{UrlFetcher, UrlPolicy};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use gclip::index::Engine;
use gclip::Clip;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The Marqo version this server reports at `GET /`: the lowest the current `marqo` client
/// (3.18) accepts without a warning. The API implemented is the one of Marqo 2.x that
/// client calls (see the README's "Server" section for what is not supported).
pub const MARQO_API_VERSION: &str = "2.23.1";

/// Request limits. Every one is a flag of `gclip serve`; the error message names it.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (`--max-body-bytes`).
    pub max_body_bytes: usize,
    /// Documents per add / update request (`--max-batch-docs`, Marqo's 128).
    pub max_batch_docs: usize,
    /// Ids per delete-batch or batch get (`--max-batch-ids`).
    pub max_batch_ids: usize,
    /// Pixels (width x height) of one image (`--max-image-pixels`).
    pub max_image_pixels: u64,
    /// Bytes of one image file or data URI (`--max-image-bytes`).
    pub max_image_bytes: u64,
    /// Characters of a text query, or of each key of a weighted query (`--max-query-chars`).
    pub max_query_chars: usize,
    /// Characters of a filter string (`--max-filter-chars`).
    pub max_filter_chars: usize,
    /// Entries of a weighted query or of an embed request (`--max-query-terms`).
    pub max_query_terms: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_batch_docs: 128,
            max_batch_ids: 10_000,
            max_image_pixels: 50_000_000,
            max_image_bytes: 32 << 20,
            max_query_chars: 10_000,
            max_filter_chars: 10_000,
            max_query_terms: 64,
        }
    }
}

/// Everything `gclip serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Required in `x-api-key` on every route but `/health` when set.
    pub api_key: Option<String>,
    /// Roots image paths may be read from (documents, queries, thumbnails of the search page).
    pub allow_dirs: Vec<PathBuf>,
    /// Image URLs are fetched under this policy when set (`--allow-url`); refused when None.
    pub urls: Option<UrlPolicy>,
    pub limits: Limits,
    pub batch: BatchPolicy,
    /// How concurrent add requests to one index are merged into one commit.
    pub add_batch: AddBatchPolicy,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8882)),
            data_dir: gclip::index::default_data_dir(),
            api_key: None,
            allow_dirs: Vec::new(),
            urls: None,
            limits: Limits::default(),
            batch: BatchPolicy::default(),
            add_batch: AddBatchPolicy::default(),
        }
    }
}

/// Errors starting the server (bad configuration, unusable data directory, bind failure).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("opening the data directory: {0}")]
    Engine(#[from] gclip::index::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the API key must not be empty")]
    EmptyApiKey,
}

/// The state every handler shares.
pub struct AppState {
    pub engine: Engine,
    pub embedder: Arc<ServerEmbedder>,
    pub limits: Limits,
    pub(crate) adds: adds::AddBatcher,
    pub(crate) add_batch: AddBatchPolicy,
    api_key: Option<Vec<u8>>,
    pub model_name: String,
}

impl AppState {
    pub fn new(config: &ServerConfig, clip: Arc<Clip>) -> Result<Arc<Self>, ServeError> {
        if config.api_key.as_deref() == Some("") {
            return Err(ServeError::EmptyApiKey);
        }
        let engine = Engine::open(&config.data_dir)?;
        let mut images = ImagePolicy::new(
            &config.allow_dirs,
            config.limits.max_image_pixels,
            config.limits.max_image_bytes,
        )?;
        images.urls = config
            .urls
            .clone()
            .map(|p| Arc::new(UrlFetcher::new(p, config.limits.max_image_bytes)));
        let model_name = clip.source().to_string();
        let embedder = Arc::new(ServerEmbedder::new(clip, images, config.batch)?);
        Ok(Arc::new(Self {
            engine,
            embedder,
            limits: config.limits.clone(),
            adds: adds::AddBatcher::default(),
            add_batch: AddBatchPolicy {
                max_docs: config.add_batch.max_docs.max(1),
                ..config.add_batch
            },
            api_key: config.api_key.as_ref().map(|k| k.as_bytes().to_vec()),
            model_name,
        }))
    }

    /// Whether `given` is the API key (always true when none is configured). Constant time
    /// in the key's content: every byte is compared whatever the first mismatch.
    pub fn key_matches(&self, given: Option<&[u8]>) -> bool {
        let Some(key) = &self.api_key else {
            return true;
        };
        let Some(given) = given else {
            return false;
        };
        let mut diff = (key.len() ^ given.len()) as u8 | u8::from(key.len() != given.len());
        for (i, k) in key.iter().enumerate() {
            let g = given.get(i).copied().unwrap_or(0);
            diff |= k ^ g;
        }
        std::hint::black_box(diff) == 0
    }
}

/// The API router on a state (no listener: tests drive it with `tower::ServiceExt::oneshot`).
pub fn router(state: Arc<AppState>) -> Router {
    use handlers as h;
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/", get(h::root))
        .route("/health", get(h::health))
        .route("/models", get(h::models))
        .route("/indexes", get(h::list_indexes))
        .route(
            "/indexes/{name}",
            post(h::create_index).delete(h::delete_index),
        )
        .route("/indexes/{name}/settings", get(h::settings))
        .route("/indexes/{name}/stats", get(h::stats))
        .route("/indexes/{name}/health", get(h::index_health))
        .route("/indexes/{name}/status", get(h::index_status))
        .route(
            "/indexes/{name}/documents",
            post(h::add_documents)
                .patch(h::update_documents)
                .get(h::get_documents),
        )
        .route(
            "/indexes/{name}/documents/delete-batch",
            post(h::delete_documents).get(h::get_document_delete_batch),
        )
        .route(
            "/indexes/{name}/documents/update",
            post(h::update_documents_list).get(h::get_document_update),
        )
        .route("/indexes/{name}/documents/{id}", get(h::get_document))
        .route("/indexes/{name}/search", post(h::search))
        .route("/indexes/{name}/embed", post(h::embed))
        .route("/ui", get(ui::page))
        .route("/ui/image", get(ui::image))
        .fallback(h::not_found)
        .method_not_allowed_fallback(h::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            h::require_api_key,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Binds, serves until SIGINT / SIGTERM, then checkpoints every open index.
pub async fn serve(config: ServerConfig, clip: Arc<Clip>) -> Result<(), ServeError> {
    let state = AppState::new(&config, clip)?;
    if !config.addr.ip().is_loopback() && config.api_key.is_none() {
        tracing::warn!(
            addr = %config.addr,
            "serving beyond loopback without an API key: anyone who can reach this address can \
             read and change every index (set --api-key or GCLIP_API_KEY)"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    // The first line on stdout: scripts and tests read the bound address (port 0 works).
    println!("gclip serve: listening on http://{addr}");
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
    axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.engine.checkpoint_all())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    Ok(())
}

/// [`serve`] on its own multi-threaded runtime (for the CLI, which has none).
pub fn run(config: ServerConfig, clip: Arc<Clip>) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gclip-serve")
        // Blocking work (embedding, commits, searches) gets its own pool; this bounds it.
        .max_blocking_threads(64)
        .build()?;
    rt.block_on(serve(config, clip))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
    // Give in-flight requests a moment; axum waits for them anyway.
    tokio::time::sleep(Duration::from_millis(10)).await;
}
