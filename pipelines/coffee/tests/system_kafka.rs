//! The whole coffee system on a real broker, driven the way clients drive
//! it: HTTP to the API gateway, which calls the producer over gRPC, which
//! writes to Kafka; the streams application decides, the barista brews.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{eventually, read_all, read_all_with_headers, system_layers};

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coffee::system::System;
use futures::{FutureExt, StreamExt};
use http_body_util::{BodyExt, Full};
use proto::coffee::v1::query_service_client::QueryServiceClient;
use proto::coffee::v1::{GetCustomerStatsRequest, GetDemandRequest};
use proto::events::{ProcessedOrder, Status};

/// An HTTP response: status and JSON body.
struct Reply {
    status: u16,
    json: serde_json::Value,
}

async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", address.to_string())
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(
            builder
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or_else(|error| {
        panic!("{method} {path}: {status} with a body that is not JSON ({error}): {body:?}")
    });
    Reply { status, json }
}

async fn place(address: SocketAddr, customer: &str, drink: &str, key: Option<&str>) -> Reply {
    let body = serde_json::json!({"customer_name": customer, "coffee_type": drink}).to_string();
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    request(address, "POST", "/order", &headers, &body).await
}

async fn count(address: SocketAddr, status: &str) -> Option<u64> {
    let reply = request(
        address,
        "GET",
        &format!("/v1/orders?status={status}&page_size=1"),
        &[],
        "",
    )
    .await;
    (reply.status == 200).then(|| reply.json["total_count"].as_u64().unwrap())
}

const CUSTOMERS: [&str; 7] = ["Ada", "Bob", "Cy", "Di", "Ed", "Flo", "Gus"];
const DRINKS: [&str; 4] = ["Espresso", "Latte", "Cappuccino", "Americano"];

/// 1,000 orders placed through the gateway all reach `completed` and are
/// readable through it; statistics and demand match what was placed, and
/// every order was accepted and completed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_orders_through_the_gateway_are_all_completed() {
    let state = tempfile::tempdir().unwrap();
    let config = system_layers(testkit::kafka().bootstrap_servers(), state.path())
        .load()
        .unwrap();
    let output_topic = config.streams.output_topic.clone();
    let system = System::start(config).await.unwrap();
    let gateway = system.addresses.gateway;
    const ORDERS: usize = 1_000;
    let placed: Vec<(String, String, String)> = futures::stream::iter(0..ORDERS)
        .map(|i| async move {
            let (customer, drink) = (CUSTOMERS[i % 7], DRINKS[i % 4]);
            let reply = place(gateway, customer, drink, None).await;
            assert_eq!(reply.status, 200, "{}", reply.json);
            assert_eq!(reply.json["order"]["status"], "pending");
            let id = reply.json["order"]["id"].as_str().unwrap().to_owned();
            (id, customer.to_owned(), drink.to_owned())
        })
        .buffer_unordered(32)
        .collect()
        .await;
    eventually("1,000 completed orders", Duration::from_secs(180), || {
        count(gateway, "completed").map(|n| n.filter(|n| *n == ORDERS as u64))
    })
    .await;
    // Each order reads back as placed, through the gateway.
    for (id, customer, drink) in placed.iter().step_by(50) {
        let reply = request(gateway, "GET", &format!("/v1/order/{id}"), &[], "").await;
        assert_eq!(reply.status, 200, "{}", reply.json);
        let order = &reply.json["order"];
        assert_eq!(
            (
                order["customer_name"].as_str(),
                order["coffee_type"].as_str(),
                order["status"].as_str()
            ),
            (
                Some(customer.as_str()),
                Some(drink.as_str()),
                Some("completed")
            )
        );
    }
    let mut query = QueryServiceClient::connect(format!("http://{}", system.addresses.query))
        .await
        .unwrap();
    for (i, customer) in CUSTOMERS.iter().enumerate() {
        let expected = (0..ORDERS).filter(|n| n % 7 == i).count() as u64;
        let stats = query
            .get_customer_stats(GetCustomerStatsRequest {
                customer_name: (*customer).into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                stats.orders_placed,
                stats.orders_completed,
                stats.orders_cancelled
            ),
            (expected, expected, 0),
            "{customer}"
        );
    }
    let demand = query
        .get_demand(GetDemandRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut per_drink: BTreeMap<String, u64> = BTreeMap::new();
    for window in demand.windows {
        *per_drink.entry(window.coffee_type).or_default() += window.orders;
    }
    assert_eq!(
        per_drink.into_iter().collect::<Vec<_>>(),
        [
            ("Americano".to_owned(), 250),
            ("Cappuccino".to_owned(), 250),
            ("Espresso".to_owned(), 250),
            ("Latte".to_owned(), 250)
        ]
    );
    system.stop().await.unwrap();
    let decisions = read_all::<ProcessedOrder>(testkit::kafka().client_config(), &output_topic);
    for status in [Status::Processing, Status::Brewing, Status::Completed] {
        let ids: BTreeSet<&str> = decisions
            .iter()
            .filter(|d| d.status == status && d.refused.is_none())
            .map(|d| d.order_id.as_str())
            .collect();
        let total = decisions
            .iter()
            .filter(|d| d.status == status && d.refused.is_none())
            .count();
        assert_eq!((ids.len(), total), (ORDERS, ORDERS), "{status} decisions");
    }
}

