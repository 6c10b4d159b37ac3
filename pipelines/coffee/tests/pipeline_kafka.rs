//! The pipeline side of the coffee system on a real broker: the streams
//! application with its query service, and the barista. Orders are written
//! as the producer writes them; the gateway's own end-to-end test places
//! them over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{eventually, read_all};

use std::collections::BTreeMap;
use std::time::Duration;

use coffee::barista::BaristaConfig;
use coffee::service::{self, BaristaServiceConfig, KafkaConfig, StreamsServiceConfig};
use engine::Cluster;
use futures::{FutureExt, StreamExt};
use proto::coffee::v1::query_service_client::QueryServiceClient;
use proto::coffee::v1::{
    GetCustomerStatsRequest, GetDemandRequest, GetOrderRequest, ListOrdersRequest, OrderStatus,
    WatchOrdersRequest,
};
use proto::events::{CommandKind, OrderCommand, ProcessedOrder, Status};
use proto::menu::Menu;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{oneshot, watch};
use tonic::transport::Channel;

/// Topics and names of one test, unique on the shared broker.
struct Setup {
    kafka: KafkaConfig,
    streams: StreamsServiceConfig,
    barista: BaristaServiceConfig,
    _state: tempfile::TempDir,
}

fn setup(prefix: &str) -> Setup {
    common::init_logging();
    let broker = testkit::kafka();
    let name = testkit::unique_name(prefix);
    let state = tempfile::tempdir().unwrap();
    let kafka = KafkaConfig {
        brokers: vec![broker.bootstrap_servers().to_owned()],
        topic_partitions: 3,
        ..KafkaConfig::default()
    };
    let streams = StreamsServiceConfig {
        application_id: format!("{name}-app"),
        input_topic: format!("{name}-orders"),
        output_topic: format!("{name}-processed"),
        rejected_topic: format!("{name}-rejected"),
        stats_topic: format!("{name}-stats"),
        demand_topic: format!("{name}-demand"),
        state_dir: state.path().to_owned(),
        query_host: "127.0.0.1".into(),
        query_port: 0,
        metrics_port: 0,
        ..StreamsServiceConfig::default()
    };
    let barista = BaristaServiceConfig {
        barista: BaristaConfig {
            group_id: format!("{name}-baristas"),
            processed_topic: streams.output_topic.clone(),
            orders_topic: streams.input_topic.clone(),
            speed_factor: 0.001,
            commit_interval_ms: 100,
            name: Some("barista-test".into()),
            ..BaristaConfig::default()
        },
        metrics_port: 0,
    };
    Setup {
        kafka,
        streams,
        barista,
        _state: state,
    }
}

/// A running service and how to stop it.
struct Running<T> {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), service::ServiceError>>,
    address: T,
}

impl<T> Running<T> {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

fn stopper() -> (
    watch::Sender<bool>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, mut rx) = watch::channel(false);
    (tx, async move {
        let _ = rx.wait_for(|stop| *stop).await;
    })
}

async fn start_streams(setup: &Setup) -> Running<QueryServiceClient<Channel>> {
    let cluster = Cluster::kafka(&setup.kafka.brokers[0]);
    let (stop, stopped) = stopper();
    let (started_tx, started_rx) = oneshot::channel();
    let (config, kafka) = (setup.streams.clone(), setup.kafka.clone());
    let task = tokio::spawn(async move {
        service::run_streams(
            &config,
            &kafka,
            &Menu::default(),
            cluster,
            stopped,
            Some(started_tx),
        )
        .await
    });
    let addresses = started_rx
        .await
        .expect("the streams application did not start");
    let client = QueryServiceClient::connect(format!("http://{}", addresses.query))
        .await
        .unwrap();
    Running {
        stop,
        task,
        address: client,
    }
}

