//! The query service (gRPC `QueryService`, port 50052 by default): orders,
//! customer statistics and demand, read from the running pipeline's
//! stores through the engine's interactive queries, and a live feed of
//! decisions.
//!
//! An instance answers from the partitions it hosts. A lookup by key whose
//! partition is elsewhere, or still restoring, gets `UNAVAILABLE` with the
//! reason, so a caller can retry; lists need every partition of the store
//! here (one streams instance, the default deployment), and say so when
//! they are not.

use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::TopologyDescription;
use engine::queries::{Queries, QueryError};
use engine::serdes::{Json, U64, Utf8};
use futures::{Stream, StreamExt};
use proto::coffee::v1::query_service_server::{QueryService, QueryServiceServer};
use proto::coffee::v1::{
    CustomerStats as CustomerStatsReply, DemandWindow, GetCustomerStatsRequest, GetDemandRequest,
    GetDemandResponse, GetMenuRequest, GetMenuResponse, GetOrderRequest, GetOrderResponse,
    GetTopologyRequest, GetTopologyResponse, ListOrdersRequest, ListOrdersResponse, MenuItem,
    Order, OrderStatus, WatchOrdersRequest,
};
use proto::events::{ProcessedOrder, Status};
use proto::menu::Menu;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tonic::{Request, Response};
use tracing::{error, warn};

use crate::model::{CustomerStats, OrderState, Outcome};
use crate::topology::{DEMAND_STORE, STATS_STORE, STATUS_STORE, millis_to_time};

/// Orders per page when a request names none.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// The largest page a request may ask for.
pub const MAX_PAGE_SIZE: u32 = 1_000;
/// Decisions a slow watcher may fall behind by before it misses some.
pub const WATCH_BUFFER: usize = 4_096;

/// The `QueryService` over a running application's stores.
#[derive(Clone)]
pub struct QueryServer {
    queries: Queries,
    decisions: broadcast::Sender<ProcessedOrder>,
    menu: GetMenuResponse,
    topology: GetTopologyResponse,
    /// Set when the server shuts down: open watches end then, so the
    /// graceful shutdown does not wait on them forever.
    closing: watch::Receiver<bool>,
}

impl QueryServer {
    /// A service reading `queries`, streaming what `decisions` carries
    /// (the sender given to [`crate::topology::build`]), and describing
    /// the pipeline's `menu` and `topology`.
    pub fn new(
        queries: Queries,
        decisions: broadcast::Sender<ProcessedOrder>,
        menu: &Menu,
        topology: &TopologyDescription,
    ) -> Self {
        Self {
            queries,
            decisions,
            menu: GetMenuResponse {
                items: menu
                    .items()
                    .map(|(name, seconds)| MenuItem {
                        name: name.to_owned(),
                        preparation_time_s: seconds,
                    })
                    .collect(),
            },
            topology: GetTopologyResponse {
                mermaid: topology.to_mermaid(),
                svg: topology.to_svg(),
            },
            closing: watch::channel(false).1,
        }
    }

    /// Serves the query service, with gRPC health checking and server
    /// reflection, on `listener` until `shutdown` resolves.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let (closing, closed) = watch::channel(false);
        self.closing = closed;
        let shutdown = async move {
            shutdown.await;
            let _ = closing.send(true);
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<QueryServiceServer<QueryServer>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .build_v1();
        let server = tonic::transport::Server::builder();
        let router = server
            .timeout(Duration::from_secs(30))
            .add_service(health_service)
            .add_service(QueryServiceServer::new(self));
        let router = match reflection {
            Ok(reflection) => router.add_service(reflection),
            Err(error) => {
                warn!(%error, "Server reflection is unavailable.");
                router
            }
        };
        router
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                shutdown,
            )
            .await
    }

    /// Runs a blocking store read off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce(Queries) -> Result<T, tonic::Status> + Send + 'static,
    ) -> Result<T, tonic::Status> {
        let queries = self.queries.clone();
        tokio::task::spawn_blocking(move || read(queries))
            .await
            .map_err(|error| {
                error!(%error, "A query panicked.");
                tonic::Status::internal("the query failed")
            })?
    }
}

