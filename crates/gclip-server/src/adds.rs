//! Group commit of add-documents requests: concurrent adds to one index are merged into one
//! `add_documents` call, so their texts and images share the model's forward passes and their
//! documents share one redb transaction.
//!
//! Each index has a FIFO queue and at most one worker (a blocking-pool task) draining it. A
//! request that finds the queue idle starts the worker and runs at once, alone: a lone client
//! is never delayed. Requests that arrive while a batch is being embedded and committed wait
//! in the queue and go together in the next one. Every request is answered with its own items
//! only after the commit that holds its documents, exactly as when it ran on its own, so an
//! acknowledged add is as durable as before.
//!
//! Only a prefix of the queue is merged, and only requests with the same options
//! (`tensorFields`, `mappings`, `textChunkPrefix`) whose document ids are distinct within and
//! across them: that keeps the order of requests (a later request's version of a document
//! still wins) and gives every document exactly one item. A batch that fails as a whole is
//! retried request by request, so an error is attributed to the request that caused it.

use crate::error::ApiError;
use crate::AppState;
use gclip::index::{AddDocuments, BatchResponse};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How add requests are merged.
#[derive(Debug, Clone, Copy)]
pub struct AddBatchPolicy {
    /// Documents in one merged call at most (`--max-add-batch-docs`; a single larger request
    /// still runs whole). 1 turns merging off.
    pub max_docs: usize,
    /// How long the worker waits for more requests when the queue holds just one and the
    /// previous batch merged several (`--add-batch-window-ms`): only under concurrent load.
    pub window: Duration,
}

impl Default for AddBatchPolicy {
    fn default() -> Self {
        Self {
            max_docs: 512,
            window: Duration::from_millis(2),
        }
    }
}

/// Counters for `GET /health` and the load benchmark.
#[derive(Debug, Default)]
pub struct AddStats {
    /// `add_documents` calls made (merged batches, plus retries one by one).
    pub batches: AtomicU64,
    /// Add requests answered.
    pub requests: AtomicU64,
}

type Answer = oneshot::Sender<Result<BatchResponse, ApiError>>;

struct Job {
    req: AddDocuments,
    /// The string `_id`s of its documents; None when two of them share one (never merged).
    ids: Option<Vec<String>>,
    reply: Answer,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// A worker is draining this queue.
    running: bool,
    /// The previous batch merged more than one request.
    concurrent: bool,
}

/// The per-index queues.
#[derive(Default)]
pub struct AddBatcher {
    queues: Mutex<HashMap<String, Queue>>,
    arrived: Condvar,
    pub stats: AddStats,
}

fn ids_of(req: &AddDocuments) -> Option<Vec<String>> {
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for d in &req.documents {
        if let Some(Value::String(id)) = d.get("_id") {
            if !seen.insert(id.as_str()) {
                return None;
            }
            ids.push(id.clone());
        }
    }
    Some(ids)
}

fn same_options(a: &AddDocuments, b: &AddDocuments) -> bool {
    a.tensor_fields == b.tensor_fields
        && a.text_chunk_prefix == b.text_chunk_prefix
        && a.use_existing_tensors == b.use_existing_tensors
        && a.image_download_headers == b.image_download_headers
        && serde_json::to_value(&a.mappings).ok() == serde_json::to_value(&b.mappings).ok()
}

impl AddBatcher {
    /// Adds `req` to `index`, merged with concurrent requests where possible; answers once
    /// the documents are committed.
    pub async fn add(
        st: &Arc<AppState>,
        index: &str,
        req: AddDocuments,
    ) -> Result<BatchResponse, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            ids: ids_of(&req),
            req,
            reply,
        };
        let start = {
            let mut qs = st.adds.queues.lock().unwrap_or_else(|e| e.into_inner());
            let q = qs.entry(index.to_string()).or_default();
            q.jobs.push_back(job);
            !std::mem::replace(&mut q.running, true)
        };
        st.adds.arrived.notify_all();
        if start {
            let (st, index) = (st.clone(), index.to_string());
            tokio::task::spawn_blocking(move || {
                let _guard = DrainGuard {
                    st: &st,
                    index: &index,
                };
                drain(&st, &index)
            });
        }
        answer
            .await
            .map_err(|_| ApiError::internal("the add worker stopped before answering"))?
    }
}

/// Should the worker ever unwind, its queue is dropped (its requests answer 500) rather than
/// left marked running with nobody to drain it.
struct DrainGuard<'a> {
    st: &'a AppState,
    index: &'a str,
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut qs = self
                .st
                .adds
                .queues
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            qs.remove(self.index);
        }
    }
}

/// Runs batches from the queue of `index` until it is empty.
fn drain(st: &Arc<AppState>, index: &str) {
    let b = &st.adds;
    let policy = st.add_batch;
    loop {
        let batch = {
            let mut qs = b.queues.lock().unwrap_or_else(|e| e.into_inner());
            let Some(q) = qs.get_mut(index) else { return };
            if q.jobs.is_empty() {
                qs.remove(index);
                return;
            }
            if q.concurrent && q.jobs.len() == 1 && policy.max_docs > 1 {
                // Requests are evidently arriving together: give the next one a moment.
                let deadline = Instant::now() + policy.window;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    qs = b
                        .arrived
                        .wait_timeout(qs, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    if qs.get(index).is_none_or(|q| q.jobs.len() > 1) {
                        break;
                    }
                }
            }
            let Some(q) = qs.get_mut(index) else { return };
            let batch = take_batch(&mut q.jobs, policy.max_docs);
            q.concurrent = batch.len() > 1;
            batch
        };
        run(st, index, batch);
    }
}

