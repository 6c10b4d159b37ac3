//! The HTTP stack shared by the producer and the API gateway: a warp
//! server, and the middleware every route runs behind, in this order:
//!
//! 1. **recovery** — a panic in a handler becomes a 500 JSON error
//!    (`internal`) and the process lives on (warp does not catch panics; the
//!    handling future runs under `catch_unwind`);
//! 2. **logging** — one `tracing` event per request with method, path,
//!    status, latency and request id, and the `http_requests_total` /
//!    `http_request_duration_seconds` metrics by route template;
//! 3. **request id** — an incoming `X-Request-ID` is kept (1 to 128 visible
//!    ASCII characters), else one is generated; it is echoed in the
//!    response, handed to the handler ([`Request::request_id`]) for Kafka
//!    headers and gRPC metadata, and recorded on a span around the handler,
//!    so every log line of the request carries it;
//! 4. **CORS** — allowed origins are configurable, any origin by default.
//!
//! Routing is the handler's business: warp extracts the request once and
//! the handler matches method and path itself, so a wrong method is a 405
//! and an unknown path a 404, each with the JSON error body — never one of
//! warp's plain-text rejections.
//!
//! # Example
//!
//! ```no_run
//! use gateway::http::{self, Cors, HttpMetrics, Request, Stack};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = prometheus::Registry::new();
//! let stack = Stack::new(Cors::permissive(), HttpMetrics::new(&registry, "demo")?);
//! let listener = http::bind("127.0.0.1", 0).await?;
//! let handler = |request: Request| async move {
//!     http::json(http::StatusCode::OK, format!(r#"{{"path":"{}"}}"#, request.path).into())
//! };
//! http::serve(listener, stack, handler, std::future::pending()).await;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use tracing::Instrument;
use warp::Filter;

pub use crate::metrics::HttpMetrics;
pub use http::{Method, StatusCode};

use crate::error::{ApiError, ConfigError, ErrorKind, GatewayError};

/// The header that carries the request id, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The header that makes a `POST` safe to retry.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The response type of handlers.
pub type Response = http::Response<Bytes>;

type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>;

/// An incoming request, as handlers see it.
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, undecoded (`/order/abc`).
    pub path: String,
    /// The raw query string, without `?`, when there is one.
    pub query: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The request id (incoming `X-Request-ID` or generated).
    pub request_id: String,
    body: Option<BodyStream>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// Reads the whole body, refusing more than `limit` bytes with
    /// `payload_too_large` (413) — before reading anything when the
    /// `Content-Length` already says so.
    ///
    /// # Errors
    ///
    /// `payload_too_large` over the limit; `invalid_json` when the body
    /// cannot be read (the client went away or sent a broken chunk).
    pub async fn read_body(&mut self, limit: usize) -> Result<Bytes, ApiError> {
        let too_large = || {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!("the body is larger than the limit of {limit} bytes"),
            )
        };
        let declared = self
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let Some(mut body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        let unreadable = |error: warp::Error| {
            tracing::debug!(%error, "Request body could not be read.");
            ApiError::new(ErrorKind::InvalidJson, "the request body could not be read")
        };
        // The common case is one chunk: keep it without copying.
        let Some(first) = body.next().await.transpose().map_err(unreadable)? else {
            return Ok(Bytes::new());
        };
        if first.len() > limit {
            return Err(too_large());
        }
        let Some(second) = body.next().await.transpose().map_err(unreadable)? else {
            return Ok(first);
        };
        let mut buffer = BytesMut::from(first);
        let mut next = Some(second);
        while let Some(chunk) = next {
            if buffer.len() + chunk.len() > limit {
                return Err(too_large());
            }
            buffer.extend_from_slice(&chunk);
            next = body.next().await.transpose().map_err(unreadable)?;
        }
        Ok(buffer.freeze())
    }
}

/// The route template that answered a request, as a response extension,
/// so the metrics are labelled by template and never by raw path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint(pub &'static str);

