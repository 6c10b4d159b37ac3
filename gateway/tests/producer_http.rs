//! The producer's HTTP API on the real broker: every route, every
//! documented bad input, idempotency, Kafka outages and load shedding,
//! request ids, CORS and metrics. Reads go to an in-test `QueryService`
//! (see `common`), fed by an in-test decider that folds what the producer
//! wrote to Kafka.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use proto::events::{CommandKind, Status};

fn placed_body(name: &str, coffee: &str) -> String {
    serde_json::json!({"customer_name": name, "coffee_type": coffee}).to_string()
}

/// Places an order and checks the answer, the record written to Kafka
/// (key, value, request id header) and that only then was it reported.
#[tokio::test]
async fn post_order_is_answered_after_kafka_acknowledged_it() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;

    let reply = post_json(
        producer.http,
        "/order",
        &placed_body("  John Doe ", "latte"),
        &[("x-request-id", "req-42")],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-request-id"), Some("req-42"));
    let json = reply.json();
    assert_eq!(json["success"], true);
    assert_eq!(json["msg"], "Order for John Doe placed successfully!");
    let order = &json["order"];
    assert_eq!(order["customer_name"], "John Doe");
    assert_eq!(order["coffee_type"], "Latte", "stored by the menu's name");
    assert_eq!(order["status"], "pending");
    assert_eq!(order["preparation_time_s"], 60);
    assert_eq!(order["created_at"], order["updated_at"]);
    let id = order["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let records = read_all(&topic);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.key, id);
    assert_eq!(record.request_id.as_deref(), Some("req-42"));
    assert_eq!(record.command.kind, CommandKind::Placed);
    assert_eq!(record.command.id, id);
    assert_eq!(record.command.customer_name, "John Doe");
    assert_eq!(record.command.coffee_type, "Latte");
    assert_eq!(record.command.status, Some(Status::Pending));
    assert_eq!(
        record
            .command
            .created_at
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        order["created_at"].as_str().unwrap()
    );
    producer.stop().await;
}

/// Reads come from the query service: the order written to Kafka becomes
/// readable once the (in-test) pipeline folded it, and unknown ids are 404.
#[tokio::test]
async fn get_order_reads_from_the_query_service() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let _decider = spawn_decider(&topic, query.clone(), CancelPolicy::Decide);
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;

    let placed = post_json(
        producer.http,
        "/order",
        &placed_body("Ada", "Espresso"),
        &[],
    )
    .await;
    assert_eq!(placed.status, 200);
    let id = placed.json()["order"]["id"].as_str().unwrap().to_owned();
    query
        .wait_until(Duration::from_secs(30), |orders| orders.contains_key(&id))
        .await;
    let reply = get(producer.http, &format!("/order/{id}")).await;
    assert_eq!(reply.status, 200);
    let json = reply.json();
    assert_eq!(json["success"], true);
    assert_eq!(json["order"]["id"], id.as_str());
    assert_eq!(json["order"]["coffee_type"], "Espresso");
    assert_eq!(
        json["order"]["created_at"],
        placed.json()["order"]["created_at"]
    );

    let missing = get(producer.http, "/order/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (404, "order_not_found")
    );
    producer.stop().await;
}

