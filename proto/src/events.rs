//! The JSON records on the coffee topics — the part of the contract that
//! travels through Kafka rather than gRPC.
//!
//! Every command about an order goes to [`ORDERS_TOPIC`] keyed by the
//! order id, so one partition orders them and one task of the streams
//! application decides ([`OrderCommand`]). The decisions go to
//! [`PROCESSED_TOPIC`], keyed by order id too ([`ProcessedOrder`]).
//!
//! ```
//! use proto::events::{CommandKind, OrderCommand, Status};
//!
//! // A record written by the original producer: an order without a `type`.
//! let json = r#"{"id":"o-1","customer_name":"John Doe","coffee_type":"Latte",
//!     "status":"pending","created_at":"2026-01-01T08:00:00Z","updated_at":"2026-01-01T08:00:00Z"}"#;
//! let command: OrderCommand = serde_json::from_str(json)?;
//! assert_eq!(command.kind, CommandKind::Placed);
//! assert_eq!(command.status, Some(Status::Pending));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Commands about orders: placed, cancel requests, the barista's claims and reports.
pub const ORDERS_TOPIC: &str = "coffee_orders";
/// Decisions about orders: processing, brewing, completed, cancelled, refusals.
pub const PROCESSED_TOPIC: &str = "processed_orders";
/// Commands the pipeline could not accept, with the reason in a header.
pub const REJECTED_TOPIC: &str = "rejected_orders";
/// Per-customer statistics, keyed by customer name.
pub const CUSTOMER_STATS_TOPIC: &str = "customer_stats";
/// Orders per coffee type per minute, keyed by coffee type and window start.
pub const DEMAND_TOPIC: &str = "coffee_demand";
/// The Kafka header that carries the HTTP request id of the request that
/// caused a record.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Placed; the pipeline has not yet accepted it.
    Pending,
    /// Accepted; waiting for a barista.
    Processing,
    /// A barista is making it.
    Brewing,
    /// Ready.
    Completed,
    /// Cancelled before it was brewed.
    Cancelled,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Processing,
        Status::Brewing,
        Status::Completed,
        Status::Cancelled,
    ];

    /// The lower-case name used in JSON and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Brewing => "brewing",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Whether a cancel request is still granted in this status.
    pub fn cancellable(self) -> bool {
        matches!(self, Status::Pending | Status::Processing)
    }

    /// Whether nothing more happens to an order in this status.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Cancelled)
    }

    /// The gRPC enum value of this status.
    pub fn to_proto(self) -> crate::coffee::v1::OrderStatus {
        use crate::coffee::v1::OrderStatus;
        match self {
            Status::Pending => OrderStatus::Pending,
            Status::Processing => OrderStatus::Processing,
            Status::Brewing => OrderStatus::Brewing,
            Status::Completed => OrderStatus::Completed,
            Status::Cancelled => OrderStatus::Cancelled,
        }
    }

    /// The status of a gRPC enum value; `None` for `UNSPECIFIED`.
    pub fn from_proto(status: crate::coffee::v1::OrderStatus) -> Option<Self> {
        use crate::coffee::v1::OrderStatus;
        match status {
            OrderStatus::Unspecified => None,
            OrderStatus::Pending => Some(Status::Pending),
            OrderStatus::Processing => Some(Status::Processing),
            OrderStatus::Brewing => Some(Status::Brewing),
            OrderStatus::Completed => Some(Status::Completed),
            OrderStatus::Cancelled => Some(Status::Cancelled),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(value.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown status {value:?}; expected one of pending, processing, brewing, \
                     completed, cancelled"
                )
            })
    }
}

/// What a command on [`ORDERS_TOPIC`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// A new order. The default: the original producer wrote orders
    /// without a `type` field.
    #[default]
    Placed,
    /// A customer asks to cancel.
    CancelRequested,
    /// A barista asks to start brewing.
    Claimed,
    /// A barista reports the drink is ready.
    Brewed,
}