/// A JSON response with `status`.
pub fn json(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The JSON response for `error`, with its HTTP status.
pub fn error_response(error: &ApiError) -> Response {
    let mut response = json(error.kind.http_status(), error.to_json());
    if error.kind == ErrorKind::Overloaded {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Which origins may call the service from a browser.
#[derive(Debug, Clone)]
pub struct Cors {
    /// `None` allows any origin.
    origins: Option<Arc<[HeaderValue]>>,
}

/// Methods the services answer, for preflights.
const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET, POST, OPTIONS");
/// Request headers browsers may send.
const ALLOW_HEADERS: HeaderValue =
    HeaderValue::from_static("content-type, idempotency-key, x-request-id");
/// Response headers scripts may read.
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("x-request-id, retry-after");

impl Cors {
    /// Any origin may call (the default, for local use).
    pub fn permissive() -> Self {
        Self { origins: None }
    }

    /// Only `origins` may call; `["*"]` allows any. Each origin is
    /// `scheme://host[:port]`, without a path.
    ///
    /// # Errors
    ///
    /// Names `key` and the first malformed origin.
    pub fn new(key: &str, origins: &[String]) -> Result<Self, ConfigError> {
        if origins.iter().any(|origin| origin == "*") {
            if origins.len() > 1 {
                return Err(ConfigError::new(
                    key,
                    format!("{origins:?}"),
                    "either [\"*\"] alone or a list of origins",
                ));
            }
            return Ok(Self::permissive());
        }
        let mut values = Vec::with_capacity(origins.len());
        for origin in origins {
            let uri: Option<http::Uri> = origin.parse().ok();
            let valid = uri.as_ref().is_some_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some()
                    && uri.path_and_query().is_none_or(|p| p.as_str() == "/")
                    && !origin.ends_with('/')
            });
            let value = HeaderValue::from_str(origin).ok().filter(|_| valid);
            match value {
                Some(value) => values.push(value),
                None => {
                    return Err(ConfigError::new(
                        key,
                        origin,
                        "\"*\" or an origin such as https://shop.example.com or http://localhost:5173",
                    ));
                }
            }
        }
        Ok(Self {
            origins: Some(values.into()),
        })
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if allowed.
    fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match &self.origins {
            None => Some(HeaderValue::from_static("*")),
            Some(list) => list
                .iter()
                .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
                .then(|| origin.clone()),
        }
    }
}

/// The middleware's settings: CORS and the metrics it records.
#[derive(Debug, Clone)]
pub struct Stack {
    cors: Cors,
    metrics: HttpMetrics,
}

impl Stack {
    /// A stack with `cors` recording into `metrics`.
    pub fn new(cors: Cors, metrics: HttpMetrics) -> Self {
        Self { cors, metrics }
    }
}

/// Binds a listener on `host:port` (port 0 picks a free one).
///
/// # Errors
///
/// [`GatewayError::Bind`] naming the address.
pub async fn bind(host: &str, port: u16) -> Result<tokio::net::TcpListener, GatewayError> {
    tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|source| GatewayError::Bind {
            address: format!("{host}:{port}"),
            source,
        })
}

/// Serves `handler` behind the middleware on `listener` until `shutdown`
/// completes, then lets requests in progress finish.
pub async fn serve<H, F>(
    listener: tokio::net::TcpListener,
    stack: Stack,
    handler: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    serve_with_streams(listener, stack, handler, None, shutdown).await;
}

fn into_warp(response: Response) -> warp::reply::Response {
    warp::Reply::into_response(response)
}

/// A route whose answer streams (Server-Sent Events), served before the
/// routes of [`serve`]'s handler; it does its own logging and request id.
pub type StreamingRoute = warp::filters::BoxedFilter<(warp::reply::Response,)>;

/// Like [`serve`], with `streams` tried first.
pub async fn serve_with_streams<H, F>(
    listener: tokio::net::TcpListener,
    stack: Stack,
    handler: H,
    streams: Option<StreamingRoute>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let filter = warp::method()
        .and(warp::path::full())
        .and(
            warp::query::raw()
                .map(Some)
                .or(warp::any().map(|| None))
                .unify(),
        )
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: Option<String>,
                  headers: HeaderMap,
                  body| {
                let request = Request {
                    method,
                    path: path.as_str().to_owned(),
                    query,
                    headers,
                    request_id: String::new(),
                    body: Some(boxed_body(body)),
                };
                recovery(stack.clone(), request, handler.clone())
            },
        );
    let filter = filter.map(into_warp);
    match streams {
        Some(streams) => {
            warp::serve(streams.or(filter).unify())
                .incoming(listener)
                .graceful(shutdown)
                .run()
                .await;
        }
        None => {
            warp::serve(filter)
                .incoming(listener)
                .graceful(shutdown)
                .run()
                .await;
        }
    }
}

/// The body as a boxed stream of `Bytes`.
fn boxed_body<S, B>(body: S) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    Box::pin(body.map_ok(|mut chunk| chunk.copy_to_bytes(chunk.remaining())))
}