/// `GET /orders` honours paging and filters.
#[tokio::test]
async fn list_orders_pages_and_filters() {
    init_logging();
    let query = InTestQueryService::new(true);
    for i in 0..25 {
        let status = if i % 5 == 0 {
            Status::Brewing
        } else {
            Status::Pending
        };
        let customer = if i < 10 { "Ada" } else { "Bob" };
        query.put(order(&format!("o-{i:02}"), customer, "Latte", status));
    }
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let producer = start_producer(producer_config("unused", &query_server.url())).await;

    let page = get(producer.http, "/orders?page=2&page_size=10")
        .await
        .json();
    assert_eq!(page["success"], true);
    assert_eq!(page["total_count"], 25);
    assert_eq!(
        (page["page"].as_u64(), page["page_size"].as_u64()),
        (Some(2), Some(10))
    );
    let ids: Vec<&str> = page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        (10..20).map(|i| format!("o-{i:02}")).collect::<Vec<_>>()
    );
    let last = get(producer.http, "/orders?page=3&page_size=10")
        .await
        .json();
    assert_eq!(last["orders"].as_array().unwrap().len(), 5);

    let brewing = get(producer.http, "/orders?status=brewing").await.json();
    assert_eq!(brewing["total_count"], 5);
    assert!(
        brewing["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "brewing")
    );
    let ada = get(producer.http, "/orders?customer=Ada&status=")
        .await
        .json();
    assert_eq!(ada["total_count"], 10);
    let defaults = get(producer.http, "/orders").await.json();
    assert_eq!(
        (defaults["page"].as_u64(), defaults["page_size"].as_u64()),
        (Some(1), Some(20))
    );
    producer.stop().await;
}

/// Every documented bad input gets its 4xx JSON error, none a 5xx, and
/// nothing reaches Kafka.
#[tokio::test]
async fn bad_inputs_get_documented_4xx_json_errors_and_write_nothing() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;

    let checked = check_bad_inputs(producer.http, "").await;
    assert!(checked >= 25, "only {checked} bad inputs");

    // A huge body sent in chunks, with no length announced.
    let chunk = "x".repeat(8 * 1024);
    let mut raw = String::from(
        "POST /order HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    );
    for _ in 0..4 {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    let (status, body) = send_raw(producer.http, raw.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");

    // The unknown-drink message names the menu.
    let tea = post_json(producer.http, "/order", &placed_body("Ada", "Tea"), &[]).await;
    let message = tea.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("Americano, Cappuccino, Espresso, Latte"),
        "{message}"
    );
    // A wrong method says which one to use.
    let wrong = get(producer.http, "/order").await;
    assert_eq!(wrong.header("allow"), Some("POST, OPTIONS"));

    assert!(read_all(&topic).is_empty(), "a bad input reached Kafka");
    producer.stop().await;
}

/// 20 concurrent POSTs with one Idempotency-Key: one id, identical orders,
/// one record on the topic; the same key with another body is refused.
#[tokio::test]
async fn concurrent_posts_with_one_idempotency_key_place_one_order() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;

    let body = placed_body("Ada", "Cappuccino");
    let replies = futures::future::join_all((0..20).map(|i| {
        let body = body.clone();
        let request_id = format!("retry-{i}");
        async move {
            post_json(
                producer.http,
                "/order",
                &body,
                &[
                    ("idempotency-key", "order-ada-1"),
                    ("x-request-id", &request_id),
                ],
            )
            .await
        }
    }))
    .await;
    let orders: Vec<serde_json::Value> = replies
        .iter()
        .map(|reply| {
            assert_eq!(reply.status, 200, "{:?}", reply.body);
            reply.json()["order"].clone()
        })
        .collect();
    assert!(orders.iter().all(|order| *order == orders[0]), "{orders:?}");
    let id = orders[0]["id"].as_str().unwrap();
    let expected_id = uuid::Uuid::new_v5(
        &uuid::Uuid::from_u128(0x6d1f_5c1e_7a0b_5c8e_9f3a_c0ff_ee00_0001),
        b"order-ada-1",
    );
    assert_eq!(
        id,
        expected_id.to_string(),
        "the id is derived from the key"
    );

    let records = read_all(&topic);
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records.iter().all(|r| r.key == id && r.command.id == id));

    // A later retry gets the same order; another body with the key is 422.
    let retry = post_json(
        producer.http,
        "/order",
        &body,
        &[("idempotency-key", "order-ada-1")],
    )
    .await;
    assert_eq!(retry.json()["order"], orders[0]);
    let other = post_json(
        producer.http,
        "/order",
        &placed_body("Ada", "Latte"),
        &[("idempotency-key", "order-ada-1")],
    )
    .await;
    assert_eq!(
        (other.status, other.error_code().as_str()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(read_all(&topic).len(), 1);
    producer.stop().await;
}

/// Across replicas: a second producer that never saw the key finds the
/// order through the query service — same body returns it, another body
/// is refused, and neither writes a record.
#[tokio::test]
async fn idempotency_holds_across_replicas_through_the_query_service() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let _decider = spawn_decider(&topic, query.clone(), CancelPolicy::Decide);
    let first = start_producer(producer_config(&topic, &query_server.url())).await;
    let second = start_producer(producer_config(&topic, &query_server.url())).await;

    let body = placed_body("Ada", "Americano");
    let key = [("idempotency-key", "replica-key")];
    let placed = post_json(first.http, "/order", &body, &key).await;
    assert_eq!(placed.status, 200);
    let id = placed.json()["order"]["id"].as_str().unwrap().to_owned();
    query
        .wait_until(Duration::from_secs(30), |orders| orders.contains_key(&id))
        .await;

    let again = post_json(second.http, "/order", &body, &key).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["order"]["id"], id.as_str());
    assert_eq!(
        again.json()["order"]["created_at"],
        placed.json()["order"]["created_at"]
    );
    let other = post_json(second.http, "/order", &placed_body("Ada", "Latte"), &key).await;
    assert_eq!(
        (other.status, other.error_code().as_str()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(
        read_all(&topic).len(),
        1,
        "the second replica wrote nothing"
    );
    first.stop().await;
    second.stop().await;
}

/// With Kafka unreachable, a POST is answered 503 within the configured
/// bound, telling the client to retry with the same key.
#[tokio::test]
async fn kafka_unreachable_is_503_within_the_bound() {
    init_logging();
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let mut config = producer_config("coffee_orders", &query_server.url());
    config.kafka_brokers = vec![format!("127.0.0.1:{}", closed_port())];
    config.kafka_send_timeout_ms = 1_000;
    let producer = start_producer(config).await;

    let started = Instant::now();
    let reply = post_json(producer.http, "/order", &placed_body("Ada", "Latte"), &[]).await;
    let elapsed = started.elapsed();
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (503, "kafka_unavailable")
    );
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("Idempotency-Key"), "{message}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "answered before the bound: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_millis(2_500), "took {elapsed:?}");

    let metrics = get(producer.http, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("coffee_orders_failed_total{service=\"producer\"} 1"),
        "{text}"
    );
    producer.stop().await;
}

