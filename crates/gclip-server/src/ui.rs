//! The search page (`/ui`) and the thumbnails it shows (`/ui/image?path=...`, read through
//! the `--allow-dir` roots like every other image path).
//!
//! The page is one static HTML file; it talks to the same JSON API as any client (with the
//! API key from its key box, kept in the browser's local storage). `/ui?index=I&q=Q` runs a
//! query on load, which is how the headless-browser test drives it.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use std::path::PathBuf;
use std::sync::Arc;

pub async fn page() -> Html<&'static str> {
    Html(include_str!("ui.html"))
}

fn query_param(q: &Option<String>, key: &str) -> Option<String> {
    q.as_deref()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(x) if hex.bytes().all(|c| c.is_ascii_hexdigit()) => {
                        out.push(x);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn content_type(p: &std::path::Path) -> &'static str {
    match p
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg" | "jfif") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("bmp") => "image/bmp",
        Some("tif" | "tiff") => "image/tiff",
        _ => "application/octet-stream",
    }
}

pub async fn image(State(st): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    let Some(path) = query_param(&q, "path") else {
        return ApiError::bad_request("/ui/image needs ?path=").into_response();
    };
    let policy = st.embedder.images().clone();
    let r = tokio::task::spawn_blocking(move || {
        let c = policy
            .resolve(&PathBuf::from(&path))
            .map_err(|m| ApiError::new(StatusCode::NOT_FOUND, "image_not_found", m))?;
        let meta = std::fs::metadata(&c).map_err(|e| ApiError::internal(e.to_string()))?;
        if meta.len() > policy.max_bytes {
            return Err(ApiError::limit(format!(
                "image is over the limit of {} bytes (--max-image-bytes)",
                policy.max_bytes
            )));
        }
        let bytes = std::fs::read(&c).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok((content_type(&c), bytes))
    })
    .await;
    match r {
        Ok(Ok((ct, bytes))) => (
            [
                (header::CONTENT_TYPE, ct),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%2Fd"), "a b c/d");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
