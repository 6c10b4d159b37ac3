//! Input checks shared by the HTTP routes and the gRPC service, so a mistake
//! gets the same code whichever way it arrives.

use proto::coffee::v1::ListOrdersRequest;
use proto::events::Status;
use proto::menu::Menu;

use crate::error::{ApiError, ErrorKind};

/// The most orders one page holds.
pub(crate) const MAX_PAGE_SIZE: u32 = 100;
/// The page size when none is asked for.
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 20;
/// The longest order id accepted.
pub(crate) const MAX_ID_LEN: usize = 64;
/// The longest `Idempotency-Key` accepted.
pub(crate) const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// The longest `X-Request-ID` kept; longer ones are replaced.
pub(crate) const MAX_REQUEST_ID_LEN: usize = 128;

/// The two fields of an order request, as the client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlaceFields {
    pub(crate) customer_name: String,
    pub(crate) coffee_type: String,
}

/// An order request that passed every check: the trimmed name, the
/// menu's name for the drink and its preparation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidOrder {
    pub(crate) customer_name: String,
    pub(crate) coffee_type: String,
    pub(crate) preparation_time_s: u32,
}

/// Parses a `POST /order` body: a JSON object with exactly the string
/// fields `customer_name` and `coffee_type`.
pub(crate) fn parse_place_body(body: &[u8]) -> Result<PlaceFields, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::new(
            ErrorKind::InvalidJson,
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    let serde_json::Value::Object(mut object) = value else {
        return Err(ApiError::new(
            ErrorKind::InvalidJson,
            "the body must be a JSON object with customer_name and coffee_type",
        ));
    };
    if let Some(unknown) = object
        .keys()
        .find(|key| *key != "customer_name" && *key != "coffee_type")
    {
        return Err(ApiError::new(
            ErrorKind::UnknownField,
            format!(
                "unknown field {:?}; accepted fields are customer_name and coffee_type",
                truncate(unknown, 64)
            ),
        ));
    }
    let mut field = |name: &str| match object.remove(name) {
        None | Some(serde_json::Value::Null) => Err(ApiError::new(
            ErrorKind::MissingField,
            format!("{name} is required"),
        )),
        Some(serde_json::Value::String(value)) => Ok(value),
        Some(other) => Err(ApiError::new(
            ErrorKind::InvalidField,
            format!("{name} must be a string, not {}", json_type(&other)),
        )),
    };
    Ok(PlaceFields {
        customer_name: field("customer_name")?,
        coffee_type: field("coffee_type")?,
    })
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Checks an order request: both fields present once trimmed, the name
/// within `max_name_chars` and free of control characters, the drink on the
/// menu (ignoring case; the menu's spelling is kept).
pub(crate) fn validate_order(
    fields: &PlaceFields,
    menu: &Menu,
    max_name_chars: usize,
) -> Result<ValidOrder, ApiError> {
    let customer_name = checked_text("customer_name", &fields.customer_name, max_name_chars)?;
    let coffee_type = checked_text("coffee_type", &fields.coffee_type, max_name_chars)?;
    let Some((name, seconds)) = menu.find(coffee_type) else {
        return Err(ApiError::new(
            ErrorKind::UnknownCoffeeType,
            format!(
                "coffee_type {coffee_type:?} is not on the menu; choose one of {}",
                menu.names()
            ),
        ));
    };
    Ok(ValidOrder {
        customer_name: customer_name.to_owned(),
        coffee_type: name.to_owned(),
        preparation_time_s: seconds,
    })
}

fn checked_text<'a>(name: &str, value: &'a str, max_chars: usize) -> Result<&'a str, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::new(
            ErrorKind::MissingField,
            format!("{name} is required and must not be blank"),
        ));
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(ApiError::new(
            ErrorKind::InvalidField,
            format!("{name} is {chars} characters long; the limit is {max_chars}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorKind::InvalidField,
            format!("{name} must not contain control characters"),
        ));
    }
    Ok(value)
}

/// Checks an order id: 1 to [`MAX_ID_LEN`] ASCII letters, digits, `-`,
/// `_` or `.` (UUIDs, and the ids other tools may have written).
pub(crate) fn validate_id(id: &str) -> Result<&str, ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(id)
    } else {
        Err(ApiError::new(
            ErrorKind::InvalidId,
            format!(
                "order id {:?} is malformed; expected 1 to {MAX_ID_LEN} letters, digits, '-', '_' or '.'",
                truncate(id, 80)
            ),
        ))
    }
}

/// Checks an `Idempotency-Key`: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] printable
/// ASCII characters.
pub(crate) fn validate_idempotency_key(key: &[u8]) -> Result<String, ApiError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.iter().all(|b| (0x20..0x7f).contains(b))
        && key.iter().any(|b| *b != b' ');
    match (ok, std::str::from_utf8(key)) {
        (true, Ok(key)) => Ok(key.to_owned()),
        _ => Err(ApiError::new(
            ErrorKind::InvalidIdempotencyKey,
            format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"
            ),
        )),
    }
}

