//! The model as the server hands it to the index engine: the facade's [`Clip`] behind
//! - a cross-request text batcher (one worker thread; concurrent requests' texts are embedded
//!   in one forward pass, which is several times cheaper per text than one pass each), and
//! - the image policy: paths are read only inside the canonicalised `--allow-dir` roots, URLs
//!   are fetched only with `--allow-url` (see [`crate::fetch`]), decoding runs under the
//!   server's pixel and byte limits.

use crate::fetch::UrlFetcher;
use gclip::image::{DecodeOptions, PilImage};
use gclip::index::{EmbedError, Embedder, ImageInput};
use gclip::{Clip, Embeddings};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How texts from concurrent requests are grouped into one forward pass.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// How long the worker waits for more texts once it has some (only while requests are
    /// arriving concurrently; a lone client is never delayed).
    pub window: Duration,
    /// Texts per forward pass at most (a single larger request still runs whole).
    pub max_texts: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(2),
            max_texts: 64,
        }
    }
}

/// Counters of the batcher, for `GET /health` and the load benchmark.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub passes: AtomicU64,
    pub requests: AtomicU64,
    pub texts: AtomicU64,
}

struct Job {
    texts: Vec<String>,
    reply: mpsc::SyncSender<Result<Embeddings, String>>,
}

/// Where image paths may be read from, and how big an image may be.
#[derive(Debug, Clone)]
pub struct ImagePolicy {
    /// Canonical roots; empty means no path is readable.
    pub roots: Vec<PathBuf>,
    pub max_pixels: u64,
    pub max_bytes: u64,
    /// Fetches image URLs; None (the default) refuses them.
    pub urls: Option<Arc<UrlFetcher>>,
}

impl ImagePolicy {
    /// Canonicalises each root (it must exist and be a directory).
    pub fn new(dirs: &[PathBuf], max_pixels: u64, max_bytes: u64) -> std::io::Result<Self> {
        let mut roots = Vec::new();
        for d in dirs {
            let c = std::fs::canonicalize(d).map_err(|e| {
                std::io::Error::new(e.kind(), format!("--allow-dir {}: {e}", d.display()))
            })?;
            if !c.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("--allow-dir {}: not a directory", d.display()),
                ));
            }
            roots.push(c);
        }
        Ok(Self {
            roots,
            max_pixels,
            max_bytes,
            urls: None,
        })
    }

    /// The canonical path of `p` when it is a file inside one of the roots. The same message
    /// for missing files and files outside the roots, so the server is no file-existence oracle.
    pub fn resolve(&self, p: &Path) -> Result<PathBuf, String> {
        if self.roots.is_empty() {
            return Err(format!(
                "image path {}: the server reads no image paths; start it with --allow-dir DIR \
                 or send the image as a data:image/...;base64 URI",
                p.display()
            ));
        }
        let refused = || {
            format!(
                "image path {} is not a readable file inside the --allow-dir roots",
                p.display()
            )
        };
        let c = std::fs::canonicalize(p).map_err(|_| refused())?;
        if !self.roots.iter().any(|r| c.starts_with(r)) || !c.is_file() {
            return Err(refused());
        }
        Ok(c)
    }

    fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            max_pixels: self.max_pixels,
            max_file_bytes: self.max_bytes,
            ..DecodeOptions::default()
        }
    }

    /// Decodes an image input under the policy.
    pub fn load(&self, input: &ImageInput) -> Result<PilImage, EmbedError> {
        match input {
            ImageInput::Path(p) => {
                let c = self.resolve(p).map_err(EmbedError::new)?;
                gclip::image::load_image(&c, &self.decode_options()).map_err(|e| {
                    EmbedError::with_source(format!("cannot read image {}: {e}", p.display()), e)
                })
            }
            ImageInput::Bytes(b) => self.decode_bytes(b, None),
            ImageInput::Url(u) => {
                let bytes = self.fetch(u)?;
                self.decode_bytes(&bytes, Some(u))
            }
        }
    }

    /// The bytes behind an image URL, under the URL policy.
    pub fn fetch(&self, url: &str) -> Result<Vec<u8>, EmbedError> {
        let Some(f) = &self.urls else {
            return Err(EmbedError::new(format!(
                "image URL {url}: gclip serve does not download images unless started with \
                 --allow-url; give a path inside an --allow-dir root or a \
                 data:image/...;base64 URI"
            )));
        };
        f.fetch(url).map_err(EmbedError::new)
    }

    /// Decodes image bytes (a data URI's, or a fetched URL's when `url` is given).
    fn decode_bytes(&self, b: &[u8], url: Option<&str>) -> Result<PilImage, EmbedError> {
        if b.is_empty() {
            return Err(EmbedError::new(match url {
                Some(u) => format!("image URL {u}: the server sent an empty body"),
                None => "image data URI holds no valid base64 data".into(),
            }));
        }
        if b.len() as u64 > self.max_bytes {
            return Err(EmbedError::new(format!(
                "image is {} bytes, over the limit of {} bytes (--max-image-bytes)",
                b.len(),
                self.max_bytes
            )));
        }
        gclip::image::decode_image(b, &self.decode_options()).map_err(|e| {
            let msg = match url {
                Some(u) => format!("image URL {u}: cannot decode the image it sent: {e}"),
                None => format!("cannot decode image: {e}"),
            };
            EmbedError::with_source(msg, e)
        })
    }
}