async fn start_barista(setup: &Setup) -> Running<std::net::SocketAddr> {
    let cluster = Cluster::kafka(&setup.kafka.brokers[0]);
    let (stop, stopped) = stopper();
    let (started_tx, started_rx) = oneshot::channel();
    let (config, kafka) = (setup.barista.clone(), setup.kafka.clone());
    let task = tokio::spawn(async move {
        service::run_barista(
            &config,
            &kafka,
            &cluster,
            "127.0.0.1",
            stopped,
            Some(started_tx),
        )
        .await
    });
    let address = started_rx.await.expect("the barista did not start");
    Running {
        stop,
        task,
        address,
    }
}

async fn producer(setup: &Setup) -> FutureProducer {
    // The streams application creates the topics; make sure they exist
    // before writing, whichever starts first.
    let cluster = Cluster::kafka(&setup.kafka.brokers[0]);
    service::ensure_topics(&cluster, &setup.kafka, &[&setup.streams.input_topic]).unwrap();
    testkit::kafka()
        .client_config()
        .set("enable.idempotence", "true")
        // Kafka's default (Java) partitioner, which the pipeline's
        // interactive queries assume.
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap()
}

async fn send(producer: &FutureProducer, topic: &str, command: &OrderCommand) {
    let payload = serde_json::to_vec(command).unwrap();
    producer
        .send(
            FutureRecord::to(topic).key(&command.id).payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(error, _)| error)
        .unwrap();
}

const CUSTOMERS: [&str; 5] = ["Ada", "Bob", "Cy", "Di", "Ed"];
const DRINKS: [&str; 4] = ["Espresso", "Latte", "Cappuccino", "Americano"];

fn order(i: usize) -> OrderCommand {
    OrderCommand::placed(
        &format!("order-{i:05}"),
        CUSTOMERS[i % CUSTOMERS.len()],
        DRINKS[(i / 3) % DRINKS.len()],
        chrono::Utc::now(),
    )
}

async fn count_with_status(
    client: &QueryServiceClient<Channel>,
    status: OrderStatus,
) -> Option<u64> {
    let mut client = client.clone();
    client
        .list_orders(ListOrdersRequest {
            status: status.into(),
            page_size: 1,
            ..ListOrdersRequest::default()
        })
        .await
        .ok()
        .map(|response| response.into_inner().total_count)
}

async fn status_of(client: &QueryServiceClient<Channel>, id: &str) -> Option<OrderStatus> {
    let mut client = client.clone();
    let order = client
        .get_order(GetOrderRequest { id: id.into() })
        .await
        .ok()?
        .into_inner()
        .order?;
    OrderStatus::try_from(order.status).ok()
}

