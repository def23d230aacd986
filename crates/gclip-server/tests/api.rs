//! The router driven in process (tower's `oneshot`, no network) on the embedded default
//! model: reply and error shapes, limits, the API key and the image-path policy.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gclip_server::{router, AppState, Limits, ServerConfig};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

fn clip() -> Arc<gclip::Clip> {
    static CLIP: OnceLock<Arc<gclip::Clip>> = OnceLock::new();
    CLIP.get_or_init(|| {
        Arc::new(gclip::Clip::load(&gclip::ModelSource::Default).expect("embedded default model"))
    })
    .clone()
}

struct Server {
    app: axum::Router,
    _dir: tempfile::TempDir,
    images: std::path::PathBuf,
}

fn server_with(f: impl FnOnce(&mut ServerConfig)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut config = ServerConfig {
        data_dir: dir.path().join("data"),
        allow_dirs: vec![images.clone()],
        ..ServerConfig::default()
    };
    f(&mut config);
    let state = AppState::new(&config, clip()).unwrap();
    Server {
        app: router(state),
        _dir: dir,
        images,
    }
}

fn server() -> Server {
    server_with(|_| {})
}

async fn call(s: &Server, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
    call_with(s, method, uri, body, None).await
}

async fn call_with(
    s: &Server,
    method: &str,
    uri: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    if let Some(k) = key {
        b = b.header("x-api-key", k);
    }
    let req = b
        .body(body.map_or_else(Body::empty, |x| Body::from(x.to_string())))
        .unwrap();
    let resp = s.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes)));
    (status, v)
}

