//! What the producer does, whichever protocol asked: place, read, list and
//! cancel orders.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use proto::coffee::v1::{ListOrdersRequest, ListOrdersResponse, Order, OrderStatus};
use proto::events::{CommandKind, OrderCommand, Status};
use proto::menu::Menu;

use super::ProducerConfig;
use crate::error::{ApiError, ErrorKind};
use crate::idempotency::{self, IdempotencyCache};
use crate::kafka::OrderWriter;
use crate::metrics::OrderMetrics;
use crate::model::{self, status_of};
use crate::query::QueryClient;
use crate::routes::{Backend, Call, CancelOutcome};
use crate::validate::{self, PlaceFields, ValidOrder};

/// How often a cancel polls the order when the query service cannot
/// stream its changes.
const CANCEL_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long a cancel waits for an order the pipeline does not know yet
/// (placed a moment ago) before answering 404.
const VISIBILITY_WAIT: Duration = Duration::from_millis(1_500);

/// The producer's core.
pub(crate) struct Core {
    menu: Menu,
    max_name_chars: usize,
    cancel_wait: Duration,
    writer: OrderWriter,
    query: QueryClient,
    idempotency: IdempotencyCache,
    metrics: OrderMetrics,
}

impl Core {
    pub(crate) fn new(
        config: &ProducerConfig,
        writer: OrderWriter,
        query: QueryClient,
        metrics: OrderMetrics,
    ) -> Self {
        Self {
            menu: config.menu.clone(),
            max_name_chars: config.max_name_chars,
            cancel_wait: Duration::from_millis(config.cancel_wait_ms),
            writer,
            query,
            idempotency: IdempotencyCache::new(
                config.idempotency_cache_capacity,
                Duration::from_secs(config.idempotency_ttl_s),
            ),
            metrics,
        }
    }

    /// Waits up to `timeout` for Kafka writes in flight.
    pub(crate) fn flush(&self, timeout: Duration) {
        self.writer.flush(timeout);
    }