/// 20 concurrent POSTs with one `Idempotency-Key` answer with one and the
/// same order, and exactly one order goes through the pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_with_one_idempotency_key_make_one_order() {
    let state = tempfile::tempdir().unwrap();
    let config = system_layers(testkit::kafka().bootstrap_servers(), state.path())
        .load()
        .unwrap();
    let output_topic = config.streams.output_topic.clone();
    let system = System::start(config).await.unwrap();
    let gateway = system.addresses.gateway;
    let replies: Vec<Reply> = futures::future::join_all((0..20).map(|_| {
        let body = serde_json::json!({"customer_name": "Ada", "coffee_type": "Latte"}).to_string();
        async move {
            let headers = [
                ("idempotency-key", "ada-morning-latte"),
                ("x-request-id", "trace-ada-1"),
            ];
            request(gateway, "POST", "/order", &headers, &body).await
        }
    }))
    .await;
    let orders: BTreeSet<String> = replies
        .iter()
        .map(|reply| {
            assert_eq!(reply.status, 200, "{}", reply.json);
            reply.json["order"].to_string()
        })
        .collect();
    assert_eq!(orders.len(), 1, "different answers: {orders:?}");
    let id = replies[0].json["order"]["id"].as_str().unwrap().to_owned();
    eventually("the order to complete", Duration::from_secs(60), || async {
        let reply = request(gateway, "GET", &format!("/order/{id}"), &[], "").await;
        (reply.json["order"]["status"] == "completed").then_some(())
    })
    .await;
    // The same key with another drink is refused.
    let reply = place(gateway, "Ada", "Espresso", Some("ada-morning-latte")).await;
    assert_eq!(reply.status, 422, "{}", reply.json);
    assert_eq!(count(gateway, "completed").await, Some(1));
    system.stop().await.unwrap();
    // The client's request id travels with the order: through the producer,
    // the pipeline's decisions and the barista's commands.
    let traced =
        read_all_with_headers::<ProcessedOrder>(testkit::kafka().client_config(), &output_topic);
    assert_eq!(traced.len(), 3, "{traced:?}");
    for (decision, headers) in &traced {
        assert_eq!(
            headers.get("x-request-id").map(String::as_str),
            Some("trace-ada-1"),
            "{decision:?}"
        );
    }
    let accepted = read_all::<ProcessedOrder>(testkit::kafka().client_config(), &output_topic)
        .into_iter()
        .filter(|d| d.status == Status::Processing && d.refused.is_none())
        .map(|d| d.order_id)
        .collect::<Vec<_>>();
    assert_eq!(accepted, [id]);
}

/// With the broker down for 20 s mid-run the producer answers 503 (within
/// its bounded send time), never a false 200; every order that got a 200
/// completes once the broker is back, and none is accepted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_acknowledged_around_a_broker_outage_all_complete_once() {
    let broker = testkit::OwnBroker::start();
    let state = tempfile::tempdir().unwrap();
    let mut config = system_layers(broker.bootstrap_servers(), state.path())
        .load()
        .unwrap();
    config.producer.kafka_send_timeout_ms = 3_000;
    let output_topic = config.streams.output_topic.clone();
    let system = System::start(config).await.unwrap();
    let gateway = system.addresses.gateway;

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let client = tokio::spawn(async move {
        let mut outcomes: Vec<(Instant, u16, Option<String>)> = Vec::new();
        let mut i = 0usize;
        while !*stop_rx.borrow() {
            let reply = place(gateway, CUSTOMERS[i % 7], DRINKS[i % 4], None).await;
            let id = reply.json["order"]["id"].as_str().map(str::to_owned);
            assert!(
                matches!(reply.status, 200 | 503),
                "unexpected answer during the run: {} {}",
                reply.status,
                reply.json
            );
            outcomes.push((Instant::now(), reply.status, id));
            i += 1;
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop_rx.changed() => {}
            }
        }
        outcomes
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let down = Instant::now();
    tokio::task::block_in_place(|| broker.stop());
    tokio::time::sleep(Duration::from_secs(20)).await;
    tokio::task::block_in_place(|| broker.restart());
    let up = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let _ = stop_tx.send(true);
    let outcomes = client.await.unwrap();

    let during: Vec<u16> = outcomes
        .iter()
        .filter(|(at, ..)| *at > down + Duration::from_secs(5) && *at < up)
        .map(|(_, status, _)| *status)
        .collect();
    assert!(
        !during.is_empty() && during.iter().all(|s| *s == 503),
        "during the outage: {during:?}"
    );
    let acknowledged: BTreeSet<String> = outcomes
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .filter_map(|(_, _, id)| id.clone())
        .collect();
    assert!(
        outcomes
            .iter()
            .any(|(at, status, _)| *at > up && *status == 200),
        "the producer never recovered"
    );
    let expected = acknowledged.len() as u64;
    eventually(
        "every acknowledged order to complete",
        Duration::from_secs(180),
        || async {
            let completed = count(gateway, "completed").await?;
            (completed >= expected).then_some(())
        },
    )
    .await;
    for id in &acknowledged {
        let reply = request(gateway, "GET", &format!("/order/{id}"), &[], "").await;
        assert_eq!(
            reply.json["order"]["status"], "completed",
            "{id}: {}",
            reply.json
        );
    }
    system.stop().await.unwrap();
    let decisions = read_all::<ProcessedOrder>(broker.client_config(), &output_topic);
    let mut accepted: BTreeMap<&str, usize> = BTreeMap::new();
    for decision in &decisions {
        if decision.status == Status::Processing && decision.refused.is_none() {
            *accepted.entry(decision.order_id.as_str()).or_default() += 1;
        }
    }
    let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "accepted more than once: {twice:?}");
    for id in &acknowledged {
        assert_eq!(accepted.get(id.as_str()), Some(&1), "{id}");
    }
}
