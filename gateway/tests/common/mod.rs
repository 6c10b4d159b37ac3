//! Helpers shared by the gateway's tests: a small HTTP client, an in-test
//! `QueryService` (a real tonic server over an in-test map, standing in for
//! the pipeline's), an in-test decider that folds the commands on the topic
//! into that map the way the pipeline would, a producer and gateway started
//! on free ports, and reading back what was written to Kafka.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use gateway::{Gateway, GatewayConfig, Producer, ProducerConfig};
use http_body_util::{BodyExt, Full};
use proto::coffee::v1::query_service_server::{QueryService, QueryServiceServer};
use proto::coffee::v1::{
    CustomerStats, GetCustomerStatsRequest, GetDemandRequest, GetDemandResponse, GetMenuRequest,
    GetMenuResponse, GetOrderRequest, GetOrderResponse, GetTopologyRequest, GetTopologyResponse,
    ListOrdersRequest, ListOrdersResponse, MenuItem, Order, OrderStatus, WatchOrdersRequest,
};
use proto::events::{CommandKind, OrderCommand, Status};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, broadcast, oneshot};
use tokio_stream::Stream;

pub use testkit::init_logging;

// ---------------------------------------------------------------- HTTP client

/// An HTTP response, with its body read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "status {}: body is not JSON ({error}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The error code of a JSON error body, after checking its shape.
    pub fn error_code(&self) -> String {
        let json = self.json();
        assert_eq!(json["success"], false, "{json}");
        let message = json["error"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "error without a message: {json}");
        json["error"]["code"].as_str().unwrap().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// `POST path` with a JSON body.
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send(addr, "POST", path, &all, body.to_owned()).await
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, "GET", path, &[], Bytes::new()).await
}

/// Writes `raw` bytes as a request and reads the response until the server
/// closes (for requests a client library will not send, such as a chunked
/// body with no length).
pub async fn send_raw(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut response = Vec::new();
    // The server may close before reading everything we wrote; what it
    // answered is what counts.
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

// ------------------------------------------------------ in-test QueryService

/// What the in-test decider does with cancel requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelPolicy {
    /// Grant while pending or processing, refuse after (as the pipeline).
    Decide,
    /// Refuse with this reason whatever the status (a barista won a race).
    Refuse(String),
    /// Never answer.
    Ignore,
}

/// An in-test `QueryService`: a real tonic server over an in-test map of
/// orders, with `WatchOrders` fed by every change. It stands in for the
/// pipeline's query service, which is built and tested end to end in
/// `pipelines/coffee`.
pub struct InTestQueryService {
    orders: Mutex<BTreeMap<String, Order>>,
    updates: broadcast::Sender<Order>,
    changed: Notify,
    watch_supported: bool,
}

impl InTestQueryService {
    pub fn new(watch_supported: bool) -> Arc<Self> {
        Arc::new(Self {
            orders: Mutex::new(BTreeMap::new()),
            updates: broadcast::channel(1024).0,
            changed: Notify::new(),
            watch_supported,
        })
    }

    /// Stores `order` and tells watchers.
    pub fn put(&self, order: Order) {
        self.orders
            .lock()
            .unwrap()
            .insert(order.id.clone(), order.clone());
        let _ = self.updates.send(order);
        self.changed.notify_waiters();
    }

    /// Tells watchers about a refusal (the stored order is unchanged).
    pub fn refuse(&self, id: &str, kind: CommandKind, reason: &str) {
        let Some(mut order) = self.get(id) else {
            return;
        };
        order.refused = kind.as_str().to_owned();
        order.reason = reason.to_owned();
        let _ = self.updates.send(order);
        self.changed.notify_waiters();
    }

    pub fn get(&self, id: &str) -> Option<Order> {
        self.orders.lock().unwrap().get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.orders.lock().unwrap().len()
    }