fn assert_error(r: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(r.0.as_u16(), status, "reply {}", r.1);
    assert_eq!(r.1["code"], code, "reply {}", r.1);
    assert!(r.1["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(r.1["type"].is_string());
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut img = image::RgbImage::new(w, h);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Rgb([(x * 7) as u8, (y * 5) as u8, 90]);
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test]
async fn root_health_and_index_lifecycle() {
    let s = server();
    let (st, v) = call(&s, "GET", "/", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["version"].as_str().unwrap().starts_with("2."));
    let (st, v) = call(&s, "GET", "/health", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "green");
    // A browser asking for / is sent to the search page.
    let req = Request::builder()
        .uri("/")
        .header("accept", "text/html,application/xhtml+xml")
        .body(Body::empty())
        .unwrap();
    let resp = s.app.clone().oneshot(req).await.unwrap();
    assert!(resp.status().is_redirection());
    assert_eq!(resp.headers()["location"], "/ui");

    let (st, v) = call(&s, "POST", "/indexes/shop", Some(r#"{"model": null}"#)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"acknowledged": true, "index": "shop"}));
    assert_error(
        &call(&s, "POST", "/indexes/shop", None).await,
        409,
        "index_already_exists",
    );
    assert_error(
        &call(&s, "POST", "/indexes/bad.name", Some("{}")).await,
        400,
        "invalid_index_name",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/indexes/x",
            Some(r#"{"normalize_embeddings": true}"#),
        )
        .await,
        400,
        "invalid_argument",
    );
    let (_, v) = call(&s, "GET", "/indexes", None).await;
    assert_eq!(v["results"], json!([{"indexName": "shop"}]));
    let (_, v) = call(&s, "GET", "/indexes/shop/settings", None).await;
    assert_eq!(v["type"], "unstructured");
    assert_eq!(v["normalizeEmbeddings"], true);
    let (_, v) = call(&s, "GET", "/indexes/shop/health", None).await;
    assert_eq!(v["status"], "green");
    let (_, v) = call(&s, "GET", "/indexes/shop/stats", None).await;
    assert_eq!(v["numberOfDocuments"], 0);
    assert!(v["backend"]["memoryUsedPercentage"].is_number());

    let (st, v) = call(&s, "DELETE", "/indexes/shop", None).await;
    assert_eq!((st, v), (StatusCode::OK, json!({"acknowledged": true})));
    assert_error(
        &call(&s, "DELETE", "/indexes/shop", None).await,
        404,
        "index_not_found",
    );
    assert_error(
        &call(&s, "GET", "/indexes/shop/stats", None).await,
        404,
        "index_not_found",
    );
    assert_error(&call(&s, "GET", "/nope", None).await, 404, "not_found");
    assert_error(
        &call(&s, "PUT", "/indexes", None).await,
        405,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn documents_search_and_error_shapes() {
    let s = server();
    call(
        &s,
        "POST",
        "/indexes/shop",
        Some(r#"{"treatUrlsAndPointersAsImages": true}"#),
    )
    .await;
    std::fs::write(s.images.join("a.png"), png(40, 30)).unwrap();
    std::fs::write(s.images.join("corrupt.png"), b"not a png at all").unwrap();
    let a = s.images.join("a.png").display().to_string();
    let corrupt = s.images.join("corrupt.png").display().to_string();
    let outside = s._dir.path().join("outside.png");
    std::fs::write(&outside, png(8, 8)).unwrap();
    let escape = format!("{}/../outside.png", s.images.display());
    let body = json!({
        "documents": [
            {"_id": "1", "title": "red suede sneakers", "image": a, "price": 30},
            {"_id": "2", "title": "brown leather boots", "price": 80},
            {"_id": "3", "title": "broken", "image": corrupt},
            {"_id": "4", "title": "escape", "image": escape},
            {"_id": "5", "title": "url", "image": "https://example.com/x.png"},
            {"_id": "6", "vec": {"vector": vec![0.5f32; clip().dim()], "content": "v"}}
        ],
        "tensorFields": ["title", "image", "combo", "vec"],
        "mappings": {
            "combo": {"type": "multimodal_combination", "weights": {"title": 0.5, "image": 0.5}},
            "vec": {"type": "custom_vector"}
        },
        "useExistingTensors": false,
        "modelAuth": null
    });
    let (st, v) = call(
        &s,
        "POST",
        "/indexes/shop/documents?refresh=false&device=cpu",
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["errors"], true);
    assert_eq!(v["index_name"], "shop");
    let status: Vec<(String, u64)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["_id"].as_str().unwrap().to_string(),
                i["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let st_of = |id: &str| status.iter().find(|x| x.0 == id).unwrap().1;
    assert_eq!(st_of("1"), 200);
    assert_eq!(st_of("2"), 200);
    assert_eq!(st_of("6"), 200);
    for bad in ["3", "4", "5"] {
        assert_eq!(st_of(bad), 400, "{v}");
    }
    let msg = |id: &str| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["_id"] == id)
            .unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(msg("4").contains("--allow-dir"), "{}", msg("4"));
    assert!(msg("5").contains("--allow-url"), "{}", msg("5"));

    // Get one, with facets, batch get, not found.
    let (st, d) = call(
        &s,
        "GET",
        "/indexes/shop/documents/1?expose_facets=True",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(d["title"], "red suede sneakers");
    assert!(d["_tensor_facets"].as_array().unwrap().len() >= 3);
    assert_error(
        &call(&s, "GET", "/indexes/shop/documents/404", None).await,
        404,
        "document_not_found",
    );
    let (_, v) = call(
        &s,
        "GET",
        "/indexes/shop/documents",
        Some(r#"["1", "nope"]"#),
    )
    .await;
    assert_eq!(v["results"][0]["_found"], true);
    assert_eq!(v["results"][1]["_found"], false);
    assert_eq!(v["results"][1]["status"], 404);

    // Search: string, weighted, filter, lexical, hybrid, nulls the client sends.
    let (st, v) = call(
        &s,
        "POST",
        "/indexes/shop/search",
        Some(r#"{"q": "red suede sneakers", "limit": 2, "filter": null, "efSearch": null, "searchableAttributes": ["title"]}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["hits"][0]["_id"], "1");
    assert_eq!(
        v["hits"][0]["_highlights"][0]["title"],
        "red suede sneakers"
    );
    let (_, v) = call(
        &s,
        "POST",
        "/indexes/shop/search",
        Some(r#"{"q": {"boots": 1.0, "sneakers": -0.5}, "filter": "price:[50 TO 100]"}"#),
    )
    .await;
    assert_eq!(v["hits"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["hits"][0]["_id"], "2");
    let (_, v) = call(
        &s,
        "POST",
        "/indexes/shop/search",
        Some(r#"{"q": "leather", "searchMethod": "LEXICAL"}"#),
    )
    .await;
    assert_eq!(v["hits"][0]["_id"], "2");
    let (_, v) = call(
        &s,
        "POST",
        "/indexes/shop/search",
        Some(r#"{"q": "boots", "searchMethod": "HYBRID", "hybridParameters": {"alpha": 0.5, "rrfK": 60, "retrievalMethod": "disjunction", "rankingMethod": "rrf"}}"#),
    )
    .await;
    assert!(v["hits"][0].get("_tensor_score").is_some(), "{v}");

    // Errors: malformed JSON, wrong types, bad filter, unknown index, unsupported option.
    assert_error(
        &call(&s, "POST", "/indexes/shop/search", Some("{\"q\": ")).await,
        400,
        "bad_request",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/indexes/shop/search",
            Some(r#"{"q": "x", "limit": "ten"}"#),
        )
        .await,
        422,
        "unprocessable_entity",
    );
    assert_error(
        &call(&s, "POST", "/indexes/shop/search", Some(r#"{"q": 5}"#)).await,
        422,
        "unprocessable_entity",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/indexes/shop/search",
            Some(r#"{"q": "x", "filter": "price:(5 AND"}"#),
        )
        .await,
        400,
        "invalid_argument",
    );
    assert_error(
        &call(&s, "POST", "/indexes/nope/search", Some(r#"{"q": "x"}"#)).await,
        404,
        "index_not_found",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/indexes/shop/search",
            Some(r#"{"q": "x", "facets": {"fields": {}}}"#),
        )
        .await,
        400,
        "invalid_argument",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/indexes/shop/search",
            Some(&json!({"q": corrupt}).to_string()),
        )
        .await,
        400,
        "invalid_argument",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/indexes/shop/documents",
            Some(r#"{"documents": [{"a": 1}]}"#),
        )
        .await,
        400,
        "invalid_argument",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/indexes/shop/documents",
            Some(r#"{"documents": {}, "tensorFields": []}"#),
        )
        .await,
        422,
        "unprocessable_entity",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/indexes/shop/documents/delete-batch",
            Some(r#"[1, 2]"#),
        )
        .await,
        400,
        "invalid_document_id",
    );

    // Update, embed, delete.
    let (_, v) = call(
        &s,
        "PATCH",
        "/indexes/shop/documents",
        Some(r#"{"documents": [{"_id": "2", "price": 90}, {"_id": "zz", "price": 1}]}"#),
    )
    .await;
    assert_eq!(v["items"][0]["status"], 200, "{v}");
    assert_eq!(v["items"][1]["status"], 404, "{v}");
    let (_, d) = call(&s, "GET", "/indexes/shop/documents/2", None).await;
    assert_eq!(d["price"], 90);
    let (st, v) = call(
        &s,
        "POST",
        "/indexes/shop/embed",
        Some(r#"{"content": ["red", {"boots": 1.0}], "content_type": "query"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let e = v["embeddings"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].as_array().unwrap().len(), clip().dim());
    let (_, v) = call(
        &s,
        "POST",
        "/indexes/shop/documents/delete-batch",
        Some(r#"["1", "missing"]"#),
    )
    .await;
    assert_eq!(v["details"]["deletedDocuments"], 1, "{v}");
    assert_eq!(v["type"], "documentDeletion");
    assert!(v["startedAt"].as_str().unwrap().ends_with('Z'));
    assert_error(
        &call(&s, "GET", "/indexes/shop/documents/1", None).await,
        404,
        "document_not_found",
    );
}

#[tokio::test]
async fn limits_are_4xx_naming_the_limit() {
    let s = server_with(|c| {
        c.limits = Limits {
            max_body_bytes: 4096,
            max_batch_docs: 2,
            max_image_pixels: 100,
            max_query_chars: 20,
            max_filter_chars: 10,
            ..Limits::default()
        }
    });
    call(&s, "POST", "/indexes/shop", None).await;
    let r = call(
        &s,
        "POST",
        "/indexes/shop/documents",
        Some(r#"{"documents": [{"a": "x"}, {"a": "y"}, {"a": "z"}], "tensorFields": ["a"]}"#),
    )
    .await;
    assert_error(&r, 400, "invalid_argument");
    assert!(r.1["message"]
        .as_str()
        .unwrap()
        .contains("--max-batch-docs"));
    let big = format!(r#"{{"q": "{}"}}"#, "x".repeat(5000));
    let r = call(&s, "POST", "/indexes/shop/search", Some(&big)).await;
    assert_error(&r, 413, "request_too_large");
    assert!(r.1["message"]
        .as_str()
        .unwrap()
        .contains("--max-body-bytes"));
    let r = call(
        &s,
        "POST",
        "/indexes/shop/search",
        Some(&format!(r#"{{"q": "{}"}}"#, "y".repeat(30))),
    )
    .await;
    assert!(
        r.1["message"]
            .as_str()
            .unwrap()
            .contains("--max-query-chars"),
        "{}",
        r.1
    );
    let r = call(
        &s,
        "POST",
        "/indexes/shop/search",
        Some(r#"{"q": "a", "filter": "a:bbbbbbbbbbbbbbb"}"#),
    )
    .await;
    assert!(
        r.1["message"]
            .as_str()
            .unwrap()
            .contains("--max-filter-chars"),
        "{}",
        r.1
    );
    std::fs::write(s.images.join("big.png"), png(20, 20)).unwrap();
    let doc = json!({"documents": [{"_id": "b", "image": s.images.join("big.png")}], "tensorFields": ["image"]});
    call(&s, "DELETE", "/indexes/shop", None).await;
    call(
        &s,
        "POST",
        "/indexes/shop",
        Some(r#"{"treatUrlsAndPointersAsImages": true}"#),
    )
    .await;
    let (_, v) = call(
        &s,
        "POST",
        "/indexes/shop/documents",
        Some(&doc.to_string()),
    )
    .await;
    assert_eq!(v["items"][0]["status"], 400, "{v}");
    assert!(
        v["items"][0]["message"]
            .as_str()
            .unwrap()
            .contains("pixels"),
        "{v}"
    );
}

#[tokio::test]
async fn api_key_guards_everything_but_health() {
    let s = server_with(|c| c.api_key = Some("s3cret".into()));
    assert_eq!(call(&s, "GET", "/health", None).await.0, StatusCode::OK);
    assert_error(
        &call(&s, "GET", "/indexes", None).await,
        401,
        "unauthorized",
    );
    assert_error(&call(&s, "GET", "/", None).await, 401, "unauthorized");
    assert_error(
        &call_with(&s, "GET", "/indexes", None, Some("s3cres")).await,
        401,
        "unauthorized",
    );
    assert_error(
        &call_with(&s, "GET", "/indexes", None, Some("s3cret-longer")).await,
        401,
        "unauthorized",
    );
    let (st, _) = call_with(&s, "GET", "/indexes", None, Some("s3cret")).await;
    assert_eq!(st, StatusCode::OK);
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_out_of_the_roots_are_refused() {
    let s = server();
    let outside = s._dir.path().join("secret.png");
    std::fs::write(&outside, png(8, 8)).unwrap();
    std::os::unix::fs::symlink(&outside, s.images.join("link.png")).unwrap();
    let link = s.images.join("link.png").display().to_string();
    let r = call(&s, "GET", &format!("/ui/image?path={link}"), None).await;
    assert_error(&r, 404, "image_not_found");
    std::fs::write(s.images.join("ok.png"), png(8, 8)).unwrap();
    let ok = s.images.join("ok.png").display().to_string();
    let req = Request::builder()
        .uri(format!("/ui/image?path={ok}"))
        .body(Body::empty())
        .unwrap();
    let resp = s.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/png");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_share_commits_and_all_land() {
    let s = Arc::new(server());
    let (st, v) = call(&s, "POST", "/indexes/many", Some("{}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, h0) = call(&s, "GET", "/health", None).await;
    let (clients, per) = (24usize, 4usize);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let s = s.clone();
            tokio::spawn(async move {
                let docs: Vec<Value> = (0..per)
                    .map(|k| json!({"_id": format!("c{c}-{k}"), "title": format!("token{c}x{k} lamp"), "n": c}))
                    .collect();
                let body = json!({"documents": docs, "tensorFields": ["title"]}).to_string();
                (c, call(&s, "POST", "/indexes/many/documents", Some(&body)).await)
            })
        })
        .collect();
    for t in tasks {
        let (c, (st, v)) = t.await.unwrap();
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["errors"], false, "{v}");
        // Each request is answered with its own documents' items, in its order.
        let ids: Vec<&str> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["_id"].as_str().unwrap())
            .collect();
        let want: Vec<String> = (0..per).map(|k| format!("c{c}-{k}")).collect();
        assert_eq!(ids, want);
    }
    let (_, h1) = call(&s, "GET", "/health", None).await;
    let d = |k: &str| h1["gclip"][k].as_u64().unwrap() - h0["gclip"][k].as_u64().unwrap();
    assert_eq!(d("addRequests"), clients as u64);
    // Requests that arrived while a commit ran went together in the next one.
    assert!(d("addBatches") < clients as u64, "no add was merged: {h1}");

    let (_, stats) = call(&s, "GET", "/indexes/many/stats", None).await;
    assert_eq!(stats["numberOfDocuments"], clients * per);
    for c in [0, clients / 2, clients - 1] {
        let q =
            json!({"q": format!("token{c}x3"), "searchMethod": "LEXICAL", "limit": 1}).to_string();
        let (st, r) = call(&s, "POST", "/indexes/many/search", Some(&q)).await;
        assert_eq!(st, StatusCode::OK, "{r}");
        assert_eq!(r["hits"][0]["_id"], format!("c{c}-3"), "{r}");
        let q = json!({"q": format!("token{c}x3 lamp"), "limit": 3, "filter": format!("n:{c}")})
            .to_string();
        let (_, r) = call(&s, "POST", "/indexes/many/search", Some(&q)).await;
        assert_eq!(r["hits"].as_array().unwrap().len(), 3, "{r}");
    }
}