/// URLs fetched at once from one batch: enough to overlap network waits, few enough to be
/// polite to one remote host.
const PARALLEL_FETCHES: usize = 8;

/// The embedder the server attaches to every index.
pub struct ServerEmbedder {
    clip: Arc<Clip>,
    model_id: String,
    dim: usize,
    images: ImagePolicy,
    jobs: mpsc::Sender<Job>,
    stats: Arc<BatchStats>,
}

impl ServerEmbedder {
    /// Wraps a loaded model and starts the batching worker thread (it ends when the embedder
    /// is dropped).
    pub fn new(clip: Arc<Clip>, images: ImagePolicy, batch: BatchPolicy) -> std::io::Result<Self> {
        // The pin is a content hash of the weights: compute it once, not per request.
        let model_id = Embedder::model_id(&*clip);
        let dim = Clip::dim(&clip);
        let (tx, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(BatchStats::default());
        let (worker_clip, worker_stats) = (clip.clone(), stats.clone());
        std::thread::Builder::new()
            .name("gclip-text-batcher".into())
            .spawn(move || batch_worker(worker_clip, rx, batch, worker_stats))?;
        Ok(Self {
            clip,
            model_id,
            dim,
            images,
            jobs: tx,
            stats,
        })
    }

    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    pub fn images(&self) -> &ImagePolicy {
        &self.images
    }

    pub fn clip(&self) -> &Clip {
        &self.clip
    }
}

fn embed_batch(clip: &Clip, texts: &[&str]) -> Result<Embeddings, String> {
    Clip::embed_texts(clip, texts, false).map_err(|e| e.to_string())
}

fn run_jobs(clip: &Clip, jobs: Vec<Job>, stats: &BatchStats) {
    stats.passes.fetch_add(1, Ordering::Relaxed);
    stats
        .requests
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    let all: Vec<&str> = jobs
        .iter()
        .flat_map(|j| j.texts.iter().map(String::as_str))
        .collect();
    stats.texts.fetch_add(all.len() as u64, Ordering::Relaxed);
    let together =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| embed_batch(clip, &all)))
            .unwrap_or_else(|_| Err("the model panicked".into()));
    match together {
        Ok(e) if e.len() == all.len() => {
            let dim = e.dim();
            let mut rows = e.into_vec().into_iter();
            for j in jobs {
                let n = j.texts.len() * dim;
                let part: Vec<f32> = rows.by_ref().take(n).collect();
                let r = Embeddings::new(dim, part).map_err(|e| e.to_string());
                let _ = j.reply.send(r);
            }
        }
        _ => {
            // Attribute a failure to the request that caused it: each on its own.
            for j in jobs {
                let refs: Vec<&str> = j.texts.iter().map(String::as_str).collect();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    embed_batch(clip, &refs)
                }))
                .unwrap_or_else(|_| Err("the model panicked".into()));
                let _ = j.reply.send(r);
            }
        }
    }
}