/// Every order's status and every customer's statistics, as the query
/// service reports them.
async fn snapshot(
    client: &QueryServiceClient<Channel>,
) -> (
    BTreeMap<String, (i32, String, String)>,
    BTreeMap<String, (u64, u64, u64, String)>,
) {
    let mut client = client.clone();
    let mut orders = BTreeMap::new();
    let mut page = 1;
    loop {
        let response = client
            .list_orders(ListOrdersRequest {
                page,
                page_size: 100,
                ..ListOrdersRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        for order in &response.orders {
            orders.insert(
                order.id.clone(),
                (
                    order.status,
                    order.customer_name.clone(),
                    order.coffee_type.clone(),
                ),
            );
        }
        if u64::from(page) * 100 >= response.total_count {
            break;
        }
        page += 1;
    }
    let mut stats = BTreeMap::new();
    for customer in CUSTOMERS {
        let reply = client
            .get_customer_stats(GetCustomerStatsRequest {
                customer_name: customer.into(),
            })
            .await
            .unwrap()
            .into_inner();
        stats.insert(
            customer.to_owned(),
            (
                reply.orders_placed,
                reply.orders_completed,
                reply.orders_cancelled,
                reply.favourite_drink,
            ),
        );
    }
    (orders, stats)
}

/// 300 orders written as the producer writes them are accepted, claimed,
/// brewed and completed; the query service reports every one, and the
/// statistics and demand add up to what was ordered. Then a replay from
/// the earliest offset rebuilds identical statuses and statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_are_completed_and_a_replay_rebuilds_the_same_state() {
    let setup = setup("coffee-flow");
    let streams = start_streams(&setup).await;
    let barista = start_barista(&setup).await;
    let producer = producer(&setup).await;
    const ORDERS: usize = 300;
    for i in 0..ORDERS {
        send(&producer, &setup.streams.input_topic, &order(i)).await;
    }
    let client = streams.address.clone();
    eventually("every order to complete", Duration::from_secs(120), || {
        count_with_status(&client, OrderStatus::Completed)
            .map(|count| count.filter(|count| *count == ORDERS as u64))
    })
    .await;
    let (orders, stats) = snapshot(&client).await;
    assert_eq!(orders.len(), ORDERS);
    assert!(
        orders
            .values()
            .all(|(status, ..)| *status == OrderStatus::Completed as i32)
    );
    for (i, customer) in CUSTOMERS.iter().enumerate() {
        let placed = (0..ORDERS).filter(|n| n % CUSTOMERS.len() == i).count() as u64;
        let (got_placed, completed, cancelled, _) = &stats[*customer];
        assert_eq!(
            (*got_placed, *completed, *cancelled),
            (placed, placed, 0),
            "{customer}"
        );
    }
    let mut query = client.clone();
    let demand = query
        .get_demand(GetDemandRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut per_drink: BTreeMap<String, u64> = BTreeMap::new();
    for window in demand.windows {
        *per_drink.entry(window.coffee_type).or_default() += window.orders;
    }
    for (i, drink) in DRINKS.iter().enumerate() {
        let ordered = (0..ORDERS).filter(|n| (n / 3) % DRINKS.len() == i).count() as u64;
        assert_eq!(per_drink.get(*drink).copied(), Some(ordered), "{drink}");
    }
    // Exactly one acceptance and one completion per order on the output.
    let decisions: Vec<ProcessedOrder> = read_all(
        testkit::kafka().client_config(),
        &setup.streams.output_topic,
    );
    for status in [Status::Processing, Status::Brewing, Status::Completed] {
        let count = decisions
            .iter()
            .filter(|d| d.status == status && d.refused.is_none())
            .count();
        assert_eq!(count, ORDERS, "{status} decisions");
    }

    barista.stop().await;
    streams.stop().await;

    let report = engine::reset::replay(
        coffee::topology::build(&setup.streams.topology(&Menu::default()), None).unwrap(),
        setup.streams.engine(&setup.kafka),
        Cluster::kafka(&setup.kafka.brokers[0]),
        engine::reset::ResetTo::Earliest,
        |_| {},
    )
    .await
    .unwrap();
    // Placed, claimed and brewed: three commands per order.
    assert_eq!(report.records, 3 * ORDERS as u64);
    assert!(report.reset.wiped_state);

    let streams = start_streams(&setup).await;
    eventually("the replayed state", Duration::from_secs(60), || {
        let client = streams.address.clone();
        async move {
            let done = count_with_status(&client, OrderStatus::Completed).await?;
            (done == ORDERS as u64).then_some(())
        }
    })
    .await;
    assert_eq!(snapshot(&streams.address).await, (orders, stats));
    streams.stop().await;
}

/// A cancel that arrives before any barista claims the order wins: the
/// order is never brewed. A cancel after completion is refused with the
/// reason, and watchers hear both decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_order_is_never_brewed_and_a_late_cancel_is_refused() {
    let setup = setup("coffee-cancel");
    let streams = start_streams(&setup).await;
    let producer = producer(&setup).await;
    let client = streams.address.clone();
    let mut watcher = client.clone();
    let mut updates = watcher
        .watch_orders(WatchOrdersRequest::default())
        .await
        .unwrap()
        .into_inner();

    // No barista yet: the cancel is certain to come first.
    let (keep, cancel) = (order(1), order(2));
    send(&producer, &setup.streams.input_topic, &keep).await;
    send(&producer, &setup.streams.input_topic, &cancel).await;
    let request = OrderCommand::about(CommandKind::CancelRequested, &cancel.id, chrono::Utc::now());
    send(&producer, &setup.streams.input_topic, &request).await;
    eventually("the cancel", Duration::from_secs(30), || {
        status_of(&client, &cancel.id).map(|s| (s == Some(OrderStatus::Cancelled)).then_some(()))
    })
    .await;

    let barista = start_barista(&setup).await;
    eventually(
        "the other order to complete",
        Duration::from_secs(60),
        || status_of(&client, &keep.id).map(|s| (s == Some(OrderStatus::Completed)).then_some(())),
    )
    .await;
    // Cancel the completed order: refused, with the reason, to watchers too.
    let late = OrderCommand::about(CommandKind::CancelRequested, &keep.id, chrono::Utc::now());
    send(&producer, &setup.streams.input_topic, &late).await;
    let refusal = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(update) = updates.next().await {
            let update = update.unwrap();
            if update.id == keep.id && update.refused == "cancel_requested" {
                return update;
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("no refusal was watched");
    assert_eq!(refusal.status, OrderStatus::Completed as i32);
    assert!(
        refusal.reason.contains("already completed"),
        "{}",
        refusal.reason
    );

    // The barista's metrics endpoint counts the skipped order.
    let metrics = reqwest_like_get(barista.address, "/metrics").await;
    assert!(
        metrics.contains("coffee_barista_skipped_total{reason=\"cancelled\"} 1"),
        "{metrics}"
    );
    barista.stop().await;
    streams.stop().await;

    let decisions: Vec<ProcessedOrder> = read_all(
        testkit::kafka().client_config(),
        &setup.streams.output_topic,
    );
    let of_cancelled: Vec<(Status, Option<CommandKind>)> = decisions
        .iter()
        .filter(|d| d.order_id == cancel.id)
        .map(|d| (d.status, d.refused))
        .collect();
    assert_eq!(
        of_cancelled,
        [
            (Status::Processing, None),
            (Status::Cancelled, None),
            (Status::Cancelled, Some(CommandKind::Claimed)),
        ]
    );
    let commands: Vec<OrderCommand> =
        read_all(testkit::kafka().client_config(), &setup.streams.input_topic);
    assert!(
        !commands
            .iter()
            .any(|c| c.id == cancel.id && c.kind == CommandKind::Brewed),
        "the cancelled order was brewed"
    );
}

/// A plain HTTP GET over a TCP stream, enough for `/metrics`.
async fn reqwest_like_get(address: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Under exactly-once the same flow holds: every order completes, and the
/// output holds each decision exactly once (read committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_complete_under_exactly_once() {
    let mut setup = setup("coffee-eos");
    setup.streams.processing_guarantee = engine::ProcessingGuarantee::ExactlyOnce;
    let streams = start_streams(&setup).await;
    let barista = start_barista(&setup).await;
    let producer = producer(&setup).await;
    const ORDERS: usize = 100;
    for i in 0..ORDERS {
        send(&producer, &setup.streams.input_topic, &order(i)).await;
    }
    let client = streams.address.clone();
    eventually("every order to complete", Duration::from_secs(120), || {
        count_with_status(&client, OrderStatus::Completed)
            .map(|count| count.filter(|count| *count == ORDERS as u64))
    })
    .await;
    barista.stop().await;
    streams.stop().await;
    let decisions: Vec<ProcessedOrder> = read_all(
        testkit::kafka().client_config(),
        &setup.streams.output_topic,
    );
    assert_eq!(
        decisions.len(),
        3 * ORDERS,
        "one acceptance, claim grant and completion each"
    );
}
