//! The shared HTTP middleware on its own (no Kafka): a panicking handler
//! becomes a 500 JSON error and the server keeps serving; request ids are
//! kept or made and echoed; preflights are answered before the handler.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use gateway::http::{self, Cors, Endpoint, HttpMetrics, Request, Stack, StatusCode};

/// Serves a handler that panics on `/panic` and echoes otherwise.
async fn panicky_server() -> (std::net::SocketAddr, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let stack = Stack::new(
        Cors::permissive(),
        HttpMetrics::new(&registry, "test").unwrap(),
    );
    let listener = http::bind("127.0.0.1", 0).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = |request: Request| async move {
        if request.path == "/panic" {
            panic!("boom in a handler");
        }
        let mut response = http::json(
            StatusCode::OK,
            Bytes::from(format!(r#"{{"request_id":"{}"}}"#, request.request_id)),
        );
        response.extensions_mut().insert(Endpoint("/echo"));
        response
    };
    tokio::spawn(http::serve(
        listener,
        stack,
        handler,
        std::future::pending(),
    ));
    (addr, registry)
}

#[tokio::test]
async fn a_panic_becomes_a_500_json_error_and_the_server_lives_on() {
    init_logging();
    let (addr, registry) = panicky_server().await;
    for _ in 0..3 {
        let reply = send(addr, "GET", "/panic", &[("x-request-id", "p-1")], "").await;
        assert_eq!(
            (reply.status, reply.error_code().as_str()),
            (500, "internal")
        );
        assert!(
            !reply.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("boom")
        );
        assert_eq!(reply.header("x-request-id"), Some("p-1"));
        let next = get(addr, "/echo").await;
        assert_eq!(next.status, 200, "the next request is still served");
    }
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(r#"endpoint="panic",method="GET",service="test",status="500"} 3"#),
        "{text}"
    );
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_reach_the_handler() {
    init_logging();
    let (addr, _registry) = panicky_server().await;
    let kept = send(addr, "GET", "/echo", &[("x-request-id", "abc-123")], "").await;
    assert_eq!(kept.header("x-request-id"), Some("abc-123"));
    assert_eq!(kept.json()["request_id"], "abc-123");
    let made = get(addr, "/echo").await;
    let id = made.header("x-request-id").unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(made.json()["request_id"], id);
    let spaced = send(addr, "GET", "/echo", &[("x-request-id", "has space")], "").await;
    assert_ne!(spaced.header("x-request-id"), Some("has space"));
}

#[tokio::test]
async fn preflights_are_answered_by_the_cors_layer() {
    init_logging();
    let (addr, _registry) = panicky_server().await;
    let reply = send(
        addr,
        "OPTIONS",
        "/panic",
        &[
            ("origin", "http://x.example"),
            ("access-control-request-method", "GET"),
        ],
        "",
    )
    .await;
    assert_eq!(
        reply.status, 204,
        "the handler (which would panic) is not reached"
    );
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert!(reply.header("x-request-id").is_some());
}