/// When librdkafka's queue is full the producer sheds load at once with
/// 429 instead of stalling (the queue is one record deep here, held by a
/// write to an unreachable broker).
#[tokio::test]
async fn a_full_kafka_queue_sheds_load_with_429() {
    init_logging();
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let mut config = producer_config("coffee_orders", &query_server.url());
    config.kafka_brokers = vec![format!("127.0.0.1:{}", closed_port())];
    config.kafka_send_timeout_ms = 3_000;
    config
        .kafka_settings
        .0
        .insert("queue.buffering.max.messages".into(), "1".into());
    let producer = start_producer(config).await;

    let replies = futures::future::join_all((0..10).map(|i| async move {
        let started = Instant::now();
        let reply = post_json(
            producer.http,
            "/order",
            &placed_body(&format!("c{i}"), "Latte"),
            &[],
        )
        .await;
        (reply, started.elapsed())
    }))
    .await;
    let shed: Vec<_> = replies
        .iter()
        .filter(|(reply, _)| reply.status == 429)
        .collect();
    assert!(!shed.is_empty(), "no request was shed");
    for (reply, elapsed) in &shed {
        assert_eq!(reply.error_code(), "overloaded");
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert!(
            *elapsed < Duration::from_secs(1),
            "shedding took {elapsed:?}"
        );
    }
    for (reply, _) in &replies {
        assert!(matches!(reply.status, 429 | 503), "{}", reply.status);
    }
    producer.stop().await;
}