    /// Places an order; returns it once Kafka acknowledged it.
    pub(crate) async fn place(&self, fields: PlaceFields, call: &Call) -> Result<Order, ApiError> {
        let valid = validate::validate_order(&fields, &self.menu, self.max_name_chars)?;
        self.metrics.received.inc();
        let started = Instant::now();
        let result = match &call.idempotency_key {
            None => {
                let order = new_order(&uuid::Uuid::new_v4().to_string(), &valid, Utc::now());
                self.write_placed(&order, call).await.map(|()| order)
            }
            Some(key) => self.place_once(key, &valid, call).await,
        };
        match &result {
            Ok(_) => {
                self.metrics.placed.inc();
                self.metrics
                    .processing
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(error) if error.kind != ErrorKind::IdempotencyKeyReused => {
                self.metrics.failed.inc();
            }
            Err(_) => {}
        }
        result
    }

    /// Places the order an idempotency key stands for, at most once: one
    /// attempt at a time per key in this process, and not at all if the
    /// pipeline already knows the key's order.
    async fn place_once(
        &self,
        key: &str,
        valid: &ValidOrder,
        call: &Call,
    ) -> Result<Order, ApiError> {
        let slot = self
            .idempotency
            .claim(key, &valid.customer_name, &valid.coffee_type)?;
        let result = slot
            .placed
            .get_or_try_init(|| async {
                match self.query.get_order(&slot.order_id, &call.request_id).await {
                    Ok(Some(existing)) => {
                        return if existing.customer_name == valid.customer_name
                            && existing.coffee_type == valid.coffee_type
                        {
                            Ok(existing)
                        } else {
                            Err(idempotency::reused(key))
                        };
                    }
                    Ok(None) => {}
                    // Placing must not depend on the query service; the
                    // pipeline ignores a second `placed` for one id, so the
                    // only loss is the cross-replica body check.
                    Err(error) => tracing::warn!(
                        %error,
                        order_id = %slot.order_id,
                        "Query service unavailable; placing without the cross-replica idempotency check."
                    ),
                }
                let order = new_order(&slot.order_id, valid, slot.created_at);
                self.write_placed(&order, call).await?;
                Ok(order)
            })
            .await
            .cloned();
        if result
            .as_ref()
            .is_err_and(|error| error.kind == ErrorKind::IdempotencyKeyReused)
        {
            self.idempotency.forget(key, &slot);
        }
        result
    }

    async fn write_placed(&self, order: &Order, call: &Call) -> Result<(), ApiError> {
        let at = order
            .created_at
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
            .unwrap_or_else(Utc::now);
        let command = OrderCommand::placed(&order.id, &order.customer_name, &order.coffee_type, at);
        self.write(&command, call).await
    }

    async fn write(&self, command: &OrderCommand, call: &Call) -> Result<(), ApiError> {
        let value = serde_json::to_vec(command).map_err(|error| {
            tracing::error!(%error, "An order command could not be encoded.");
            ApiError::new(ErrorKind::Internal, "the order could not be encoded")
        })?;
        self.writer
            .write(&command.id, &value, &call.request_id)
            .await
    }

    /// The order with `id`, from the query service.
    pub(crate) async fn get(&self, id: &str, call: &Call) -> Result<Order, ApiError> {
        let id = validate::validate_id(id)?;
        self.query
            .get_order(id, &call.request_id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// A page of orders, from the query service.
    pub(crate) async fn list(
        &self,
        request: ListOrdersRequest,
        call: &Call,
    ) -> Result<ListOrdersResponse, ApiError> {
        let request = validate::validate_list_request(request, self.max_name_chars)?;
        self.query.list_orders(request, &call.request_id).await
    }

    /// Asks the pipeline to cancel `id` and waits a bounded time for its
    /// decision.
    ///
    /// The current status is checked first (unknown → 404, brewing or
    /// done → 409). Then the order's changes are watched *before* the
    /// request is published, so the decision cannot slip by unseen; when
    /// the query service cannot stream, the order is polled instead.
    pub(crate) async fn cancel(&self, id: &str, call: &Call) -> Result<CancelOutcome, ApiError> {
        let id = validate::validate_id(id)?;
        // Watch first, so no decision between the read and the wait is missed.
        let mut watch = match self.query.watch(id, &call.request_id).await {
            Ok(stream) => Some(stream),
            Err(status) => {
                tracing::info!(
                    code = ?status.code(),
                    error = %status.message(),
                    "Cannot watch the order; polling for the cancel decision."
                );
                None
            }
        };
        let order = match self.query.get_order(id, &call.request_id).await? {
            Some(order) => order,
            // Kafka may have the order while the pipeline has not decided
            // it yet (a cancel right after placing): wait a moment for it
            // to appear before calling it unknown.
            None => self
                .await_visible(id, call, watch.as_mut())
                .await?
                .ok_or_else(|| not_found(id))?,
        };
        match status_of(&order) {
            Some(Status::Cancelled) => return Ok(CancelOutcome::Granted(order)),
            Some(status) if !status.cancellable() => return Err(too_late(id, status, "")),
            _ => {}
        }
        let command = OrderCommand::about(CommandKind::CancelRequested, id, Utc::now());
        self.write(&command, call).await?;
        let deadline = tokio::time::Instant::now() + self.cancel_wait;
        let mut latest = order;
        if let Some(stream) = watch.as_mut() {
            loop {
                match tokio::time::timeout_at(deadline, stream.message()).await {
                    Err(_elapsed) => return Ok(CancelOutcome::Pending(latest)),
                    Ok(Ok(Some(update))) => {
                        if update.id != id {
                            continue;
                        }
                        if update.refused == CommandKind::CancelRequested.as_str() {
                            let status = status_of(&update).unwrap_or(Status::Brewing);
                            return Err(too_late(id, status, &update.reason));
                        }
                        if update.status == OrderStatus::Cancelled as i32 {
                            return Ok(CancelOutcome::Granted(update));
                        }
                        latest = update;
                    }
                    Ok(Ok(None) | Err(_)) => {
                        tracing::info!("The order watch ended; polling for the cancel decision.");
                        break;
                    }
                }
            }
        }
        // Polling: the decision shows as the order's status.
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(CancelOutcome::Pending(latest));
            }
            tokio::time::sleep_until((now + CANCEL_POLL_INTERVAL).min(deadline)).await;
            let Ok(Some(order)) = self.query.get_order(id, &call.request_id).await else {
                continue;
            };
            match status_of(&order) {
                Some(Status::Cancelled) => return Ok(CancelOutcome::Granted(order)),
                Some(status) if !status.cancellable() => {
                    return Err(too_late(id, status, &order.reason));
                }
                _ => latest = order,
            }
        }
    }
}

impl Core {
    /// Waits up to [`VISIBILITY_WAIT`] for the pipeline to decide on order
    /// `id`: on the watch when there is one, else by polling.
    async fn await_visible(
        &self,
        id: &str,
        call: &Call,
        watch: Option<&mut tonic::Streaming<Order>>,
    ) -> Result<Option<Order>, ApiError> {
        let deadline = tokio::time::Instant::now() + VISIBILITY_WAIT;
        if let Some(stream) = watch {
            while let Ok(Ok(Some(update))) =
                tokio::time::timeout_at(deadline, stream.message()).await
            {
                if update.id == id {
                    return Ok(Some(update));
                }
            }
            return self.query.get_order(id, &call.request_id).await;
        }
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep_until((now + CANCEL_POLL_INTERVAL).min(deadline)).await;
            if let Some(order) = self.query.get_order(id, &call.request_id).await? {
                return Ok(Some(order));
            }
        }
    }
}

impl Backend for Core {
    async fn place(&self, fields: PlaceFields, call: Call) -> Result<Order, ApiError> {
        Core::place(self, fields, &call).await
    }

    async fn get(&self, id: String, call: Call) -> Result<Order, ApiError> {
        Core::get(self, &id, &call).await
    }

    async fn list(
        &self,
        request: ListOrdersRequest,
        call: Call,
    ) -> Result<ListOrdersResponse, ApiError> {
        Core::list(self, request, &call).await
    }

    async fn cancel(&self, id: String, call: Call) -> Result<CancelOutcome, ApiError> {
        Core::cancel(self, &id, &call).await
    }
}

/// A new pending order.
fn new_order(id: &str, valid: &ValidOrder, at: DateTime<Utc>) -> Order {
    Order {
        id: id.to_owned(),
        customer_name: valid.customer_name.clone(),
        coffee_type: valid.coffee_type.clone(),
        status: OrderStatus::Pending as i32,
        created_at: Some(model::timestamp(at)),
        updated_at: Some(model::timestamp(at)),
        preparation_time_s: valid.preparation_time_s,
        reason: String::new(),
        refused: String::new(),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorKind::OrderNotFound, format!("no order with id {id}"))
}

/// A cancel refused because the order is past `processing`.
fn too_late(id: &str, status: Status, reason: &str) -> ApiError {
    let reason = if reason.is_empty() {
        "a cancel is granted only while an order is pending or processing".to_owned()
    } else {
        reason.to_owned()
    };
    ApiError::new(
        ErrorKind::CancelRefused,
        format!("order {id} cannot be cancelled: it is {status}; {reason}"),
    )
}