/// The longest prefix of `jobs` that can go in one call.
fn take_batch(jobs: &mut VecDeque<Job>, max_docs: usize) -> Vec<Job> {
    let Some(first) = jobs.pop_front() else {
        return Vec::new();
    };
    let mut docs = first.req.documents.len();
    let Some(first_ids) = &first.ids else {
        return vec![first];
    };
    let mut ids: HashSet<String> = first_ids.iter().cloned().collect();
    let mut batch = vec![first];
    while let Some(next) = jobs.front() {
        let Some(next_ids) = &next.ids else { break };
        if docs + next.req.documents.len() > max_docs
            || !same_options(&batch[0].req, &next.req)
            || next_ids.iter().any(|i| ids.contains(i))
        {
            break;
        }
        ids.extend(next_ids.iter().cloned());
        docs += next.req.documents.len();
        batch.extend(jobs.pop_front());
    }
    batch
}

fn add_one(st: &AppState, index: &str, req: &AddDocuments) -> Result<BatchResponse, ApiError> {
    st.adds.stats.batches.fetch_add(1, Ordering::Relaxed);
    let run = || -> Result<BatchResponse, ApiError> {
        Ok(crate::handlers::open(st, index)?.add_documents(req)?)
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        tracing::error!(index, "add_documents panicked");
        Err(ApiError::internal(
            "adding the documents failed unexpectedly",
        ))
    })
}

fn run(st: &AppState, index: &str, batch: Vec<Job>) {
    st.adds
        .stats
        .requests
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    if batch.len() == 1 {
        for j in batch {
            let _ = j.reply.send(add_one(st, index, &j.req));
        }
        return;
    }
    let counts: Vec<usize> = batch.iter().map(|j| j.req.documents.len()).collect();
    let mut merged = AddDocuments {
        documents: Vec::with_capacity(counts.iter().sum()),
        ..batch[0].req.clone()
    };
    for j in &batch {
        merged.documents.extend(j.req.documents.iter().cloned());
    }
    match add_one(st, index, &merged) {
        // With distinct ids every document has exactly one item, in order.
        Ok(r) if r.items.len() == merged.documents.len() => {
            let mut items = r.items.into_iter();
            for (j, n) in batch.into_iter().zip(counts) {
                let mine: Vec<_> = items.by_ref().take(n).collect();
                let _ = j.reply.send(Ok(BatchResponse {
                    errors: mine.iter().any(|i| !i.is_ok()),
                    items: mine,
                    processing_time_ms: r.processing_time_ms,
                }));
            }
        }
        Ok(r) => {
            // Not expected; answering with wrong items would be worse than the extra work,
            // but the documents are committed, so report rather than re-add.
            tracing::error!(
                index,
                items = r.items.len(),
                documents = merged.documents.len(),
                "a merged add returned an unexpected number of items"
            );
            for j in batch {
                let _ = j.reply.send(Err(ApiError::internal(
                    "a merged add returned an unexpected number of items",
                )));
            }
        }
        Err(_) => {
            // A request-level error (bad mapping, unknown index, ...): find whose.
            for j in batch {
                let _ = j.reply.send(add_one(st, index, &j.req));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(
        docs: Value,
        fields: &[&str],
    ) -> (Job, oneshot::Receiver<Result<BatchResponse, ApiError>>) {
        let req = AddDocuments {
            documents: docs.as_array().unwrap().clone(),
            tensor_fields: fields.iter().map(|s| s.to_string()).collect(),
            ..AddDocuments::default()
        };
        let (reply, rx) = oneshot::channel();
        (
            Job {
                ids: ids_of(&req),
                req,
                reply,
            },
            rx,
        )
    }

    #[test]
    fn merges_a_compatible_prefix_only() {
        let mut q = VecDeque::new();
        let mut keep = Vec::new();
        for (docs, fields) in [
            (json!([{"_id": "a"}, {"title": "no id"}]), &["title"][..]),
            (json!([{"_id": "b"}]), &["title"][..]),
            // Collides with "a": starts the next batch.
            (json!([{"_id": "a"}]), &["title"][..]),
            (json!([{"_id": "c"}]), &["title"][..]),
            // Other options: its own batch.
            (json!([{"_id": "d"}]), &["image"][..]),
            // Two documents with one id: never merged.
            (json!([{"_id": "e"}, {"_id": "e"}]), &["image"][..]),
            (json!([{"_id": "f"}]), &["image"][..]),
        ] {
            let (j, rx) = job(docs, fields);
            q.push_back(j);
            keep.push(rx);
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            let b = take_batch(&mut q, 100);
            (!b.is_empty()).then_some(b.len())
        })
        .collect();
        assert_eq!(sizes, [2, 2, 1, 1, 1]);
    }

    #[test]
    fn the_document_limit_splits_batches() {
        let mut q = VecDeque::new();
        let mut keep = Vec::new();
        for i in 0..5 {
            let (j, rx) = job(
                json!([{"_id": format!("x{i}")}, {"_id": format!("y{i}")}]),
                &[],
            );
            q.push_back(j);
            keep.push(rx);
        }
        assert_eq!(take_batch(&mut q, 4).len(), 2);
        assert_eq!(take_batch(&mut q, 1).len(), 1);
        assert_eq!(take_batch(&mut q, 100).len(), 2);
        assert!(q.is_empty());
    }
}
