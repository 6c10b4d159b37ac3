//! The order board's routes on the API gateway, against an in-test
//! `QueryService`: the page and its embedded assets, the menu, demand,
//! the topology picture, and the live feed of decisions as Server-Sent
//! Events. (The page itself is tested in a real browser by
//! `e2e/board/board.test.mjs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use gateway::GatewayConfig;
use proto::events::Status;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn config(query: &str) -> GatewayConfig {
    GatewayConfig {
        server_port: 0,
        bind_host: "127.0.0.1".into(),
        // Nothing listens there: the board's routes need only the query service.
        producer_grpc_address: format!("http://127.0.0.1:{}", closed_port()),
        consumer_grpc_address: query.to_owned(),
        ..GatewayConfig::default()
    }
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    init_logging();
    let query = InTestQueryService::new(true);
    let server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let gateway = start_gateway(config(&server.url())).await;

    let page = get(gateway.http, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    assert!(html.contains("<title>Coffee board</title>"));
    // Nothing is fetched from elsewhere: every script and style is local.
    for attribute in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!html.contains(attribute), "the page loads {attribute}…");
    }
    for (path, kind) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let asset = get(gateway.http, path).await;
        assert_eq!(
            (asset.status, asset.header("content-type")),
            (200, Some(kind)),
            "{path}"
        );
        assert!(!asset.body.is_empty());
    }
    let missing = get(gateway.http, "/assets/../Cargo.toml").await;
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (404, "not_found")
    );
    let wrong_method = send(gateway.http, "POST", "/", &[], "").await;
    assert_eq!(wrong_method.status, 405);
    server.stop().await;
}

#[tokio::test]
async fn the_menu_demand_and_topology_come_from_the_query_service() {
    init_logging();
    let query = InTestQueryService::new(true);
    let server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let gateway = start_gateway(config(&server.url())).await;

    let menu = get(gateway.http, "/v1/menu").await;
    assert_eq!(menu.status, 200);
    let names: Vec<String> = menu.json()["menu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["Americano", "Cappuccino", "Espresso", "Latte"]);

    let topology = get(gateway.http, "/v1/topology.svg").await;
    assert_eq!(topology.status, 200);
    assert_eq!(topology.header("content-type"), Some("image/svg+xml"));
    assert_eq!(&topology.body[..], IN_TEST_TOPOLOGY_SVG.as_bytes());

    // The in-test service has no demand: its error maps to 503 JSON.
    let demand = get(gateway.http, "/v1/demand").await;
    assert_eq!(
        (demand.status, demand.error_code().as_str()),
        (503, "query_unavailable")
    );
    for bad in [
        "/v1/demand?from=yesterday",
        "/v1/demand?until=2026-01-01T00:00:00Z",
    ] {
        let reply = get(gateway.http, bad).await;
        assert_eq!(
            (reply.status, reply.error_code().as_str()),
            (400, "invalid_query"),
            "{bad}"
        );
    }
    server.stop().await;

    // With the query service gone, the board's reads answer 503 JSON.
    let down = get(gateway.http, "/v1/menu").await;
    assert_eq!(
        (down.status, down.error_code().as_str()),
        (503, "query_unavailable")
    );
}

/// Reads Server-Sent Events from `GET /v1/events` until `count` `order`
/// events arrived; returns their data.
async fn read_events(
    address: SocketAddr,
    count: usize,
    started: tokio::sync::oneshot::Sender<()>,
) -> Vec<serde_json::Value> {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\nX-Request-ID: board-test-1\r\n\r\n")
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    // Headers first.
    let status = lines.next_line().await.unwrap().unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut headers = Vec::new();
    loop {
        let line = lines.next_line().await.unwrap().unwrap();
        if line.is_empty() {
            break;
        }
        headers.push(line.to_ascii_lowercase());
    }
    assert!(
        headers
            .iter()
            .any(|h| h == "content-type: text/event-stream"),
        "{headers:?}"
    );
    assert!(
        headers.iter().any(|h| h == "x-request-id: board-test-1"),
        "{headers:?}"
    );
    let _ = started.send(());
    let mut events = Vec::new();
    let mut event = String::new();
    while events.len() < count {
        let Some(line) = lines.next_line().await.unwrap() else {
            break;
        };
        // Chunk-size lines of the chunked transfer match neither prefix.
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data:")
            && event == "order"
        {
            events.push(serde_json::from_str(data.trim()).unwrap());
        }
    }
    events
}

#[tokio::test]
async fn decisions_reach_the_board_as_server_sent_events() {
    init_logging();
    let query = InTestQueryService::new(true);
    let server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let gateway = start_gateway(config(&server.url())).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(read_events(gateway.http, 2, started_tx));
    started_rx.await.unwrap();
    // The gateway subscribed before answering, so nothing after this is missed.
    query.put(order("o-1", "Ada", "Latte", Status::Processing));
    query.refuse(
        "o-1",
        proto::events::CommandKind::CancelRequested,
        "too late",
    );
    let events = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("no events within 10 s")
        .unwrap();
    assert_eq!(events[0]["id"], "o-1");
    assert_eq!(events[0]["status"], "processing");
    assert_eq!(events[1]["refused"], "cancel_requested");
    assert_eq!(events[1]["reason"], "too late");
    server.stop().await;
}

#[tokio::test]
async fn the_event_stream_answers_503_json_without_a_query_service() {
    init_logging();
    let gateway = start_gateway(config(&format!("http://127.0.0.1:{}", closed_port()))).await;
    let reply = get(gateway.http, "/v1/events").await;
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (503, "query_unavailable")
    );
}
