//! The HTTP routes of the producer and the API gateway, over a
//! [`Backend`] that places, reads, lists and cancels orders (the producer's
//! own core, or the gateway's gRPC clients).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use proto::coffee::v1::{
    GetDemandResponse, GetMenuResponse, ListOrdersRequest, ListOrdersResponse, Order,
};

use crate::error::{ApiError, ErrorKind};
use crate::http::{self as web, Endpoint, IDEMPOTENCY_KEY, Method, Request, Response, StatusCode};
use crate::model;
use crate::validate::{self, PlaceFields};

/// What a call carries besides its message.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The HTTP request id (or the gRPC caller's).
    pub(crate) request_id: String,
    /// A validated `Idempotency-Key`, when given.
    pub(crate) idempotency_key: Option<String>,
}

/// How a cancel request ended, when it was not refused.
#[derive(Debug, Clone)]
pub(crate) enum CancelOutcome {
    /// The order is cancelled.
    Granted(Order),
    /// The request is published; no decision within the wait.
    Pending(Order),
}

/// The message of a placed order, as the original system wrote it.
pub(crate) fn placed_message(order: &Order) -> String {
    format!("Order for {} placed successfully!", order.customer_name)
}

/// The message of a cancel outcome.
pub(crate) fn cancel_message(outcome: &CancelOutcome) -> String {
    match outcome {
        CancelOutcome::Granted(order) => format!("Order {} is cancelled.", order.id),
        CancelOutcome::Pending(order) => format!(
            "Cancel requested for order {}; the decision is still pending, check the order's status.",
            order.id
        ),
    }
}

/// Places, reads, lists and cancels orders.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Places an order from the client's fields (validated by the backend).
    fn place(
        &self,
        fields: PlaceFields,
        call: Call,
    ) -> impl Future<Output = Result<Order, ApiError>> + Send;
    /// Reads an order by a validated id.
    fn get(&self, id: String, call: Call) -> impl Future<Output = Result<Order, ApiError>> + Send;
    /// Lists a validated page of orders.
    fn list(
        &self,
        request: ListOrdersRequest,
        call: Call,
    ) -> impl Future<Output = Result<ListOrdersResponse, ApiError>> + Send;
    /// Asks to cancel an order by a validated id.
    fn cancel(
        &self,
        id: String,
        call: Call,
    ) -> impl Future<Output = Result<CancelOutcome, ApiError>> + Send;
    /// The drinks on the menu (the board's form). Only the gateway has it.
    fn menu(&self, _call: Call) -> impl Future<Output = Result<GetMenuResponse, ApiError>> + Send {
        async { Err(not_here()) }
    }
    /// Orders per drink per minute since `from` (the board's chart).
    fn demand(
        &self,
        _from: Option<prost_types::Timestamp>,
        _call: Call,
    ) -> impl Future<Output = Result<GetDemandResponse, ApiError>> + Send {
        async { Err(not_here()) }
    }
    /// The pipeline's topology as an SVG picture.
    fn topology_svg(&self, _call: Call) -> impl Future<Output = Result<String, ApiError>> + Send {
        async { Err(not_here()) }
    }
}

/// What a backend without the board's reads answers.
fn not_here() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "this service does not serve the board")
}