fn batch_worker(
    clip: Arc<Clip>,
    rx: mpsc::Receiver<Job>,
    policy: BatchPolicy,
    stats: Arc<BatchStats>,
) {
    let mut concurrent = false;
    while let Ok(first) = rx.recv() {
        let mut n = first.texts.len();
        let mut jobs = vec![first];
        // Whatever queued up while the previous pass ran joins this one at no cost; the
        // window is waited only when requests are evidently arriving concurrently.
        let deadline = Instant::now() + policy.window;
        while n < policy.max_texts {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.texts.len();
                    jobs.push(j);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            if !concurrent || now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(j) => {
                    n += j.texts.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        concurrent = jobs.len() > 1;
        run_jobs(&clip, jobs, &stats);
    }
}

impl Embedder for ServerEmbedder {
    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
        if texts.is_empty() {
            return Embeddings::empty(self.dim)
                .map_err(|e| EmbedError::with_source("empty batch", e));
        }
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job {
            texts: texts.iter().map(|t| t.to_string()).collect(),
            reply,
        };
        self.jobs
            .send(job)
            .map_err(|_| EmbedError::new("the embedding worker has stopped"))?;
        answer
            .recv()
            .map_err(|_| EmbedError::new("the embedding worker has stopped"))?
            .map_err(|m| EmbedError::new(format!("text embedding failed: {m}")))
    }

    fn embed_images(&self, images: &[ImageInput]) -> Vec<Result<Vec<f32>, EmbedError>> {
        // Downloads wait on the network, not the CPU: they run on threads of their own, a few
        // at a time, rather than on the compute pool the decoding below runs on.
        let urls: Vec<(usize, &str)> = images
            .iter()
            .enumerate()
            .filter_map(|(k, i)| match i {
                ImageInput::Url(u) => Some((k, u.as_str())),
                _ => None,
            })
            .collect();
        let mut fetched: Vec<Option<Result<Vec<u8>, EmbedError>>> =
            (0..images.len()).map(|_| None).collect();
        for group in urls.chunks(PARALLEL_FETCHES) {
            let got: Vec<Result<Vec<u8>, EmbedError>> = std::thread::scope(|s| {
                let hs: Vec<_> = group
                    .iter()
                    .map(|(_, u)| s.spawn(|| self.images.fetch(u)))
                    .collect();
                hs.into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(EmbedError::new("the image download failed")))
                    })
                    .collect()
            });
            for ((k, _), r) in group.iter().zip(got) {
                fetched[*k] = Some(r);
            }
        }
        // Decoding shares the engine's threads (`--threads` in all).
        let pixels: Vec<Result<Vec<f32>, EmbedError>> = self.clip.on_pool(|| {
            images
                .par_iter()
                .zip(fetched.into_par_iter())
                .map(|(i, f)| {
                    let img = match (i, f) {
                        (ImageInput::Url(u), Some(bytes)) => {
                            self.images.decode_bytes(&bytes?, Some(u))?
                        }
                        _ => self.images.load(i)?,
                    };
                    Ok(self.clip.preprocessor().preprocess_image(&img))
                })
                .collect()
        });
        let ok: Vec<f32> = pixels
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .flatten()
            .copied()
            .collect();
        if ok.is_empty() {
            return pixels.into_iter().map(|p| p.map(|_| Vec::new())).collect();
        }
        match self.clip.embed_pixels(&ok, false) {
            Ok(e) => {
                let mut rows = e
                    .rows()
                    .map(<[f32]>::to_vec)
                    .collect::<Vec<_>>()
                    .into_iter();
                pixels
                    .into_iter()
                    .map(|p| {
                        p.and_then(|_| {
                            rows.next().ok_or_else(|| {
                                EmbedError::new("the model returned too few vectors")
                            })
                        })
                    })
                    .collect()
            }
            Err(e) => {
                let msg = e.to_string();
                pixels
                    .into_iter()
                    .map(|p| {
                        p.and(Err(EmbedError::new(format!(
                            "image embedding failed: {msg}"
                        ))))
                    })
                    .collect()
            }
        }
    }

    fn count_tokens(&self, text: &str) -> usize {
        Embedder::count_tokens(&*self.clip, text)
    }

    fn context_length(&self) -> usize {
        Embedder::context_length(&*self.clip)
    }
}
