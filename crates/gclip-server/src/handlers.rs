//! Route handlers: parse and check the request, run the index call on the blocking pool,
//! shape the reply as Marqo does.

use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gclip::index::{AddDocuments, Embedder, Index, IndexSettings, Query, SearchRequest};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

type S = State<Arc<AppState>>;
type Reply = Result<Response, ApiError>;

/// The raw body, with the body-limit rejection turned into a Marqo-shaped error naming the
/// limit.
pub struct Body(pub Bytes);

impl FromRequest<Arc<AppState>> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = state.limits.max_body_bytes;
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request_too_large",
                        format!(
                            "request body is over the limit of {limit} bytes (--max-body-bytes)"
                        ),
                    )
                } else {
                    ApiError::bad_request(format!("cannot read the request body: {e}"))
                }
            })
    }
}

/// Parses a JSON body; an empty body is `empty` (None: required).
fn parse_json(b: &Bytes, empty: Option<Value>) -> Result<Value, ApiError> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return empty.ok_or_else(|| ApiError::bad_request("the request needs a JSON body"));
    }
    serde_json::from_slice(b)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))
}

/// The client sends explicit nulls for options it was not given: drop them.
fn strip_nulls(m: &mut Map<String, Value>) {
    m.retain(|_, v| !v.is_null());
}

fn object(v: Value, what: &str) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::unprocessable(format!(
            "{what} must be a JSON object, got {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Runs blocking work (model, redb, search) off the reactor; a panic becomes a 500, never a
/// crash.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "worker task failed");
        ApiError::internal(format!("the request's worker failed: {e}"))
    })?
}

pub(crate) fn open(st: &AppState, name: &str) -> Result<Arc<Index>, ApiError> {
    let e: Arc<dyn Embedder> = st.embedder.clone();
    Ok(st.engine.index(name, Some(e))?)
}

fn query_flag(q: &Option<String>, key: &str) -> bool {
    q.as_deref()
        .unwrap_or("")
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .any(|(k, v)| k == key && matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | ""))
}

fn ok(v: Value) -> Reply {
    Ok(Json(v).into_response())
}

// ---------------------------------------------------------------------------------------
// Middleware and fallbacks

pub async fn require_api_key(State(st): S, req: Request, next: Next) -> Response {
    // Health for probes; the page shell holds no data (its API calls carry the key).
    if matches!(req.uri().path(), "/health" | "/ui") {
        return next.run(req).await;
    }
    let given = req.headers().get("x-api-key").map(|v| v.as_bytes());
    if st.key_matches(given) {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key: send it in the x-api-key header",
        )
        .into_response()
    }
}

pub async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

pub async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

// ---------------------------------------------------------------------------------------
// Root, health, models