/// Outermost: a panic anywhere below becomes a 500 JSON error.
async fn recovery<H, F>(stack: Stack, request: Request, handler: H) -> Response
where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let method = request.method.clone();
    let incoming_id = request.headers.get(X_REQUEST_ID).cloned();
    let started = Instant::now();
    let path_for_panic = request.path.clone();
    match AssertUnwindSafe(logging(&stack, request, &handler))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            tracing::error!(
                %method,
                path = %path_for_panic,
                panic = %message,
                "Request handler panicked; answered 500."
            );
            stack
                .metrics
                .observe(&method, "panic", 500, started.elapsed().as_secs_f64());
            let mut response = error_response(&ApiError::new(
                ErrorKind::Internal,
                "internal error; it has been logged",
            ));
            if let Some(id) =
                incoming_id.filter(|id| crate::validate::acceptable_request_id(id.as_bytes()))
            {
                response.headers_mut().insert(X_REQUEST_ID, id);
            }
            response
        }
    }
}

/// Logs and measures every answered request.
async fn logging<H, F>(stack: &Stack, request: Request, handler: &H) -> Response
where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let started = Instant::now();
    let method = request.method.clone();
    let path = tracing::enabled!(tracing::Level::INFO).then(|| request.path.clone());
    let response = request_id(&stack.cors, request, handler).await;
    let elapsed = started.elapsed();
    let endpoint = response
        .extensions()
        .get::<Endpoint>()
        .map_or("unmatched", |endpoint| endpoint.0);
    let status = response.status().as_u16();
    stack
        .metrics
        .observe(&method, endpoint, status, elapsed.as_secs_f64());
    if let Some(path) = path {
        let request_id = response
            .headers()
            .get(X_REQUEST_ID)
            .and_then(|id| id.to_str().ok())
            .unwrap_or("");
        tracing::info!(
            %method,
            path,
            status,
            latency_us = elapsed.as_micros() as u64,
            request_id,
            "HTTP request."
        );
    }
    response
}

/// The request id a request goes by: the caller's `X-Request-ID` when it
/// is acceptable, else a new one.
pub(crate) fn kept_or_new_request_id(incoming: Option<&[u8]>) -> String {
    incoming
        .filter(|id| crate::validate::acceptable_request_id(id))
        .and_then(|id| std::str::from_utf8(id).ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Keeps or makes the request id, runs the rest in a span carrying it,
/// and echoes it.
async fn request_id<H, F>(cors: &Cors, mut request: Request, handler: &H) -> Response
where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let id = kept_or_new_request_id(request.headers.get(X_REQUEST_ID).map(HeaderValue::as_bytes));
    request.request_id.clone_from(&id);
    let span = tracing::info_span!("http", request_id = %id);
    let mut response = cors_layer(cors, request, handler).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

/// Answers preflights and adds CORS headers for allowed origins.
async fn cors_layer<H, F>(cors: &Cors, request: Request, handler: &H) -> Response
where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let origin = request.headers.get(header::ORIGIN).cloned();
    let preflight = request.method == Method::OPTIONS
        && request
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if let (true, Some(origin)) = (preflight, &origin) {
        let Some(allowed) = cors.allow(origin) else {
            let mut response = error_response(&ApiError::new(
                ErrorKind::OriginNotAllowed,
                format!(
                    "origin {:?} may not call this service",
                    origin.to_str().unwrap_or("(not ASCII)")
                ),
            ));
            response.extensions_mut().insert(Endpoint("preflight"));
            return response;
        };
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
        response.extensions_mut().insert(Endpoint("preflight"));
        return response;
    }
    let mut response = handler(request).await;
    if let Some(allowed) = origin.as_ref().and_then(|origin| cors.allow(origin)) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_are_checked() {
        assert!(Cors::new("cors_allowed_origins", &["*".into()]).is_ok());
        assert!(Cors::new("cors_allowed_origins", &["https://a.example".into()]).is_ok());
        assert!(Cors::new("cors_allowed_origins", &["http://localhost:5173".into()]).is_ok());
        for bad in [
            "a.example",
            "https://a.example/path",
            "https://a.example/",
            "ftp://x",
        ] {
            let error = Cors::new("cors_allowed_origins", &[bad.into()]).unwrap_err();
            assert_eq!(error.value, bad);
        }
        assert!(Cors::new("cors_allowed_origins", &["*".into(), "https://a".into()]).is_err());
        let cors = Cors::new("k", &["https://a.example".into()]).unwrap();
        assert!(
            cors.allow(&HeaderValue::from_static("https://a.example"))
                .is_some()
        );
        assert!(
            cors.allow(&HeaderValue::from_static("https://b.example"))
                .is_none()
        );
    }
}