    /// Waits until `done` holds for the stored orders (woken by changes,
    /// not by polling); panics after `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&BTreeMap<String, Order>) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.orders.lock().unwrap()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("condition not reached within {timeout:?}");
            }
        }
    }

    /// Serves on `addr` (port 0 for a free one) until the returned guard is
    /// dropped.
    pub async fn serve(self: &Arc<Self>, addr: SocketAddr) -> ServerGuard {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = QueryServiceServer::new(Served(Arc::clone(self)));
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
        });
        ServerGuard {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// Stops a server when dropped (or explicitly, waiting for it).
pub struct ServerGuard {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ServerGuard {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type OrderStream = Pin<Box<dyn Stream<Item = Result<Order, tonic::Status>> + Send>>;

/// The picture the in-test query service answers `GetTopology` with.
pub const IN_TEST_TOPOLOGY_SVG: &str =
    "<svg xmlns=\"http://www.w3.org/2000/svg\"><title>in-test topology</title></svg>";

/// The gRPC face of an [`InTestQueryService`].
struct Served(Arc<InTestQueryService>);

impl std::ops::Deref for Served {
    type Target = InTestQueryService;

    fn deref(&self) -> &InTestQueryService {
        &self.0
    }
}

#[tonic::async_trait]
impl QueryService for Served {
    async fn get_order(
        &self,
        request: tonic::Request<GetOrderRequest>,
    ) -> Result<tonic::Response<GetOrderResponse>, tonic::Status> {
        let id = request.into_inner().id;
        match self.0.get(&id) {
            Some(order) => Ok(tonic::Response::new(GetOrderResponse {
                success: true,
                message: String::new(),
                order: Some(order),
            })),
            None => Err(tonic::Status::not_found(format!("no order {id}"))),
        }
    }

    async fn list_orders(
        &self,
        request: tonic::Request<ListOrdersRequest>,
    ) -> Result<tonic::Response<ListOrdersResponse>, tonic::Status> {
        let request = request.into_inner();
        let matching: Vec<Order> = self
            .orders
            .lock()
            .unwrap()
            .values()
            .filter(|o| request.status == 0 || o.status == request.status)
            .filter(|o| {
                request.customer_name.is_empty() || o.customer_name == request.customer_name
            })
            .cloned()
            .collect();
        let page = request.page.max(1);
        let size = if request.page_size == 0 {
            20
        } else {
            request.page_size
        };
        let orders = matching
            .iter()
            .skip(((page - 1) * size) as usize)
            .take(size as usize)
            .cloned()
            .collect();
        Ok(tonic::Response::new(ListOrdersResponse {
            orders,
            total_count: matching.len() as u64,
            page,
            page_size: size,
        }))
    }

    async fn get_customer_stats(
        &self,
        _request: tonic::Request<GetCustomerStatsRequest>,
    ) -> Result<tonic::Response<CustomerStats>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "not in the in-test query service",
        ))
    }

    async fn get_demand(
        &self,
        _request: tonic::Request<GetDemandRequest>,
    ) -> Result<tonic::Response<GetDemandResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "not in the in-test query service",
        ))
    }

    async fn get_menu(
        &self,
        _request: tonic::Request<GetMenuRequest>,
    ) -> Result<tonic::Response<GetMenuResponse>, tonic::Status> {
        let items = proto::menu::Menu::default()
            .items()
            .map(|(name, seconds)| MenuItem {
                name: name.to_owned(),
                preparation_time_s: seconds,
            })
            .collect();
        Ok(tonic::Response::new(GetMenuResponse { items }))
    }

    async fn get_topology(
        &self,
        _request: tonic::Request<GetTopologyRequest>,
    ) -> Result<tonic::Response<GetTopologyResponse>, tonic::Status> {
        Ok(tonic::Response::new(GetTopologyResponse {
            mermaid: "flowchart LR\n  in --> out\n".into(),
            svg: IN_TEST_TOPOLOGY_SVG.into(),
        }))
    }

    type WatchOrdersStream = OrderStream;

    async fn watch_orders(
        &self,
        request: tonic::Request<WatchOrdersRequest>,
    ) -> Result<tonic::Response<Self::WatchOrdersStream>, tonic::Status> {
        if !self.watch_supported {
            return Err(tonic::Status::unimplemented("watching is switched off"));
        }
        let id = request.into_inner().id;
        // Subscribed before the response goes out, so no change after the
        // call returns is missed.
        let updates = tokio_stream::wrappers::BroadcastStream::new(self.updates.subscribe());
        let stream = tokio_stream::StreamExt::filter_map(updates, move |update| match update {
            Ok(order) if id.is_empty() || order.id == id => Some(Ok(order)),
            _ => None,
        });
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

/// A pending order as the pipeline would store it.
pub fn order(id: &str, customer: &str, coffee: &str, status: Status) -> Order {
    let now = Utc::now();
    let at = prost_types::Timestamp {
        seconds: now.timestamp(),
        nanos: now.timestamp_subsec_nanos() as i32,
    };
    Order {
        id: id.to_owned(),
        customer_name: customer.to_owned(),
        coffee_type: coffee.to_owned(),
        status: status.to_proto() as i32,
        created_at: Some(at),
        updated_at: Some(at),
        preparation_time_s: 60,
        reason: String::new(),
        refused: String::new(),
    }
}

/// Folds the commands on `topic` into `query` as the pipeline would:
/// `placed` stores a pending order (a second `placed` for an id is
/// ignored), `cancel_requested` is decided by `policy`. Stops with the
/// returned sender (or when dropped).
pub fn spawn_decider(
    topic: &str,
    query: Arc<InTestQueryService>,
    policy: CancelPolicy,
) -> oneshot::Sender<()> {
    let consumer: StreamConsumer = testkit::kafka()
        .client_config()
        .set("group.id", testkit::unique_name("decider"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let partitions = partitions(topic);
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                _ = &mut stopped => return,
                message = consumer.recv() => message.unwrap(),
            };
            let command: OrderCommand =
                serde_json::from_slice(message.payload().unwrap_or_default()).unwrap();
            match command.kind {
                CommandKind::Placed => {
                    if query.get(&command.id).is_none() {
                        let mut placed = order(
                            &command.id,
                            &command.customer_name,
                            &command.coffee_type,
                            Status::Pending,
                        );
                        let at = command.created_at.unwrap();
                        placed.created_at = Some(prost_types::Timestamp {
                            seconds: at.timestamp(),
                            nanos: at.timestamp_subsec_nanos() as i32,
                        });
                        query.put(placed);
                    }
                }
                CommandKind::CancelRequested => match &policy {
                    CancelPolicy::Ignore => {}
                    CancelPolicy::Refuse(reason) => {
                        query.refuse(&command.id, CommandKind::CancelRequested, reason);
                    }
                    CancelPolicy::Decide => {
                        let Some(mut current) = query.get(&command.id) else {
                            continue;
                        };
                        let status =
                            Status::from_proto(OrderStatus::try_from(current.status).unwrap())
                                .unwrap();
                        if status.cancellable() {
                            current.status = OrderStatus::Cancelled as i32;
                            query.put(current);
                        } else {
                            query.refuse(
                                &command.id,
                                CommandKind::CancelRequested,
                                "the order is already being brewed",
                            );
                        }
                    }
                },
                CommandKind::Claimed | CommandKind::Brewed => {}
            }
        }
    });
    stop
}

