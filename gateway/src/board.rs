//! The order board: a web page the API gateway serves at `/`, with its
//! assets embedded in the binary (no CDN), and the live feed it listens
//! to — `GET /v1/events`, Server-Sent Events of every decision the
//! pipeline makes, relayed from the query service's `WatchOrders`.
//!
//! The page (`gateway/assets/`) is plain HTML, CSS and JavaScript: no
//! build step, nothing fetched at run time. It places orders with
//! `POST /v1/order`, reads the menu (`/v1/menu`), the latest orders
//! (`/v1/orders`), demand (`/v1/demand`) and the topology picture
//! (`/v1/topology.svg`), then follows `/v1/events`.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use proto::coffee::v1::WatchOrdersRequest;
use proto::coffee::v1::query_service_client::QueryServiceClient;
use tonic::transport::Channel;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Reply;

use crate::error::{ApiError, ErrorKind};
use crate::http::X_REQUEST_ID;
use crate::model;

/// The page.
pub(crate) const INDEX_HTML: &str = include_str!("../assets/index.html");

/// An embedded asset by file name: its content type and body.
pub(crate) fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "app.js" => Some((
            "text/javascript; charset=utf-8",
            include_str!("../assets/app.js"),
        )),
        "style.css" => Some((
            "text/css; charset=utf-8",
            include_str!("../assets/style.css"),
        )),
        "icon.svg" => Some(("image/svg+xml", include_str!("../assets/icon.svg"))),
        _ => None,
    }
}

/// How often an idle event stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/events`: every decision as an `order` event whose data is the
/// order's JSON. The stream ends when the gateway shuts down (browsers
/// reconnect by themselves) or when the query service's feed ends.
/// `watch` must be a channel without a per-call deadline: the stream is
/// long-lived by design.
pub(crate) fn events(
    watch: Channel,
    shutdown: impl Future<Output = ()> + Send + Clone + Sync + 'static,
) -> BoxedFilter<(warp::reply::Response,)> {
    warp::path!("v1" / "events")
        .and(warp::get())
        .and(warp::header::optional::<String>("x-request-id"))
        .then(move |incoming: Option<String>| {
            let (watch, shutdown) = (watch.clone(), shutdown.clone());
            async move {
                let request_id =
                    crate::http::kept_or_new_request_id(incoming.as_deref().map(str::as_bytes));
                let mut request = tonic::Request::new(WatchOrdersRequest { id: String::new() });
                if let Ok(value) = request_id.parse() {
                    request
                        .metadata_mut()
                        .insert(crate::query::REQUEST_ID_METADATA, value);
                }
                let reply: warp::reply::Response =
                    match QueryServiceClient::new(watch).watch_orders(request).await {
                        Ok(response) => {
                            tracing::info!(request_id, "Board client following decisions.");
                            let updates = response
                                .into_inner()
                                .take_while(|update| {
                                    let go_on = update.is_ok();
                                    async move { go_on }
                                })
                                .filter_map(|update| async move {
                                    let order = update.ok()?;
                                    let json = model::order_only_json(&order);
                                    let data = String::from_utf8(json.to_vec()).ok()?;
                                    Some(Ok::<_, Infallible>(
                                        warp::sse::Event::default().event("order").data(data),
                                    ))
                                })
                                .take_until(shutdown);
                            let stream = warp::sse::keep_alive().interval(KEEP_ALIVE).stream(updates);
                            warp::reply::with_header(
                                warp::sse::reply(stream),
                                X_REQUEST_ID.as_str(),
                                request_id,
                            )
                            .into_response()
                        }
                        Err(status) => {
                            tracing::warn!(
                                code = ?status.code(),
                                error = %status.message(),
                                request_id,
                                "Cannot follow decisions."
                            );
                            let error = ApiError::new(
                                ErrorKind::QueryUnavailable,
                                "live updates are unavailable; the order query service cannot be reached",
                            );
                            crate::http::error_response(&error).into_response()
                        }
                    };
                reply
            }
        })
        .boxed()
}
