//! `--allow-url`: image URLs fetched from small HTTP servers on 127.0.0.1 (the loopback port
//! is allowed through the testing-only `test_loopback_ports`; every other loopback port stays
//! refused, which is what the redirect tests use), driven through the router in process.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gclip_server::{router, AppState, Limits, ServerConfig, UrlPolicy};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tower::ServiceExt;

fn clip() -> Arc<gclip::Clip> {
    static CLIP: OnceLock<Arc<gclip::Clip>> = OnceLock::new();
    CLIP.get_or_init(|| {
        Arc::new(gclip::Clip::load(&gclip::ModelSource::Default).expect("embedded default model"))
    })
    .clone()
}

fn png(w: u32, h: u32, tint: u8) -> Vec<u8> {
    let mut img = image::RgbImage::new(w, h);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Rgb([(x * 7) as u8, (y * 5) as u8, tint]);
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The image byte limit of the servers under test (`--max-image-bytes`).
const MAX_BYTES: u64 = 64 * 1024;

/// A minimal HTTP/1.0-style server on 127.0.0.1: one thread per connection, `Connection:
/// close`, stopped (and joined) on drop.
struct Site {
    port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Site {
    /// `route(path, own port)` -> the raw response to write, or None for the slow reply.
    fn start(route: fn(&str, u16, &Ctx) -> Reply, ctx: Ctx) -> Site {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (connections.clone(), stop.clone());
        let ctx = Arc::new(ctx);
        let thread = std::thread::spawn(move || {
            let mut handlers = Vec::new();
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (ctx, s) = (ctx.clone(), s.clone());
                handlers.push(std::thread::spawn(move || {
                    serve(conn, port, route, &ctx, &s)
                }));
            }
            for h in handlers {
                let _ = h.join();
            }
        });
        Site {
            port,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Default)]
struct Ctx {
    /// Where `/elsewhere` redirects to.
    elsewhere: String,
}

enum Reply {
    Full(Vec<u8>),
    /// Headers, then the body a byte at a time for ever (until the client goes or the site
    /// stops).
    Trickle,
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    Reply::Full(out)
}

fn ok(ctype: &str, body: &[u8], length: bool) -> Reply {
    let mut h = vec![("Content-Type", ctype.to_string())];
    if length {
        h.push(("Content-Length", body.len().to_string()));
    }
    response("200 OK", &h, body)
}

fn redirect(to: &str) -> Reply {
    response(
        "302 Found",
        &[("Location", to.to_string()), ("Content-Length", "0".into())],
        b"",
    )
}

fn routes(path: &str, port: u16, ctx: &Ctx) -> Reply {
    let big = vec![7u8; MAX_BYTES as usize + 1000];
    match path {
        "/red.png" => ok("image/png", &png(32, 32, 250), true),
        "/blue.png" => ok("image/png", &png(32, 32, 10), true),
        "/big.png" => ok("image/png", &big, true),
        // No Content-Length: the limit must hold while reading.
        "/big-stream.png" => ok("image/png", &big, false),
        "/slow.png" => Reply::Trickle,
        "/page.html" => ok(
            "text/html; charset=utf-8",
            b"<html>not an image</html>",
            true,
        ),
        "/noise.bin" => ok("application/octet-stream", &[1, 2, 3, 4, 5, 6, 7, 8], true),
        "/missing.png" => response("404 Not Found", &[("Content-Length", "0".into())], b""),
        "/hop" => redirect("/red.png"),
        "/hop2" => redirect(&format!("http://127.0.0.1:{port}/hop")),
        "/loop" => redirect("/loop"),
        "/elsewhere" => redirect(&ctx.elsewhere),
        "/to-file" => redirect("file:///etc/passwd"),
        _ => response("404 Not Found", &[("Content-Length", "0".into())], b""),
    }
}

fn serve(
    conn: TcpStream,
    port: u16,
    route: fn(&str, u16, &Ctx) -> Reply,
    ctx: &Ctx,
    stop: &AtomicBool,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    // Skip the headers.
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut conn = conn;
    match route(&path, port, ctx) {
        Reply::Full(bytes) => {
            let _ = conn.write_all(&bytes);
        }
        Reply::Trickle => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n";
            if conn.write_all(head.as_bytes()).is_err() {
                return;
            }
            let png = png(32, 32, 99);
            for b in png.iter().cycle().take(5000) {
                if stop.load(Ordering::SeqCst) || conn.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let _ = conn.shutdown(Shutdown::Both);
}

struct Server {
    app: axum::Router,
    _dir: tempfile::TempDir,
}

fn server(urls: Option<UrlPolicy>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().join("data"),
        urls,
        limits: Limits {
            max_image_bytes: MAX_BYTES,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let state = AppState::new(&config, clip()).unwrap();
    Server {
        app: router(state),
        _dir: dir,
    }
}

fn test_policy(ports: &[u16]) -> UrlPolicy {
    UrlPolicy {
        timeout: Duration::from_millis(1500),
        max_redirects: 3,
        test_loopback_ports: ports.to_vec(),
    }
}

async fn call(s: &Server, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = s.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn image_index(s: &Server) {
    let (st, v) = call(
        s,
        "POST",
        "/indexes/pics",
        json!({"treatUrlsAndPointersAsImages": true}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// Adds one document per URL (field `image`); the per-item replies by `_id`.
async fn add_urls(s: &Server, urls: &[(&str, String)]) -> std::collections::HashMap<String, Value> {
    let docs: Vec<Value> = urls
        .iter()
        .map(|(id, u)| json!({"_id": id, "image": u}))
        .collect();
    let (st, v) = call(
        s,
        "POST",
        "/indexes/pics/documents",
        json!({"documents": docs, "tensorFields": ["image"]}),
    )
    .await;
    // Failures are per document, never the whole request.
    assert_eq!(st, StatusCode::OK, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["_id"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

fn assert_refused(items: &std::collections::HashMap<String, Value>, id: &str, needle: &str) {
    let i = &items[id];
    assert_eq!(i["status"], 400, "{id}: {i}");
    let m = i["message"].as_str().unwrap_or("");
    assert!(m.contains(needle), "{id}: {m:?} lacks {needle:?}");
}

fn data_uri(b: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(b)
    )
}

#[tokio::test]
async fn urls_are_fetched_with_limits_and_errors_are_per_document() {
    let site = Site::start(routes, Ctx::default());
    let s = server(Some(test_policy(&[site.port])));
    image_index(&s).await;
    let items = add_urls(
        &s,
        &[
            ("red", site.url("/red.png")),
            ("blue", site.url("/hop2")),
            ("big", site.url("/big.png")),
            ("stream", site.url("/big-stream.png")),
            ("html", site.url("/page.html")),
            ("noise", site.url("/noise.bin")),
            ("gone", site.url("/missing.png")),
            ("loop", site.url("/loop")),
            ("file", site.url("/to-file")),
        ],
    )
    .await;
    assert_eq!(items["red"]["status"], 200, "{}", items["red"]);
    // Two redirects (absolute, then relative) are within the limit of three.
    assert_eq!(items["blue"]["status"], 200, "{}", items["blue"]);
    assert_refused(&items, "big", "--max-image-bytes");
    assert_refused(&items, "stream", "--max-image-bytes");
    assert_refused(&items, "html", "not an image: the server sent text/html");
    assert_refused(&items, "noise", "cannot decode");
    assert_refused(&items, "gone", "HTTP 404");
    assert_refused(
        &items,
        "loop",
        "more than 3 redirects (--max-url-redirects)",
    );
    assert_refused(&items, "file", "http and https only");

    // The fetched image is the image: its vector is the one of the same bytes sent inline.
    let (st, by_url) = call(
        &s,
        "POST",
        "/indexes/pics/embed",
        json!({"content": site.url("/red.png")}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{by_url}");
    let (_, inline) = call(
        &s,
        "POST",
        "/indexes/pics/embed",
        json!({"content": data_uri(&png(32, 32, 250))}),
    )
    .await;
    let (a, b) = (&by_url["embeddings"][0], &inline["embeddings"][0]);
    assert_eq!(a, b);

    // A URL query searches; the red image finds the red document first.
    let (st, r) = call(
        &s,
        "POST",
        "/indexes/pics/search",
        json!({"q": site.url("/red.png"), "limit": 2}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["hits"][0]["_id"], "red", "{r}");
    // A query URL that cannot be fetched is a 400 naming why.
    let (st, r) = call(
        &s,
        "POST",
        "/indexes/pics/search",
        json!({"q": site.url("/page.html")}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("not an image"),
        "{r}"
    );
}

#[tokio::test]
async fn a_slow_url_times_out() {
    let site = Site::start(routes, Ctx::default());
    let s = server(Some(UrlPolicy {
        timeout: Duration::from_millis(400),
        ..test_policy(&[site.port])
    }));
    image_index(&s).await;
    let items = add_urls(&s, &[("slow", site.url("/slow.png"))]).await;
    assert_refused(&items, "slow", "--url-timeout-ms");
}

#[tokio::test]
async fn loopback_is_refused_on_every_hop_and_never_connected_to() {
    // `inner` serves a good image but is not among the allowed test ports.
    let inner = Site::start(routes, Ctx::default());
    let outer = Site::start(
        routes,
        Ctx {
            elsewhere: inner.url("/red.png"),
        },
    );
    let via_name = Site::start(
        routes,
        Ctx {
            elsewhere: format!("http://localhost:{}/red.png", inner.port),
        },
    );
    let s = server(Some(test_policy(&[outer.port, via_name.port])));
    image_index(&s).await;
    let items = add_urls(
        &s,
        &[
            ("direct", inner.url("/red.png")),
            ("redirected", outer.url("/elsewhere")),
            ("named", via_name.url("/elsewhere")),
            (
                "mapped",
                format!("http://[::ffff:127.0.0.1]:{}/red.png", inner.port),
            ),
        ],
    )
    .await;
    for id in ["direct", "redirected", "mapped"] {
        assert_refused(&items, id, "127.0.0.1, a loopback address");
    }
    assert_refused(&items, "named", "a loopback address");
    // The refused hops were checked before connecting: `inner` saw no connection at all.
    assert_eq!(inner.connections(), 0);
    assert!(outer.connections() >= 1 && via_name.connections() >= 1);

    // The strict policy (no test ports) refuses the first hop already.
    let strict = server(Some(UrlPolicy::default()));
    image_index(&strict).await;
    let items = add_urls(&strict, &[("outer", outer.url("/red.png"))]).await;
    assert_refused(
        &items,
        "outer",
        "a loopback address; only public addresses are fetched",
    );
}

#[tokio::test]
async fn without_allow_url_nothing_is_fetched() {
    let site = Site::start(routes, Ctx::default());
    let s = server(None);
    image_index(&s).await;
    let items = add_urls(&s, &[("red", site.url("/red.png"))]).await;
    assert_refused(&items, "red", "--allow-url");
    assert_eq!(site.connections(), 0);
}