/// One matched route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Place,
    Get(&'a str),
    List,
    Cancel(&'a str),
    Health,
    Metrics,
    Board,
    Asset(&'a str),
    Menu,
    Demand,
    Topology,
}

impl Route<'_> {
    /// The one method the route answers.
    fn method(self) -> Method {
        match self {
            Route::Place | Route::Cancel(_) => Method::POST,
            Route::Get(_)
            | Route::List
            | Route::Health
            | Route::Metrics
            | Route::Board
            | Route::Asset(_)
            | Route::Menu
            | Route::Demand
            | Route::Topology => Method::GET,
        }
    }
}

/// Matches a path to a route and its template. `/v1/…` routes exist only
/// when `versioned`.
fn match_route(path: &str, versioned: bool) -> Option<(Route<'_>, &'static str)> {
    // The board: the gateway's page and what it reads.
    if versioned {
        match path {
            "/" | "/index.html" => return Some((Route::Board, "/")),
            "/v1/menu" => return Some((Route::Menu, "/v1/menu")),
            "/v1/demand" => return Some((Route::Demand, "/v1/demand")),
            "/v1/topology.svg" => return Some((Route::Topology, "/v1/topology.svg")),
            _ => {}
        }
        if let Some(name) = path.strip_prefix("/assets/") {
            return Some((Route::Asset(name), "/assets/{name}"));
        }
    }
    let (rest, v1) = match path.strip_prefix("/v1") {
        Some(rest) if versioned && rest.starts_with('/') => (rest, true),
        _ => (path, false),
    };
    let mut segments = rest.strip_prefix('/')?.split('/');
    let first = segments.next()?;
    let second = segments.next();
    let third = segments.next();
    if segments.next().is_some() {
        return None;
    }
    let pick = |plain: &'static str, versioned: &'static str| if v1 { versioned } else { plain };
    Some(match (first, second, third) {
        ("order", None, None) => (Route::Place, pick("/order", "/v1/order")),
        ("order", Some(id), None) => (Route::Get(id), pick("/order/{id}", "/v1/order/{id}")),
        ("order", Some(id), Some("cancel")) => (
            Route::Cancel(id),
            pick("/order/{id}/cancel", "/v1/order/{id}/cancel"),
        ),
        ("orders", None, None) => (Route::List, pick("/orders", "/v1/orders")),
        ("health", None, None) if !v1 => (Route::Health, "/health"),
        ("metrics", None, None) if !v1 => (Route::Metrics, "/metrics"),
        _ => return None,
    })
}

/// The routes over one backend.
pub(crate) struct Routes<B> {
    backend: Arc<B>,
    registry: prometheus::Registry,
    versioned: bool,
    max_body_bytes: usize,
    max_name_chars: usize,
}

impl<B: Backend> Routes<B> {
    pub(crate) fn new(
        backend: Arc<B>,
        registry: prometheus::Registry,
        versioned: bool,
        max_body_bytes: usize,
        max_name_chars: usize,
    ) -> Self {
        Self {
            backend,
            registry,
            versioned,
            max_body_bytes,
            max_name_chars,
        }
    }

    /// Answers one request.
    pub(crate) async fn handle(&self, mut request: Request) -> Response {
        // The path is taken out so the matched route can borrow it while
        // the request's body is read.
        let path = std::mem::take(&mut request.path);
        let Some((route, template)) = match_route(&path, self.versioned) else {
            return web::error_response(&ApiError::new(
                ErrorKind::NotFound,
                format!(
                    "no route for {}; see the API documentation for the routes",
                    validate::truncate(&path, 100)
                ),
            ));
        };
        let allow = if route.method() == Method::POST {
            "POST, OPTIONS"
        } else {
            "GET, OPTIONS"
        };
        let mut response = if request.method == route.method() {
            self.dispatch(route, &mut request)
                .await
                .unwrap_or_else(|error| web::error_response(&error))
        } else if request.method == Method::OPTIONS {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            response
        } else {
            let mut response = web::error_response(&ApiError::new(
                ErrorKind::MethodNotAllowed,
                format!(
                    "{template} does not answer {}; use {}",
                    validate::truncate(request.method.as_str(), 16),
                    route.method()
                ),
            ));
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            response
        };
        response.extensions_mut().insert(Endpoint(template));
        response
    }

    async fn dispatch(
        &self,
        route: Route<'_>,
        request: &mut Request,
    ) -> Result<Response, ApiError> {
        let call = |idempotency_key| Call {
            request_id: request.request_id.clone(),
            idempotency_key,
        };
        match route {
            Route::Place => {
                check_content_type(request)?;
                let key = request
                    .headers
                    .get(IDEMPOTENCY_KEY)
                    .map(|key| validate::validate_idempotency_key(key.as_bytes()))
                    .transpose()?;
                let call = call(key);
                let body = request.read_body(self.max_body_bytes).await?;
                let fields = validate::parse_place_body(&body)?;
                let order = self.backend.place(fields, call).await?;
                Ok(web::json(
                    StatusCode::OK,
                    model::placed_json(&placed_message(&order), &order),
                ))
            }
            Route::Get(id) => {
                let id = validate::validate_id(id)?.to_owned();
                let order = self.backend.get(id, call(None)).await?;
                Ok(web::json(StatusCode::OK, model::order_json(&order)))
            }
            Route::List => {
                let list_request =
                    validate::parse_list_query(request.query.as_deref(), self.max_name_chars)?;
                let list = self.backend.list(list_request, call(None)).await?;
                Ok(web::json(StatusCode::OK, model::list_json(&list)))
            }
            Route::Cancel(id) => {
                let id = validate::validate_id(id)?.to_owned();
                let outcome = self.backend.cancel(id, call(None)).await?;
                let message = cancel_message(&outcome);
                Ok(match &outcome {
                    CancelOutcome::Granted(order) => web::json(
                        StatusCode::OK,
                        model::cancel_json(&message, "granted", order),
                    ),
                    CancelOutcome::Pending(order) => web::json(
                        StatusCode::ACCEPTED,
                        model::cancel_json(&message, "pending", order),
                    ),
                })
            }
            Route::Board => Ok(static_response(
                "text/html; charset=utf-8",
                crate::board::INDEX_HTML,
            )),
            Route::Asset(name) => {
                let (content_type, body) = crate::board::asset(name).ok_or_else(|| {
                    ApiError::new(
                        ErrorKind::NotFound,
                        format!("no asset {}", validate::truncate(name, 100)),
                    )
                })?;
                Ok(static_response(content_type, body))
            }
            Route::Menu => {
                let menu = self.backend.menu(call(None)).await?;
                Ok(web::json(StatusCode::OK, model::menu_json(&menu)))
            }
            Route::Demand => {
                let from = validate::parse_demand_query(request.query.as_deref())?;
                let demand = self.backend.demand(from, call(None)).await?;
                Ok(web::json(StatusCode::OK, model::demand_json(&demand)))
            }
            Route::Topology => {
                let svg = self.backend.topology_svg(call(None)).await?;
                let mut response = Response::new(Bytes::from(svg));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("image/svg+xml"),
                );
                Ok(response)
            }
            Route::Health => Ok(web::json(
                StatusCode::OK,
                Bytes::from_static(br#"{"status":"ok"}"#),
            )),
            Route::Metrics => {
                let text = prometheus::TextEncoder::new()
                    .encode_to_string(&self.registry.gather())
                    .map_err(|error| {
                        tracing::error!(%error, "Metrics could not be encoded.");
                        ApiError::new(ErrorKind::Internal, "metrics could not be encoded")
                    })?;
                let mut response = Response::new(Bytes::from(text));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                Ok(response)
            }
        }
    }
}

/// An embedded file, cacheable for a short while (a new binary may change it).
fn static_response(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::new(Bytes::from_static(body.as_bytes()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `POST /order` takes JSON: `application/json` or any `application/*+json`
/// (a missing `Content-Type` is read as JSON, as curl users expect).
fn check_content_type(request: &Request) -> Result<(), ApiError> {
    let Some(value) = request.headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "Content-Type {:?} is not supported; send application/json",
                validate::truncate(value.to_str().unwrap_or("(not ASCII)"), 64)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_templates() {
        assert_eq!(match_route("/order", false), Some((Route::Place, "/order")));
        assert_eq!(
            match_route("/order/a1", false),
            Some((Route::Get("a1"), "/order/{id}"))
        );
        assert_eq!(
            match_route("/v1/order/a1/cancel", true),
            Some((Route::Cancel("a1"), "/v1/order/{id}/cancel"))
        );
        assert_eq!(match_route("/v1/order", false), None);
        assert_eq!(match_route("/v1/health", true), None);
        assert_eq!(match_route("/order/a/b", false), None);
        assert_eq!(match_route("/", false), None);
        assert_eq!(match_route("/", true), Some((Route::Board, "/")));
        assert_eq!(
            match_route("/assets/app.js", true),
            Some((Route::Asset("app.js"), "/assets/{name}"))
        );
        assert_eq!(match_route("/assets/app.js", false), None);
        assert_eq!(
            match_route("/v1/topology.svg", true),
            Some((Route::Topology, "/v1/topology.svg"))
        );
        assert_eq!(match_route("", false), None);
        assert_eq!(
            match_route("/order/", false),
            Some((Route::Get(""), "/order/{id}"))
        );
    }
}