/// Reads with the query service down are 503 JSON, not hangs or 500s.
#[tokio::test]
async fn query_service_down_is_503_json() {
    init_logging();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let producer = start_producer(producer_config("coffee_orders", &url)).await;
    for path in ["/order/abc", "/orders"] {
        let reply = get(producer.http, path).await;
        assert_eq!(
            (reply.status, reply.error_code().as_str()),
            (503, "query_unavailable"),
            "{path}"
        );
    }
    let cancel = send(producer.http, "POST", "/order/abc/cancel", &[], "").await;
    assert_eq!(
        (cancel.status, cancel.error_code().as_str()),
        (503, "query_unavailable")
    );
    producer.stop().await;
}

/// Cancel: unknown → 404; brewing → 409; pending and granted → 200 after
/// the request went through Kafka; already cancelled → 200.
#[tokio::test]
async fn cancel_is_checked_published_and_decided() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let _decider = spawn_decider(&topic, query.clone(), CancelPolicy::Decide);
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;

    let unknown = send(producer.http, "POST", "/order/nope/cancel", &[], "").await;
    assert_eq!(
        (unknown.status, unknown.error_code().as_str()),
        (404, "order_not_found")
    );

    query.put(order("brewing-1", "Ada", "Latte", Status::Brewing));
    let late = send(producer.http, "POST", "/order/brewing-1/cancel", &[], "").await;
    assert_eq!(
        (late.status, late.error_code().as_str()),
        (409, "cancel_refused")
    );
    assert!(
        late.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("brewing")
    );

    let placed = post_json(producer.http, "/order", &placed_body("Ada", "Latte"), &[]).await;
    let id = placed.json()["order"]["id"].as_str().unwrap().to_owned();
    query
        .wait_until(Duration::from_secs(30), |orders| orders.contains_key(&id))
        .await;
    let cancel = send(
        producer.http,
        "POST",
        &format!("/order/{id}/cancel"),
        &[("x-request-id", "cancel-1")],
        "",
    )
    .await;
    assert_eq!(cancel.status, 200, "{:?}", cancel.body);
    let json = cancel.json();
    assert_eq!(
        (json["success"].as_bool(), json["cancel"].as_str()),
        (Some(true), Some("granted"))
    );
    assert_eq!(json["order"]["status"], "cancelled");
    let records = read_all(&topic);
    let request = records
        .iter()
        .find(|r| r.command.kind == CommandKind::CancelRequested)
        .expect("the cancel request is on the topic");
    assert_eq!(
        (request.key.as_str(), request.request_id.as_deref()),
        (id.as_str(), Some("cancel-1"))
    );

    let again = send(
        producer.http,
        "POST",
        &format!("/order/{id}/cancel"),
        &[],
        "",
    )
    .await;
    assert_eq!(
        (again.status, again.json()["cancel"].as_str()),
        (200, Some("granted"))
    );
    producer.stop().await;
}

/// The pipeline refuses a cancel that lost a race (the order was
/// processing when checked): 409 with the pipeline's reason.
#[tokio::test]
async fn a_cancel_refused_by_the_pipeline_is_409_with_its_reason() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let _decider = spawn_decider(
        &topic,
        query.clone(),
        CancelPolicy::Refuse("a barista claimed it first".into()),
    );
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;
    query.put(order("race-1", "Ada", "Latte", Status::Processing));
    let reply = send(producer.http, "POST", "/order/race-1/cancel", &[], "").await;
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (409, "cancel_refused")
    );
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("a barista claimed it first"), "{message}");
    producer.stop().await;
}

/// No decision within the wait → 202, still pending.
#[tokio::test]
async fn an_undecided_cancel_is_202_after_the_wait() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let _decider = spawn_decider(&topic, query.clone(), CancelPolicy::Ignore);
    let mut config = producer_config(&topic, &query_server.url());
    config.cancel_wait_ms = 300;
    let producer = start_producer(config).await;
    query.put(order("slow-1", "Ada", "Latte", Status::Pending));
    let started = Instant::now();
    let reply = send(producer.http, "POST", "/order/slow-1/cancel", &[], "").await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let json = reply.json();
    assert_eq!(
        (json["cancel"].as_str(), json["order"]["status"].as_str()),
        (Some("pending"), Some("pending"))
    );
    producer.stop().await;
}