// --------------------------------------------------------------------- Kafka

/// The number of partitions of `topic`.
pub fn partitions(topic: &str) -> i32 {
    let consumer: BaseConsumer = testkit::kafka().client_config().create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0].partitions().len() as i32
}

/// A record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub command: OrderCommand,
    pub request_id: Option<String>,
}

/// Every record on `topic` now. The producer answers only after Kafka
/// acknowledged, so once the requests have returned, the end offsets are
/// final and reading up to them reads exactly what was written.
pub fn read_all(topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = testkit::kafka()
        .client_config()
        .set("group.id", testkit::unique_name("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let partitions = partitions(topic);
    let mut remaining = 0;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        remaining += high - low;
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while remaining > 0 {
        assert!(std::time::Instant::now() < deadline, "records missing");
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.unwrap();
        remaining -= 1;
        let request_id = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == proto::events::REQUEST_ID_HEADER)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        records.push(Record {
            key: String::from_utf8_lossy(message.key().unwrap()).into_owned(),
            command: serde_json::from_slice(message.payload().unwrap()).unwrap(),
            request_id,
        });
    }
    records
}

/// A fresh topic with 3 partitions.
pub async fn topic(prefix: &str) -> String {
    let topic = testkit::unique_name(prefix);
    testkit::kafka().create_topic(&topic, 3).await;
    topic
}

/// A port nobody listens on right now (for "upstream down").
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ------------------------------------------------------------------ services

/// A producer config for tests: free ports on 127.0.0.1, the test broker.
pub fn producer_config(topic: &str, query_url: &str) -> ProducerConfig {
    ProducerConfig {
        server_port: 0,
        grpc_port: 0,
        bind_host: "127.0.0.1".into(),
        kafka_brokers: vec![testkit::kafka().bootstrap_servers().to_owned()],
        kafka_topic: topic.to_owned(),
        consumer_grpc_address: query_url.to_owned(),
        query_timeout_ms: 2_000,
        // Long enough that a decision the in-test decider makes is never
        // mistaken for "pending" on a busy machine; a decision ends the
        // wait at once.
        cancel_wait_ms: 20_000,
        ..ProducerConfig::default()
    }
}

/// A running service and how to stop it.
pub struct Running {
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
    pub registry: prometheus::Registry,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), gateway::GatewayError>>>,
}