/// The gRPC status for a query that could not be answered.
fn status_of(error: QueryError) -> tonic::Status {
    match error {
        QueryError::NotHosted { .. } | QueryError::Restoring { .. } => {
            tonic::Status::unavailable(format!("{error}; retry shortly"))
        }
        other => {
            error!(error = %other, "A query failed.");
            tonic::Status::internal("the pipeline's state could not be read")
        }
    }
}

/// Refuses a list over a store whose partitions are not all here and ready.
fn require_whole(queries: &Queries, store: &str) -> Result<(), tonic::Status> {
    let Some(metadata) = queries.metadata(store) else {
        return Err(tonic::Status::unavailable("the pipeline is starting"));
    };
    let hosted = metadata.hosted.len() as i32;
    if metadata.hosted.values().any(|restoring| *restoring) {
        return Err(tonic::Status::unavailable(
            "the pipeline is restoring its state; retry shortly",
        ));
    }
    if hosted < metadata.partitions {
        return Err(tonic::Status::unavailable(format!(
            "this instance hosts {hosted} of {} partitions of {store}; lists need all of them \
             (retry shortly during a rebalance)",
            metadata.partitions
        )));
    }
    Ok(())
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// An order as the contract shows it.
pub fn order_reply(order: &OrderState) -> Order {
    let (reason, refused) = match &order.last {
        Outcome::Refused {
            command, reason, ..
        } => (reason.clone(), command.as_str().to_owned()),
        _ => (String::new(), String::new()),
    };
    Order {
        id: order.id.clone(),
        customer_name: order.customer_name.clone(),
        coffee_type: order.coffee_type.clone(),
        status: order.status.to_proto().into(),
        created_at: Some(timestamp(order.created_at)),
        updated_at: Some(timestamp(order.updated_at)),
        preparation_time_s: order.preparation_time,
        reason,
        refused,
    }
}

/// A decision as the contract shows an order.
pub fn decision_reply(decision: &ProcessedOrder) -> Order {
    Order {
        id: decision.order_id.clone(),
        customer_name: decision.customer_name.clone(),
        coffee_type: decision.coffee_type.clone(),
        status: decision.status.to_proto().into(),
        created_at: decision.created_at.map(timestamp),
        updated_at: Some(timestamp(decision.processed_at)),
        preparation_time_s: decision.preparation_time,
        reason: decision.reason.clone().unwrap_or_default(),
        refused: decision
            .refused
            .map(|command| command.as_str().to_owned())
            .unwrap_or_default(),
    }
}

type OrderStream = Pin<Box<dyn Stream<Item = Result<Order, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl QueryService for QueryServer {
    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, tonic::Status> {
        let id = request.into_inner().id.trim().to_owned();
        if id.is_empty() {
            return Err(tonic::Status::invalid_argument("the order id is empty"));
        }
        let key = id.clone();
        let order = self
            .blocking(move |queries| {
                queries
                    .get(STATUS_STORE, &key, &Utf8, &Json::<OrderState>::new())
                    .map_err(status_of)
            })
            .await?;
        match order {
            Some(order) => Ok(Response::new(GetOrderResponse {
                success: true,
                message: String::new(),
                order: Some(order_reply(&order)),
            })),
            None => Err(tonic::Status::not_found(format!("no order {id}"))),
        }
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, tonic::Status> {
        let request = request.into_inner();
        let page = request.page.max(1);
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if size > MAX_PAGE_SIZE => {
                return Err(tonic::Status::invalid_argument(format!(
                    "page_size {size} is over the limit of {MAX_PAGE_SIZE}"
                )));
            }
            size => size,
        };
        let status = match OrderStatus::try_from(request.status) {
            Ok(status) => Status::from_proto(status),
            Err(_) => {
                return Err(tonic::Status::invalid_argument(format!(
                    "unknown status {}",
                    request.status
                )));
            }
        };
        let customer = request.customer_name.trim().to_owned();
        let mut orders = self
            .blocking(move |queries| {
                require_whole(&queries, STATUS_STORE)?;
                let all = queries
                    .range(STATUS_STORE, None, None, &Utf8, &Json::<OrderState>::new())
                    .map_err(status_of)?;
                Ok(all
                    .into_iter()
                    .map(|(_, order)| order)
                    .filter(|order| status.is_none_or(|s| order.status == s))
                    .filter(|order| customer.is_empty() || order.customer_name == customer)
                    .collect::<Vec<_>>())
            })
            .await?;
        // Newest first; the id breaks ties so pages never overlap.
        orders.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        let total_count = orders.len() as u64;
        let skip = (page as usize - 1).saturating_mul(page_size as usize);
        let orders = orders
            .iter()
            .skip(skip)
            .take(page_size as usize)
            .map(order_reply)
            .collect();
        Ok(Response::new(ListOrdersResponse {
            orders,
            total_count,
            page,
            page_size,
        }))
    }

    async fn get_customer_stats(
        &self,
        request: Request<GetCustomerStatsRequest>,
    ) -> Result<Response<CustomerStatsReply>, tonic::Status> {
        let customer = request.into_inner().customer_name.trim().to_owned();
        if customer.is_empty() {
            return Err(tonic::Status::invalid_argument("customer_name is empty"));
        }
        let key = customer.clone();
        let stats = self
            .blocking(move |queries| {
                queries
                    .get(STATS_STORE, &key, &Utf8, &Json::<CustomerStats>::new())
                    .map_err(status_of)
            })
            .await?
            .ok_or_else(|| tonic::Status::not_found(format!("no orders from {customer}")))?;
        Ok(Response::new(CustomerStatsReply {
            customer_name: stats.customer_name,
            orders_placed: stats.orders_placed,
            orders_completed: stats.orders_completed,
            orders_cancelled: stats.orders_cancelled,
            favourite_drink: stats.favourite_drink,
        }))
    }

    async fn get_demand(
        &self,
        request: Request<GetDemandRequest>,
    ) -> Result<Response<GetDemandResponse>, tonic::Status> {
        let request = request.into_inner();
        let from = request.from.map_or(i64::MIN, |from| {
            from.seconds
                .saturating_mul(1_000)
                .saturating_add(i64::from(from.nanos) / 1_000_000)
        });
        let drink = request.coffee_type.trim().to_owned();
        let windows = self
            .blocking(move |queries| {
                require_whole(&queries, DEMAND_STORE)?;
                queries
                    .all_windows(DEMAND_STORE, from, i64::MAX, &Utf8, &U64)
                    .map_err(status_of)
            })
            .await?;
        let windows = windows
            .into_iter()
            .filter(|(window, _)| drink.is_empty() || window.key.eq_ignore_ascii_case(&drink))
            .map(|(window, orders)| DemandWindow {
                coffee_type: window.key,
                window_start: Some(timestamp(millis_to_time(window.start))),
                orders,
            })
            .collect();
        Ok(Response::new(GetDemandResponse { windows }))
    }

    async fn get_menu(
        &self,
        _request: Request<GetMenuRequest>,
    ) -> Result<Response<GetMenuResponse>, tonic::Status> {
        Ok(Response::new(self.menu.clone()))
    }

    async fn get_topology(
        &self,
        _request: Request<GetTopologyRequest>,
    ) -> Result<Response<GetTopologyResponse>, tonic::Status> {
        Ok(Response::new(self.topology.clone()))
    }

    type WatchOrdersStream = OrderStream;

    async fn watch_orders(
        &self,
        request: Request<WatchOrdersRequest>,
    ) -> Result<Response<Self::WatchOrdersStream>, tonic::Status> {
        let id = request.into_inner().id.trim().to_owned();
        let receiver = self.decisions.subscribe();
        let mut closing = self.closing.clone();
        let closed = async move {
            let _ = closing.wait_for(|closing| *closing).await;
        };
        let updates = futures::stream::unfold(receiver, move |mut receiver| {
            let id = id.clone();
            async move {
                loop {
                    match receiver.recv().await {
                        Ok(decision) if id.is_empty() || decision.order_id == id => {
                            return Some((Ok(decision_reply(&decision)), receiver));
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            // Tell the watcher it missed updates rather than
                            // pretend the feed is complete.
                            return Some((
                                Err(tonic::Status::data_loss(format!(
                                    "the watcher fell {missed} updates behind; read the \
                                     current state and watch again"
                                ))),
                                receiver,
                            ));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(updates.take_until(closed))))
    }
}