/// A query service that cannot stream changes: the decision is found by
/// polling the order.
#[tokio::test]
async fn cancel_falls_back_to_polling_without_a_watch() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(false);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let _decider = spawn_decider(&topic, query.clone(), CancelPolicy::Decide);
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;
    query.put(order("poll-1", "Ada", "Latte", Status::Processing));
    let reply = send(producer.http, "POST", "/order/poll-1/cancel", &[], "").await;
    assert_eq!(
        (reply.status, reply.json()["cancel"].as_str()),
        (200, Some("granted"))
    );
    producer.stop().await;
}

/// Health, metrics with route templates as labels, request ids, CORS.
#[tokio::test]
async fn health_metrics_request_ids_and_cors() {
    init_logging();
    let topic = topic("orders").await;
    let query = InTestQueryService::new(true);
    let query_server = query.serve("127.0.0.1:0".parse().unwrap()).await;
    let producer = start_producer(producer_config(&topic, &query_server.url())).await;

    let health = get(producer.http, "/health").await;
    assert_eq!(
        (health.status, health.json()),
        (200, serde_json::json!({"status":"ok"}))
    );
    let generated = health.header("x-request-id").unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let long_id = "r".repeat(200);
    let replaced = send(
        producer.http,
        "GET",
        "/health",
        &[("x-request-id", &long_id)],
        "",
    )
    .await;
    assert_ne!(replaced.header("x-request-id"), Some(long_id.as_str()));

    assert_eq!(
        post_json(producer.http, "/order", &placed_body("Ada", "Latte"), &[])
            .await
            .status,
        200
    );
    assert_eq!(get(producer.http, "/order/some-id").await.status, 404);
    let metrics = get(producer.http, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8_lossy(&metrics.body);
    for family in [
        "coffee_orders_total",
        "coffee_orders_success_total",
        "coffee_orders_failed_total",
        "coffee_order_processing_seconds",
        "http_requests_total",
        "http_request_duration_seconds",
        "kafka_messages_sent_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    assert!(
        text.contains(r#"endpoint="/order/{id}",method="GET",service="producer",status="404"} 1"#),
        "{text}"
    );
    assert!(!text.contains("some-id"), "a raw path leaked into a label");
    assert!(
        text.contains(r#"kafka_messages_sent_total{service="producer"} 1"#),
        "{text}"
    );

    let preflight = send(
        producer.http,
        "OPTIONS",
        "/order",
        &[
            ("origin", "http://localhost:5173"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type, idempotency-key",
            ),
        ],
        "",
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(
        preflight
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert!(
        preflight
            .header("access-control-allow-headers")
            .unwrap()
            .contains("idempotency-key")
    );
    let simple = send(
        producer.http,
        "GET",
        "/health",
        &[("origin", "http://a.example")],
        "",
    )
    .await;
    assert_eq!(simple.header("access-control-allow-origin"), Some("*"));
    producer.stop().await;

    let mut config = producer_config(&topic, &query_server.url());
    config.cors_allowed_origins = vec!["https://shop.example".into()];
    let strict = start_producer(config).await;
    let preflight = async |origin: &str| {
        send(
            strict.http,
            "OPTIONS",
            "/order",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await
    };
    let allowed = preflight("https://shop.example").await;
    assert_eq!(
        (
            allowed.status,
            allowed.header("access-control-allow-origin")
        ),
        (204, Some("https://shop.example"))
    );
    let denied = preflight("https://evil.example").await;
    assert_eq!(
        (denied.status, denied.error_code().as_str()),
        (403, "origin_not_allowed")
    );
    let simple = send(
        strict.http,
        "GET",
        "/health",
        &[("origin", "https://evil.example")],
        "",
    )
    .await;
    assert_eq!(
        (simple.status, simple.header("access-control-allow-origin")),
        (200, None)
    );
    strict.stop().await;
}