/// Whether an incoming `X-Request-ID` is kept: 1 to
/// [`MAX_REQUEST_ID_LEN`] visible ASCII characters.
pub(crate) fn acceptable_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| (0x21..0x7f).contains(b))
}

/// The name-value pairs of a query string, in order.
fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or("")).map_err(|error| {
        ApiError::new(
            ErrorKind::InvalidQuery,
            format!("the query string is malformed: {error}"),
        )
    })
}

/// Reads `GET /v1/demand`'s query: an optional `from`, an RFC 3339 time
/// (windows starting at or after it).
pub(crate) fn parse_demand_query(
    query: Option<&str>,
) -> Result<Option<prost_types::Timestamp>, ApiError> {
    let pairs = query_pairs(query)?;
    let mut from = None;
    for (name, value) in pairs {
        match name.as_str() {
            "from" if from.is_none() => {
                let at = chrono::DateTime::parse_from_rfc3339(value.trim()).map_err(|_| {
                    ApiError::new(
                        ErrorKind::InvalidQuery,
                        format!(
                            "from {:?} is not an RFC 3339 time such as 2026-01-01T08:00:00Z",
                            truncate(&value, 64)
                        ),
                    )
                })?;
                from = Some(crate::model::timestamp(at.with_timezone(&chrono::Utc)));
            }
            "from" => {
                return Err(ApiError::new(
                    ErrorKind::InvalidQuery,
                    "query parameter \"from\" is given twice",
                ));
            }
            other => {
                return Err(ApiError::new(
                    ErrorKind::InvalidQuery,
                    format!(
                        "unknown query parameter {:?}; /v1/demand takes from",
                        truncate(other, 64)
                    ),
                ));
            }
        }
    }
    Ok(from)
}

/// Parses the query string of `GET /orders`:
/// `status`, `customer`, `page` (from 1) and `page_size` (1 to
/// [`MAX_PAGE_SIZE`]). Empty values mean "not set"; anything else is an
/// error, unknown parameters included (a typo should not silently list
/// everything).
pub(crate) fn parse_list_query(
    query: Option<&str>,
    max_name_chars: usize,
) -> Result<ListOrdersRequest, ApiError> {
    let pairs = query_pairs(query)?;
    let mut request = ListOrdersRequest::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &pairs {
        if seen.contains(&name.as_str()) {
            return Err(ApiError::new(
                ErrorKind::InvalidQuery,
                format!("query parameter {:?} is given twice", truncate(name, 64)),
            ));
        }
        seen.push(name);
        let value = value.trim();
        match name.as_str() {
            "page" if !value.is_empty() => request.page = positive("page", value, u32::MAX)?,
            "page_size" if !value.is_empty() => {
                request.page_size = positive("page_size", value, MAX_PAGE_SIZE)?;
            }
            "status" if !value.is_empty() => {
                let status: Status = value
                    .parse()
                    .map_err(|message: String| ApiError::new(ErrorKind::InvalidQuery, message))?;
                request.status = status.to_proto() as i32;
            }
            "customer" if !value.is_empty() => {
                request.customer_name = checked_customer(value, max_name_chars)?;
            }
            "page" | "page_size" | "status" | "customer" => {}
            other => {
                return Err(ApiError::new(
                    ErrorKind::InvalidQuery,
                    format!(
                        "unknown query parameter {:?}; accepted are status, customer, page and page_size",
                        truncate(other, 64)
                    ),
                ));
            }
        }
    }
    Ok(normalize_list(request))
}

/// Checks a gRPC `ListOrdersRequest`: page 0 means the first, page size 0
/// the default, anything above [`MAX_PAGE_SIZE`] is refused.
pub(crate) fn validate_list_request(
    mut request: ListOrdersRequest,
    max_name_chars: usize,
) -> Result<ListOrdersRequest, ApiError> {
    if request.page_size > MAX_PAGE_SIZE {
        return Err(ApiError::new(
            ErrorKind::InvalidQuery,
            format!(
                "page_size {} is too large; the limit is {MAX_PAGE_SIZE}",
                request.page_size
            ),
        ));
    }
    if proto::coffee::v1::OrderStatus::try_from(request.status).is_err() {
        return Err(ApiError::new(
            ErrorKind::InvalidQuery,
            format!("status {} is not a known order status", request.status),
        ));
    }
    if !request.customer_name.trim().is_empty() {
        request.customer_name = checked_customer(&request.customer_name, max_name_chars)?;
    }
    Ok(normalize_list(request))
}