pub async fn root(headers: HeaderMap) -> Response {
    // Browsers get the search page, API clients the version JSON the client checks.
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("text/html") {
        return axum::response::Redirect::to("/ui").into_response();
    }
    Json(json!({
        "message": "Welcome to gclip, a Marqo-compatible search server",
        "version": crate::MARQO_API_VERSION,
        "gclip": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

fn health_body() -> Value {
    json!({
        "status": "green",
        "inference": {"status": "green"},
        "backend": {"status": "green", "memoryIsAvailable": true, "storageIsAvailable": true},
    })
}

pub async fn health(State(st): S) -> Json<Value> {
    let mut b = health_body();
    let s = st.embedder.stats();
    use std::sync::atomic::Ordering::Relaxed;
    b["gclip"] = json!({
        "textBatches": s.passes.load(Relaxed),
        "textRequests": s.requests.load(Relaxed),
        "texts": s.texts.load(Relaxed),
        "addBatches": st.adds.stats.batches.load(Relaxed),
        "addRequests": st.adds.stats.requests.load(Relaxed),
    });
    Json(b)
}

pub async fn models(State(st): S) -> Json<Value> {
    Json(json!({"models": [{"model_name": st.model_name, "model_device": "cpu"}]}))
}

// ---------------------------------------------------------------------------------------
// Indexes

pub async fn list_indexes(State(st): S) -> Reply {
    let names = blocking(move || Ok(st.engine.list()?)).await?;
    let results: Vec<Value> = names.into_iter().map(|n| json!({"indexName": n})).collect();
    ok(json!({ "results": results }))
}

/// Keys Marqo Cloud and newer servers know that mean nothing here when absent or default.
const IGNORED_SETTINGS: [&str; 5] = [
    "storageClass",
    "numberOfShards",
    "numberOfReplicas",
    "inferenceType",
    "numberOfInferences",
];

pub async fn create_index(State(st): S, Path(name): Path<String>, Body(b): Body) -> Reply {
    let mut m = object(parse_json(&b, Some(json!({})))?, "index settings")?;
    strip_nulls(&mut m);
    for k in IGNORED_SETTINGS {
        m.remove(k);
    }
    if m.get("treatUrlsAndPointersAsMedia") == Some(&Value::Bool(false)) {
        m.remove("treatUrlsAndPointersAsMedia");
    }
    if let Some(Value::String(model)) = m.get("model") {
        if *model != st.model_name {
            tracing::warn!(
                index = %name, requested = %model, served = %st.model_name,
                "the index asks for another model; it is pinned to the served model"
            );
        }
    }
    let settings = IndexSettings::from_json(&Value::Object(m))?;
    let n = name.clone();
    blocking(move || {
        let e: Arc<dyn Embedder> = st.embedder.clone();
        st.engine.create_index(&n, settings, e)?;
        Ok(())
    })
    .await?;
    ok(json!({"acknowledged": true, "index": name}))
}

pub async fn delete_index(State(st): S, Path(name): Path<String>) -> Reply {
    blocking(move || Ok(st.engine.drop_index(&name)?)).await?;
    ok(json!({"acknowledged": true}))
}

pub async fn settings(State(st): S, Path(name): Path<String>) -> Reply {
    let s = blocking(move || Ok(open(&st, &name)?.settings().clone())).await?;
    let v = serde_json::to_value(&s).map_err(|e| ApiError::internal(e.to_string()))?;
    ok(v)
}

fn mem_total_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub async fn stats(State(st): S, Path(name): Path<String>) -> Reply {
    let s = blocking(move || Ok(open(&st, &name)?.stats()?)).await?;
    let mem = mem_total_bytes()
        .map(|t| s.bytes_in_memory as f64 * 100.0 / t as f64)
        .unwrap_or(0.0);
    ok(json!({
        "numberOfDocuments": s.number_of_documents,
        "numberOfVectors": s.number_of_vectors,
        "backend": {"memoryUsedPercentage": mem, "storageUsedPercentage": 0.0},
        "gclip": {"graphNodes": s.graph_nodes, "bytesOnDisk": s.bytes_on_disk, "bytesInMemory": s.bytes_in_memory},
    }))
}

/// Marqo Cloud's readiness poll (the client polls it after creating an index when it has an
/// API key): a gclip index is ready as soon as it exists.
pub async fn index_status(State(st): S, Path(name): Path<String>) -> Reply {
    blocking(move || open(&st, &name).map(|_| ())).await?;
    ok(json!({"indexStatus": "READY"}))
}

pub async fn index_health(State(st): S, Path(name): Path<String>) -> Reply {
    blocking(move || open(&st, &name).map(|_| ())).await?;
    ok(health_body())
}

// ---------------------------------------------------------------------------------------
// Documents

fn check_batch(docs: &Value, limit: usize) -> Result<(), ApiError> {
    match docs {
        Value::Array(a) if a.is_empty() => Err(ApiError::bad_request(
            "received an empty documents list: send 1 to the batch limit of documents",
        )),
        Value::Array(a) if a.len() > limit => Err(ApiError::limit(format!(
            "{} documents in one request, over the limit of {limit} (--max-batch-docs); \
             the client splits larger calls with client_batch_size",
            a.len()
        ))),
        Value::Array(_) => Ok(()),
        other => Err(ApiError::unprocessable(format!(
            "`documents` must be a list of objects, got {}",
            kind(other)
        ))),
    }
}

fn batch_reply(name: &str, r: gclip::index::BatchResponse) -> Reply {
    ok(json!({
        "errors": r.errors,
        "processingTimeMs": r.processing_time_ms,
        "index_name": name,
        "items": r.items,
    }))
}

pub async fn add_documents(State(st): S, Path(name): Path<String>, Body(b): Body) -> Reply {
    let mut m = object(parse_json(&b, None)?, "the add documents body")?;
    strip_nulls(&mut m);
    for k in ["modelAuth", "device"] {
        m.remove(k);
    }
    for k in ["imageDownloadHeaders", "mediaDownloadHeaders"] {
        match m.get(k) {
            Some(Value::Object(h)) if h.is_empty() => {
                m.remove(k);
            }
            Some(_) => {
                return Err(ApiError::invalid(format!(
                "`{k}` is not supported: gclip serve sends no custom headers with image downloads"
            )))
            }
            None => {}
        }
    }
    let docs = m
        .get("documents")
        .ok_or_else(|| ApiError::unprocessable("the body needs `documents`"))?;
    check_batch(docs, st.limits.max_batch_docs)?;
    if !m.contains_key("tensorFields") {
        return Err(ApiError::invalid(
            "`tensorFields` is required for unstructured indexes (it may be [])",
        ));
    }
    let req: AddDocuments = serde_json::from_value(Value::Object(m))
        .map_err(|e| ApiError::unprocessable(format!("add documents body: {e}")))?;
    let r = crate::adds::AddBatcher::add(&st, &name, req).await?;
    batch_reply(&name, r)
}

async fn update(st: Arc<AppState>, name: String, docs: Value) -> Reply {
    check_batch(&docs, st.limits.max_batch_docs)?;
    let Value::Array(docs) = docs else {
        unreachable!("checked by check_batch")
    };
    let n = name.clone();
    let r = blocking(move || Ok(open(&st, &n)?.update_documents(&docs)?)).await?;
    batch_reply(&name, r)
}

pub async fn update_documents(State(st): S, Path(name): Path<String>, Body(b): Body) -> Reply {
    let mut m = object(parse_json(&b, None)?, "the update documents body")?;
    strip_nulls(&mut m);
    let docs = m
        .remove("documents")
        .ok_or_else(|| ApiError::unprocessable("the body needs `documents`"))?;
    if let Some(k) = m.keys().next() {
        return Err(ApiError::unprocessable(format!(
            "unknown field `{k}` in the update documents body"
        )));
    }
    update(st, name, docs).await
}

/// The client's older form: `POST .../documents/update` with a list of documents.
pub async fn update_documents_list(State(st): S, Path(name): Path<String>, Body(b): Body) -> Reply {
    update(st, name, parse_json(&b, None)?).await
}

fn id_list(v: Value, limit: usize) -> Result<Vec<String>, ApiError> {
    let Value::Array(a) = v else {
        return Err(ApiError::unprocessable(format!(
            "the body must be a JSON list of document ids, got {}",
            kind(&v)
        )));
    };
    if a.len() > limit {
        return Err(ApiError::limit(format!(
            "{} ids in one request, over the limit of {limit} (--max-batch-ids)",
            a.len()
        )));
    }
    a.into_iter()
        .map(|x| match x {
            Value::String(s) => Ok(s),
            other => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_document_id",
                format!("document ids must be strings, got {}", kind(&other)),
            )),
        })
        .collect()
}

pub async fn get_document(
    State(st): S,
    Path((name, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Reply {
    let facets = query_flag(&q, "expose_facets");
    let d = blocking(move || Ok(open(&st, &name)?.get_document(&id, facets)?)).await?;
    ok(Value::Object(d))
}

/// `GET .../documents/delete-batch` and `.../update` are documents named so.
pub async fn get_document_delete_batch(st: S, Path(name): Path<String>, q: RawQuery) -> Reply {
    get_document(st, Path((name, "delete-batch".into())), q).await
}

pub async fn get_document_update(st: S, Path(name): Path<String>, q: RawQuery) -> Reply {
    get_document(st, Path((name, "update".into())), q).await
}

pub async fn get_documents(
    State(st): S,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    Body(b): Body,
) -> Reply {
    let facets = query_flag(&q, "expose_facets");
    let ids = id_list(parse_json(&b, None)?, st.limits.max_batch_ids)?;
    let docs = blocking(move || Ok(open(&st, &name)?.get_documents(&ids, facets))).await?;
    let errors = docs
        .iter()
        .any(|d| d.get("_found") == Some(&Value::Bool(false)));
    ok(json!({"errors": errors, "results": docs}))
}

/// RFC 3339 UTC time (what Marqo's delete reply carries), without a date library.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

pub async fn delete_documents(State(st): S, Path(name): Path<String>, Body(b): Body) -> Reply {
    let ids = id_list(parse_json(&b, None)?, st.limits.max_batch_ids)?;
    let started = SystemTime::now();
    let t0 = Instant::now();
    let n = name.clone();
    let received = ids.len();
    let r = blocking(move || Ok(open(&st, &n)?.delete_documents(&ids)?)).await?;
    let deleted = r.items.iter().filter(|i| i.is_ok()).count();
    ok(json!({
        "index_name": name,
        "status": "succeeded",
        "type": "documentDeletion",
        "items": r.items,
        "details": {"receivedDocumentIds": received, "deletedDocuments": deleted},
        "duration": format!("PT{:.6}S", t0.elapsed().as_secs_f64()),
        "startedAt": rfc3339(started),
        "finishedAt": rfc3339(SystemTime::now()),
    }))
}

// ---------------------------------------------------------------------------------------
// Search and embed

/// Search options the client may send that gclip does not implement: accepted when null /
/// false / empty, refused otherwise so that no option is silently ignored.
const UNSUPPORTED_SEARCH: [&str; 12] = [
    "reRanker",
    "boost",
    "facets",
    "sortBy",
    "rerankDepth",
    "relevanceCutoff",
    "collapseFields",
    "language",
    "approximateThreshold",
    "interpolationMethod",
    "textQueryPrefix",
    "trackTotalHits",
];

fn is_empty_option(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn check_query_text(s: &str, limits: &crate::Limits) -> Result<(), ApiError> {
    if s.starts_with("data:") {
        // An image: its decoded size is checked by the image limits.
        if s.len() as u64 > limits.max_image_bytes * 4 / 3 + 64 {
            return Err(ApiError::limit(format!(
                "the query image is over the limit of {} bytes (--max-image-bytes)",
                limits.max_image_bytes
            )));
        }
        return Ok(());
    }
    let n = s.chars().count();
    if n > limits.max_query_chars {
        return Err(ApiError::limit(format!(
            "the query is {n} characters, over the limit of {} (--max-query-chars)",
            limits.max_query_chars
        )));
    }
    Ok(())
}

fn check_query(q: &Query, limits: &crate::Limits) -> Result<(), ApiError> {
    match q {
        Query::Content(s) => check_query_text(s, limits),
        Query::Weighted(w) => {
            if w.len() > limits.max_query_terms {
                return Err(ApiError::limit(format!(
                    "the weighted query has {} terms, over the limit of {} (--max-query-terms)",
                    w.len(),
                    limits.max_query_terms
                )));
            }
            w.keys().try_for_each(|k| check_query_text(k, limits))
        }
        Query::Vector(_) => Ok(()),
    }
}

pub fn parse_search(body: Value, limits: &crate::Limits) -> Result<SearchRequest, ApiError> {
    let mut m = object(body, "the search body")?;
    strip_nulls(&mut m);
    for k in ["modelAuth", "device"] {
        m.remove(k);
    }
    for k in [
        "image_download_headers",
        "imageDownloadHeaders",
        "mediaDownloadHeaders",
    ] {
        if m.get(k).is_some_and(|v| !is_empty_option(v)) {
            return Err(ApiError::invalid(format!(
                "`{k}` is not supported: gclip serve sends no custom headers with image downloads"
            )));
        }
        m.remove(k);
    }
    for k in UNSUPPORTED_SEARCH {
        if let Some(v) = m.remove(k) {
            if !is_empty_option(&v) {
                return Err(ApiError::invalid(format!(
                    "search parameter `{k}` is not supported by gclip serve"
                )));
            }
        }
    }
    if let Some(Value::String(s)) = m.get_mut("searchMethod") {
        *s = s.to_ascii_uppercase();
    }
    for k in ["hybridParameters", "scoreModifiers", "context"] {
        if let Some(Value::Object(o)) = m.get_mut(k) {
            strip_nulls(o);
        }
    }
    if let Some(Value::String(f)) = m.get("filter") {
        let n = f.chars().count();
        if n > limits.max_filter_chars {
            return Err(ApiError::limit(format!(
                "the filter is {n} characters, over the limit of {} (--max-filter-chars)",
                limits.max_filter_chars
            )));
        }
    }
    let req: SearchRequest = serde_json::from_value(Value::Object(m))
        .map_err(|e| ApiError::unprocessable(format!("search body: {e}")))?;
    if let Some(q) = &req.q {
        check_query(q, limits)?;
    }
    Ok(req)
}

pub async fn search(State(st): S, Path(name): Path<String>, Body(b): Body) -> Reply {
    let req = parse_search(parse_json(&b, None)?, &st.limits)?;
    let r = blocking(move || Ok(open(&st, &name)?.search(&req)?)).await?;
    let v = serde_json::to_value(&r).map_err(|e| ApiError::internal(e.to_string()))?;
    ok(v)
}

fn embed_item(v: &Value) -> Result<Query, ApiError> {
    serde_json::from_value::<Query>(v.clone()).map_err(|e| {
        ApiError::unprocessable(format!(
            "embed content must be a string or a {{content: weight}} object: {e}"
        ))
    })
}

pub async fn embed(State(st): S, Path(name): Path<String>, Body(b): Body) -> Reply {
    let t0 = Instant::now();
    let mut m = object(parse_json(&b, None)?, "the embed body")?;
    strip_nulls(&mut m);
    let content = m
        .remove("content")
        .ok_or_else(|| ApiError::unprocessable("the embed body needs `content`"))?;
    let document = match m.remove("content_type").or_else(|| m.remove("contentType")) {
        None => false,
        Some(Value::String(s)) if s == "query" => false,
        Some(Value::String(s)) if s == "document" => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "content_type must be \"query\" or \"document\", got {other}"
            )))
        }
    };
    for k in ["modelAuth", "device"] {
        m.remove(k);
    }
    for k in ["imageDownloadHeaders", "mediaDownloadHeaders"] {
        if m.remove(k).is_some_and(|v| !is_empty_option(&v)) {
            return Err(ApiError::invalid(format!(
                "`{k}` is not supported: gclip serve sends no custom headers with image downloads"
            )));
        }
    }
    if let Some(k) = m.keys().next() {
        return Err(ApiError::unprocessable(format!(
            "unknown field `{k}` in the embed body"
        )));
    }
    let items: Vec<Query> = match &content {
        Value::Array(a) => {
            if a.is_empty() || a.len() > st.limits.max_query_terms {
                return Err(ApiError::limit(format!(
                    "embed takes 1 to {} items (--max-query-terms), got {}",
                    st.limits.max_query_terms,
                    a.len()
                )));
            }
            a.iter().map(embed_item).collect::<Result<_, _>>()?
        }
        one => vec![embed_item(one)?],
    };
    for q in &items {
        check_query(q, &st.limits)?;
    }
    let embeddings = blocking(move || {
        let ix = open(&st, &name)?;
        items
            .iter()
            .map(|q| embed_one(&st, &ix, q, document))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    ok(json!({
        "content": content,
        "embeddings": embeddings,
        "processingTimeMs": t0.elapsed().as_secs_f64() * 1e3,
    }))
}

/// A query vector as the index compares it; as a document (`content_type: document`) a text
/// takes the index's chunk prefix instead of its query prefix.
fn embed_one(st: &AppState, ix: &Index, q: &Query, document: bool) -> Result<Vec<f32>, ApiError> {
    let s = ix.settings();
    if document && s.text_chunk_prefix != s.text_query_prefix {
        if let Query::Content(text) = q {
            // An image reference takes no prefix.
            let is_image = text.starts_with("data:image/")
                || (s.treat_urls_and_pointers_as_images
                    && (text.starts_with("http://")
                        || text.starts_with("https://")
                        || looks_like_image_path(text)));
            if !is_image {
                let t = format!("{}{text}", s.text_chunk_prefix.as_deref().unwrap_or(""));
                let e = st
                    .embedder
                    .embed_texts(&[t.as_str()])
                    .map_err(gclip::index::Error::from)?;
                let mut v = e.row(0).map_err(gclip::index::Error::from)?.to_vec();
                if s.normalize_embeddings {
                    gclip::normalize(&mut v);
                }
                return Ok(v);
            }
        }
    }
    Ok(ix.query_vector(q, None)?)
}

fn looks_like_image_path(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    !s.contains('\n')
        && [
            ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif",
        ]
        .iter()
        .any(|e| l.ends_with(e))
}