impl Running {
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc.unwrap())
    }

    /// Stops the service and checks it ended cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn start_producer(config: ProducerConfig) -> Running {
    let registry = prometheus::Registry::new();
    let producer = Producer::bind(config, None, &registry).await.unwrap();
    let (http, grpc) = (producer.http_addr(), producer.grpc_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(producer.run(async {
        let _ = stopped.await;
    }));
    Running {
        http,
        grpc: Some(grpc),
        registry,
        stop: Some(stop),
        task: Some(task),
    }
}

pub async fn start_gateway(config: GatewayConfig) -> Running {
    let registry = prometheus::Registry::new();
    let gateway = Gateway::bind(config, &registry).await.unwrap();
    let http = gateway.http_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(gateway.run(async {
        let _ = stopped.await;
    }));
    Running {
        http,
        grpc: None,
        registry,
        stop: Some(stop),
        task: Some(task),
    }
}

// ---------------------------------------------------------------- bad inputs

/// A request a client got wrong, and the answer it must get.
pub struct BadInput {
    pub name: &'static str,
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    pub status: u16,
    pub code: &'static str,
}

fn bad(
    name: &'static str,
    method: &'static str,
    path: &str,
    body: impl Into<Bytes>,
    status: u16,
    code: &'static str,
) -> BadInput {
    BadInput {
        name,
        method,
        path: path.to_owned(),
        headers: vec![("content-type", "application/json".to_owned())],
        body: body.into(),
        status,
        code,
    }
}