fn normalize_list(mut request: ListOrdersRequest) -> ListOrdersRequest {
    request.page = request.page.max(1);
    if request.page_size == 0 {
        request.page_size = DEFAULT_PAGE_SIZE;
    }
    request
}

fn checked_customer(value: &str, max_chars: usize) -> Result<String, ApiError> {
    checked_text("customer", value, max_chars)
        .map(str::to_owned)
        .map_err(|error| ApiError::new(ErrorKind::InvalidQuery, error.message))
}

fn positive(name: &str, value: &str, max: u32) -> Result<u32, ApiError> {
    match value.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::new(
            ErrorKind::InvalidQuery,
            format!(
                "{name} {:?} is invalid; expected a whole number from 1 to {max}",
                truncate(value, 32)
            ),
        )),
    }
}

/// At most `max` characters of `text`, for echoing client input in messages.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind<T: std::fmt::Debug>(result: Result<T, ApiError>) -> ErrorKind {
        result.unwrap_err().kind
    }

    #[test]
    fn place_bodies() {
        let ok = parse_place_body(br#"{"customer_name":" Ada ","coffee_type":"latte"}"#).unwrap();
        let valid = validate_order(&ok, &Menu::default(), 100).unwrap();
        assert_eq!(valid.customer_name, "Ada");
        assert_eq!(valid.coffee_type, "Latte");
        assert_eq!(valid.preparation_time_s, 60);
        assert_eq!(kind(parse_place_body(b"{")), ErrorKind::InvalidJson);
        assert_eq!(kind(parse_place_body(b"[1]")), ErrorKind::InvalidJson);
        assert_eq!(
            kind(parse_place_body(
                br#"{"customer_name":"A","coffee_type":"Latte","x":1}"#
            )),
            ErrorKind::UnknownField
        );
        assert_eq!(
            kind(parse_place_body(
                br#"{"customer_name":5,"coffee_type":"Latte"}"#
            )),
            ErrorKind::InvalidField
        );
        assert_eq!(
            kind(parse_place_body(br#"{"coffee_type":"Latte"}"#)),
            ErrorKind::MissingField
        );
        let blank = parse_place_body(br#"{"customer_name":"  ","coffee_type":"Latte"}"#).unwrap();
        assert_eq!(
            kind(validate_order(&blank, &Menu::default(), 100)),
            ErrorKind::MissingField
        );
        let tea = parse_place_body(br#"{"customer_name":"A","coffee_type":"Tea"}"#).unwrap();
        let error = validate_order(&tea, &Menu::default(), 100).unwrap_err();
        assert_eq!(error.kind, ErrorKind::UnknownCoffeeType);
        assert!(
            error
                .message
                .contains("Americano, Cappuccino, Espresso, Latte")
        );
    }

    #[test]
    fn ids_and_keys() {
        assert!(validate_id("4b2c3a4e-1111-2222-3333-444455556666").is_ok());
        for bad in ["", "a b", "a/b", "%20", &"x".repeat(65), "ü"] {
            assert_eq!(kind(validate_id(bad)), ErrorKind::InvalidId, "{bad:?}");
        }
        assert!(validate_idempotency_key(b"key-1").is_ok());
        for bad in [&b""[..], b"   ", b"a\tb", &[b'k'; 256]] {
            assert_eq!(
                kind(validate_idempotency_key(bad)),
                ErrorKind::InvalidIdempotencyKey
            );
        }
    }

    #[test]
    fn list_queries() {
        let request = parse_list_query(None, 100).unwrap();
        assert_eq!((request.page, request.page_size), (1, DEFAULT_PAGE_SIZE));
        let request = parse_list_query(
            Some("status=Brewing&customer=Ada%20L&page=3&page_size=5"),
            100,
        )
        .unwrap();
        assert_eq!(request.status, Status::Brewing.to_proto() as i32);
        assert_eq!(request.customer_name, "Ada L");
        assert_eq!((request.page, request.page_size), (3, 5));
        let request = parse_list_query(Some("status=&customer="), 100).unwrap();
        assert_eq!((request.status, request.customer_name.as_str()), (0, ""));
        for bad in [
            "page=0",
            "page=-1",
            "page=x",
            "page_size=0",
            "page_size=101",
            "status=ready",
            "pagesize=5",
            "page=1&page=2",
        ] {
            assert_eq!(
                kind(parse_list_query(Some(bad), 100)),
                ErrorKind::InvalidQuery,
                "{bad}"
            );
        }
        let grpc = validate_list_request(ListOrdersRequest::default(), 100).unwrap();
        assert_eq!((grpc.page, grpc.page_size), (1, DEFAULT_PAGE_SIZE));
        let too_big = ListOrdersRequest {
            page_size: 1000,
            ..Default::default()
        };
        assert_eq!(
            kind(validate_list_request(too_big, 100)),
            ErrorKind::InvalidQuery
        );
    }
}
