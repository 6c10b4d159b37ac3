//! The JSON shapes of the HTTP API, built from the gRPC contract's messages.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use proto::coffee::v1::{
    GetDemandResponse, GetMenuResponse, ListOrdersResponse, Order, OrderStatus,
};
use proto::events::Status;
use serde::Serialize;

/// An order as the HTTP API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct OrderJson<'a> {
    id: &'a str,
    customer_name: &'a str,
    coffee_type: &'a str,
    status: &'static str,
    created_at: String,
    updated_at: String,
    preparation_time_s: u32,
    /// On an update that refused a request: which (`cancel_requested`, `claimed`).
    #[serde(skip_serializing_if = "str::is_empty")]
    refused: &'a str,
    /// Why the latest request about the order was refused.
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
}

impl<'a> From<&'a Order> for OrderJson<'a> {
    fn from(order: &'a Order) -> Self {
        Self {
            id: &order.id,
            customer_name: &order.customer_name,
            coffee_type: &order.coffee_type,
            status: status_name(order.status),
            created_at: rfc3339(order.created_at.as_ref()),
            updated_at: rfc3339(order.updated_at.as_ref()),
            preparation_time_s: order.preparation_time_s,
            refused: &order.refused,
            reason: &order.reason,
        }
    }
}

/// The lower-case name of a gRPC status value (`unspecified` for values
/// this build does not know).
pub(crate) fn status_name(status: i32) -> &'static str {
    OrderStatus::try_from(status)
        .ok()
        .and_then(Status::from_proto)
        .map_or("unspecified", Status::as_str)
}

/// The order's status, if it is a known one.
pub(crate) fn status_of(order: &Order) -> Option<Status> {
    OrderStatus::try_from(order.status)
        .ok()
        .and_then(Status::from_proto)
}

/// A protobuf timestamp from a chrono time.
pub(crate) fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Always below 2e9, so it fits.
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// RFC 3339 in UTC, or an empty string when the time is missing or out of
/// range.
fn rfc3339(at: Option<&prost_types::Timestamp>) -> String {
    at.and_then(|at| DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?))
        .map(|at| at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// An order alone, `{…}` (a live update on the board's event stream).
pub(crate) fn order_only_json(order: &Order) -> Bytes {
    to_bytes(&OrderJson::from(order))
}

/// `{"success":true,"menu":[{"name":…,"preparation_time_s":…}]}`.
pub(crate) fn menu_json(menu: &GetMenuResponse) -> Bytes {
    #[derive(Serialize)]
    struct Item<'a> {
        name: &'a str,
        preparation_time_s: u32,
    }
    #[derive(Serialize)]
    struct Body<'a> {
        success: bool,
        menu: Vec<Item<'a>>,
    }
    to_bytes(&Body {
        success: true,
        menu: menu
            .items
            .iter()
            .map(|item| Item {
                name: &item.name,
                preparation_time_s: item.preparation_time_s,
            })
            .collect(),
    })
}

/// `{"success":true,"windows":[{"coffee_type":…,"window_start":…,"orders":…}]}`.
pub(crate) fn demand_json(demand: &GetDemandResponse) -> Bytes {
    #[derive(Serialize)]
    struct Window<'a> {
        coffee_type: &'a str,
        window_start: String,
        orders: u64,
    }
    #[derive(Serialize)]
    struct Body<'a> {
        success: bool,
        windows: Vec<Window<'a>>,
    }
    to_bytes(&Body {
        success: true,
        windows: demand
            .windows
            .iter()
            .map(|window| Window {
                coffee_type: &window.coffee_type,
                window_start: rfc3339(window.window_start.as_ref()),
                orders: window.orders,
            })
            .collect(),
    })
}

/// `{"success":true,"msg":…,"order":{…}}`.
pub(crate) fn placed_json(message: &str, order: &Order) -> Bytes {
    #[derive(Serialize)]
    struct Body<'a> {
        success: bool,
        msg: &'a str,
        order: OrderJson<'a>,
    }
    to_bytes(&Body {
        success: true,
        msg: message,
        order: order.into(),
    })
}

/// `{"success":true,"order":{…}}`.
pub(crate) fn order_json(order: &Order) -> Bytes {
    #[derive(Serialize)]
    struct Body<'a> {
        success: bool,
        order: OrderJson<'a>,
    }
    to_bytes(&Body {
        success: true,
        order: order.into(),
    })
}

/// `{"success":true,"orders":[…],"total_count":…,"page":…,"page_size":…}`.
pub(crate) fn list_json(list: &ListOrdersResponse) -> Bytes {
    #[derive(Serialize)]
    struct Body<'a> {
        success: bool,
        orders: Vec<OrderJson<'a>>,
        total_count: u64,
        page: u32,
        page_size: u32,
    }
    to_bytes(&Body {
        success: true,
        orders: list.orders.iter().map(OrderJson::from).collect(),
        total_count: list.total_count,
        page: list.page,
        page_size: list.page_size,
    })
}

/// `{"success":true,"msg":…,"cancel":"granted"|"pending","order":{…}}`.
pub(crate) fn cancel_json(message: &str, cancel: &str, order: &Order) -> Bytes {
    #[derive(Serialize)]
    struct Body<'a> {
        success: bool,
        msg: &'a str,
        cancel: &'a str,
        order: OrderJson<'a>,
    }
    to_bytes(&Body {
        success: true,
        msg: message,
        cancel,
        order: order.into(),
    })
}

fn to_bytes(value: &impl Serialize) -> Bytes {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(value).map_or_else(|_| Bytes::new(), Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_render_with_names_and_rfc3339_times() {
        let at = DateTime::parse_from_rfc3339("2026-01-01T08:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let order = Order {
            id: "o-1".into(),
            customer_name: "John Doe".into(),
            coffee_type: "Latte".into(),
            status: OrderStatus::Pending as i32,
            created_at: Some(timestamp(at)),
            updated_at: Some(timestamp(at)),
            preparation_time_s: 60,
            ..Order::default()
        };
        let json: serde_json::Value = serde_json::from_slice(&order_json(&order)).unwrap();
        assert_eq!(
            json["order"],
            serde_json::json!({"id":"o-1","customer_name":"John Doe","coffee_type":"Latte",
                "status":"pending","created_at":"2026-01-01T08:00:00.250Z",
                "updated_at":"2026-01-01T08:00:00.250Z","preparation_time_s":60})
        );
        assert_eq!(status_name(99), "unspecified");
    }
}