/// Every bad input the HTTP routes must answer with a documented 4xx
/// (`prefix` is `""` or `"/v1"`).
pub fn bad_inputs(prefix: &str) -> Vec<BadInput> {
    let order = format!("{prefix}/order");
    let orders = format!("{prefix}/orders");
    let body = |name: &str, coffee: &str| {
        serde_json::json!({"customer_name": name, "coffee_type": coffee}).to_string()
    };
    let mut cases = vec![
        bad(
            "malformed JSON",
            "POST",
            &order,
            "{\"customer_name\":",
            400,
            "invalid_json",
        ),
        bad("JSON array", "POST", &order, "[1,2]", 400, "invalid_json"),
        bad(
            "JSON string",
            "POST",
            &order,
            "\"Latte\"",
            400,
            "invalid_json",
        ),
        bad("empty body", "POST", &order, "", 400, "invalid_json"),
        bad(
            "invalid UTF-8",
            "POST",
            &order,
            &b"{\"customer_name\":\"\xff\xfe\"}"[..],
            400,
            "invalid_json",
        ),
        bad(
            "name is a number",
            "POST",
            &order,
            r#"{"customer_name":42,"coffee_type":"Latte"}"#,
            400,
            "invalid_field",
        ),
        bad(
            "coffee is a boolean",
            "POST",
            &order,
            r#"{"customer_name":"Ada","coffee_type":true}"#,
            400,
            "invalid_field",
        ),
        bad(
            "name is an object",
            "POST",
            &order,
            r#"{"customer_name":{"first":"Ada"},"coffee_type":"Latte"}"#,
            400,
            "invalid_field",
        ),
        bad(
            "name is null",
            "POST",
            &order,
            r#"{"customer_name":null,"coffee_type":"Latte"}"#,
            400,
            "missing_field",
        ),
        bad(
            "coffee missing",
            "POST",
            &order,
            r#"{"customer_name":"Ada"}"#,
            400,
            "missing_field",
        ),
        bad("empty object", "POST", &order, "{}", 400, "missing_field"),
        bad(
            "empty name",
            "POST",
            &order,
            body("", "Latte"),
            400,
            "missing_field",
        ),
        bad(
            "whitespace name",
            "POST",
            &order,
            body("   \t ", "Latte"),
            400,
            "missing_field",
        ),
        bad(
            "whitespace coffee",
            "POST",
            &order,
            body("Ada", "  "),
            400,
            "missing_field",
        ),
        bad(
            "10 KB name",
            "POST",
            &order,
            body(&"n".repeat(10 * 1024), "Latte"),
            400,
            "invalid_field",
        ),
        bad(
            "101-character name",
            "POST",
            &order,
            body(&"é".repeat(101), "Latte"),
            400,
            "invalid_field",
        ),
        bad(
            "control character in name",
            "POST",
            &order,
            body("Ada\u{7}", "Latte"),
            400,
            "invalid_field",
        ),
        bad(
            "unknown drink",
            "POST",
            &order,
            body("Ada", "Tea"),
            400,
            "unknown_coffee_type",
        ),
        bad(
            "unknown field",
            "POST",
            &order,
            r#"{"customer_name":"Ada","coffee_type":"Latte","size":"XL"}"#,
            400,
            "unknown_field",
        ),
        bad(
            "huge body",
            "POST",
            &order,
            body(&"x".repeat(200 * 1024), "Latte"),
            413,
            "payload_too_large",
        ),
        bad(
            "GET on /order",
            "GET",
            &order,
            "",
            405,
            "method_not_allowed",
        ),
        bad(
            "DELETE on an order",
            "DELETE",
            &format!("{order}/abc"),
            "",
            405,
            "method_not_allowed",
        ),
        bad(
            "PUT on /orders",
            "PUT",
            &orders,
            "",
            405,
            "method_not_allowed",
        ),
        bad(
            "GET on cancel",
            "GET",
            &format!("{order}/abc/cancel"),
            "",
            405,
            "method_not_allowed",
        ),
        bad(
            "id with a space",
            "GET",
            &format!("{order}/a%20b"),
            "",
            400,
            "invalid_id",
        ),
        bad(
            "id too long",
            "GET",
            &format!("{order}/{}", "a".repeat(65)),
            "",
            400,
            "invalid_id",
        ),
        bad(
            "empty id",
            "GET",
            &format!("{order}/"),
            "",
            400,
            "invalid_id",
        ),
        bad(
            "bad id on cancel",
            "POST",
            &format!("{order}/a!b/cancel"),
            "",
            400,
            "invalid_id",
        ),
        bad(
            "page 0",
            "GET",
            &format!("{orders}?page=0"),
            "",
            400,
            "invalid_query",
        ),
        bad(
            "negative page",
            "GET",
            &format!("{orders}?page=-2"),
            "",
            400,
            "invalid_query",
        ),
        bad(
            "page not a number",
            "GET",
            &format!("{orders}?page=two"),
            "",
            400,
            "invalid_query",
        ),
        bad(
            "page size 0",
            "GET",
            &format!("{orders}?page_size=0"),
            "",
            400,
            "invalid_query",
        ),
        bad(
            "page size too big",
            "GET",
            &format!("{orders}?page_size=1000"),
            "",
            400,
            "invalid_query",
        ),
        bad(
            "unknown status",
            "GET",
            &format!("{orders}?status=ready"),
            "",
            400,
            "invalid_query",
        ),
        bad(
            "unknown query parameter",
            "GET",
            &format!("{orders}?pagesize=5"),
            "",
            400,
            "invalid_query",
        ),
        bad(
            "unknown path",
            "GET",
            &format!("{prefix}/coffee"),
            "",
            404,
            "not_found",
        ),
    ];
    let mut text = bad(
        "text/plain body",
        "POST",
        &order,
        body("Ada", "Latte"),
        415,
        "unsupported_media_type",
    );
    text.headers = vec![("content-type", "text/plain".to_owned())];
    let mut form = bad(
        "form body",
        "POST",
        &order,
        "customer_name=Ada&coffee_type=Latte",
        415,
        "unsupported_media_type",
    );
    form.headers = vec![(
        "content-type",
        "application/x-www-form-urlencoded".to_owned(),
    )];
    let mut key = bad(
        "blank Idempotency-Key",
        "POST",
        &order,
        body("Ada", "Latte"),
        400,
        "invalid_idempotency_key",
    );
    key.headers.push(("idempotency-key", " ".to_owned()));
    let mut long_key = bad(
        "Idempotency-Key too long",
        "POST",
        &order,
        body("Ada", "Latte"),
        400,
        "invalid_idempotency_key",
    );
    long_key.headers.push(("idempotency-key", "k".repeat(300)));
    cases.extend([text, form, key, long_key]);
    cases
}

/// Sends every bad input to `addr` and checks each answer; returns how many
/// were checked.
pub async fn check_bad_inputs(addr: SocketAddr, prefix: &str) -> usize {
    let cases = bad_inputs(prefix);
    for case in &cases {
        let headers: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let reply = send(addr, case.method, &case.path, &headers, case.body.clone()).await;
        assert_eq!(
            (reply.status, reply.error_code().as_str()),
            (case.status, case.code),
            "{}: {:?}",
            case.name,
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{}",
            case.name
        );
    }
    cases.len()
}
