//! The opt-in observe listener (`"observe": {"listen": …}`): `/metrics`
//! for Prometheus, `/api/stats` (the JSON of `edgefc stats`) and the status
//! page at `/`, which draws that JSON. On a loopback address anyone on the
//! machine may read them, as with any local port (but only by an address or
//! `localhost`: a web page that rebinds its own name to 127.0.0.1 gets
//! nothing); on any other address `/metrics` and `/api/stats` need
//! `Authorization: Bearer <token>`, the token kept in the state directory's
//! `observe.token`.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::exposition;
use super::stats::stats;
use crate::runtime::server::AcceptPause;
use crate::runtime::Shared;

/// Connections served at once; more wait in the kernel's backlog. Each
/// serves one request (no keep-alive) within `CONNECTION_TIMEOUT`, so no
/// peer can hold a place for long.
const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read; a scrape's is a few hundred bytes.
const MAX_HEAD_BYTES: usize = 16 << 10;

const PAGE: &str = include_str!("page.html");
const PAGE_SCRIPT: &str = include_str!("page.js");
const PAGE_STYLE: &str = include_str!("page.css");
const FAVICON: &str = include_str!("favicon.svg");

/// Serves the observe listener until `shutdown`; `token`, when set, is
/// what `/metrics` and `/api/stats` require.
pub(in crate::runtime) async fn serve(
    listener: TcpListener,
    shared: Weak<Shared>,
    token: Option<String>,
    shutdown: CancellationToken,
) {
    let token = Arc::new(token);
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut pause = AcceptPause::new("the observe listener");
    loop {
        let place = tokio::select! {
            place = places.clone().acquire_owned() => place,
            _ = shutdown.cancelled() => return,
        };
        let Ok(place) = place else { return };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    if !pause.failed(&error, &shutdown).await {
                        return;
                    }
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        pause.accepted();
        let _ = stream.set_nodelay(true);
        let (shared, token, shutdown) = (shared.clone(), token.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _place = place;
            let service = hyper::service::service_fn(move |request| {
                let response = answer(&shared, token.as_deref(), &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection) => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn answer(shared: &Weak<Shared>, token: Option<&str>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
    }
    if token.is_none() && !names_this_machine(request.headers().get(HOST)) {
        return plain(StatusCode::MISDIRECTED_REQUEST, "ask by address (127.0.0.1) or as localhost\n");
    }
    let path = request.uri().path();
    match path {
        "/" => return respond(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        "/page.js" => return respond(StatusCode::OK, "text/javascript; charset=utf-8", PAGE_SCRIPT),
        "/page.css" => return respond(StatusCode::OK, "text/css; charset=utf-8", PAGE_STYLE),
        "/favicon.svg" | "/favicon.ico" => return respond(StatusCode::OK, "image/svg+xml", FAVICON),
        "/metrics" | "/api/stats" => {}
        _ => return plain(StatusCode::NOT_FOUND, "not found: try /, /metrics or /api/stats\n"),
    }
    if let Some(token) = token {
        if !bearer_matches(request.headers().get(AUTHORIZATION), token) {
            let mut response = plain(
                StatusCode::UNAUTHORIZED,
                "this listener needs Authorization: Bearer <the state directory's observe.token>\n",
            );
            response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    let Some(shared) = shared.upgrade() else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the runtime is stopping\n");
    };
    let stats = stats(&shared);
    if path == "/metrics" {
        return match exposition::encode(stats) {
            Ok(text) => respond(StatusCode::OK, exposition::CONTENT_TYPE, text),
            Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n"),
        };
    }
    match serde_json::to_string(&stats) {
        Ok(json) => respond(StatusCode::OK, "application/json", json),
        Err(error) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot encode the stats: {error}\n")),
    }
}

/// Whether a request's `Host` is an IP address or `localhost` (with any
/// port): a name that resolves to this machine only through a page's own
/// DNS is not, so that page's scripts cannot read a token-free listener.
fn names_this_machine(host: Option<&HeaderValue>) -> bool {
    let Some(host) = host.and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Compares in time independent of where the tokens differ.
fn bearer_matches(header: Option<&HeaderValue>, token: &str) -> bool {
    let Some(given) = header.and_then(|value| value.to_str().ok()).and_then(|value| value.strip_prefix("Bearer ")) else {
        return false;
    };
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", text.to_string())
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // Everything the page needs comes from here; nothing else may run in it.
    headers.insert("content-security-policy", HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"));
    response
}

#[cfg(test)]
mod tests {
    use super::names_this_machine;
    use hyper::header::HeaderValue;

    #[test]
    fn only_addresses_and_localhost_name_this_machine() {
        for host in ["127.0.0.1:9464", "127.0.0.1", "[::1]:9464", "localhost:9464", "LOCALHOST", "192.168.1.5:80"] {
            assert!(names_this_machine(Some(&HeaderValue::from_static(host))), "{host}");
        }
        for host in ["evil.example:9464", "evil.example", "127.0.0.1.evil.example"] {
            assert!(!names_this_machine(Some(&HeaderValue::from_static(host))), "{host}");
        }
        assert!(!names_this_machine(None));
    }
}