impl CommandKind {
    /// The snake-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Placed => "placed",
            CommandKind::CancelRequested => "cancel_requested",
            CommandKind::Claimed => "claimed",
            CommandKind::Brewed => "brewed",
        }
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command about one order, on [`ORDERS_TOPIC`], keyed by its `id`.
///
/// A `placed` command has the original system's Order shape: `id`,
/// `customer_name`, `coffee_type`, `status` (`pending`), `created_at` and
/// `updated_at`. The other commands need only `type`, `id` and
/// `updated_at` (when they were issued), and `barista` for claims and
/// reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCommand {
    /// What the command asks for.
    #[serde(rename = "type", default)]
    pub kind: CommandKind,
    /// The order id; also the record key.
    pub id: String,
    /// Who ordered (placed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub customer_name: String,
    /// What was ordered (placed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub coffee_type: String,
    /// `pending` on placed orders, as the original producer wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// When the order was placed (placed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// When this command was issued.
    pub updated_at: DateTime<Utc>,
    /// Which barista claims or reports (claimed, brewed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barista: Option<String>,
}

impl OrderCommand {
    /// A new order, `pending`, placed at `at`.
    pub fn placed(id: &str, customer_name: &str, coffee_type: &str, at: DateTime<Utc>) -> Self {
        Self {
            kind: CommandKind::Placed,
            id: id.to_owned(),
            customer_name: customer_name.to_owned(),
            coffee_type: coffee_type.to_owned(),
            status: Some(Status::Pending),
            created_at: Some(at),
            updated_at: at,
            barista: None,
        }
    }

    /// A command about an existing order, issued at `at`.
    pub fn about(kind: CommandKind, id: &str, at: DateTime<Utc>) -> Self {
        Self {
            kind,
            id: id.to_owned(),
            customer_name: String::new(),
            coffee_type: String::new(),
            status: None,
            created_at: None,
            updated_at: at,
            barista: None,
        }
    }

    /// Sets the barista (claims and reports).
    pub fn by(mut self, barista: &str) -> Self {
        self.barista = Some(barista.to_owned());
        self
    }
}

/// A decision about one order, on [`PROCESSED_TOPIC`], keyed by
/// `order_id`: the original system's ProcessedOrder shape, plus what a
/// refusal needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessedOrder {
    /// The order id.
    pub order_id: String,
    /// Who ordered.
    pub customer_name: String,
    /// What was ordered, as the menu names it.
    pub coffee_type: String,
    /// The order's status after this decision.
    pub status: Status,
    /// When the decision was made.
    pub processed_at: DateTime<Utc>,
    /// Seconds the drink takes to prepare, from the menu.
    pub preparation_time: u32,
    /// When the order was placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Set when this record refuses a request: which one (the status is
    /// then unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<CommandKind>,
    /// Why the request was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_omit_what_they_do_not_need() {
        let at = DateTime::parse_from_rfc3339("2026-01-01T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let cancel = OrderCommand::about(CommandKind::CancelRequested, "o-1", at);
        let json = serde_json::to_string(&cancel).unwrap();
        assert_eq!(
            json,
            r#"{"type":"cancel_requested","id":"o-1","updated_at":"2026-01-01T08:00:00Z"}"#
        );
        assert_eq!(serde_json::from_str::<OrderCommand>(&json).unwrap(), cancel);
        let placed = OrderCommand::placed("o-2", "Ada", "Latte", at);
        let json = serde_json::to_string(&placed).unwrap();
        assert_eq!(serde_json::from_str::<OrderCommand>(&json).unwrap(), placed);
    }

    #[test]
    fn statuses_parse_case_insensitively_and_name_the_valid_ones() {
        assert_eq!("Brewing".parse::<Status>(), Ok(Status::Brewing));
        assert!("ready".parse::<Status>().unwrap_err().contains("cancelled"));
        for status in Status::ALL {
            assert_eq!(Status::from_proto(status.to_proto()), Some(status));
        }
    }
}
