//! The web console (`/console`) and the API reference (`/docs`): static pages compiled into the
//! binary from `crates/seedgate/web/` (built from `console/` with `npm run build`), so a
//! server needs no network and no files beside it to serve them. They talk to the same public
//! API as every other client.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use super::error::not_found;

struct Page {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// The document's Content-Security-Policy; None for scripts and styles.
    policy: Option<&'static str>,
}

macro_rules! page {
    ($name:literal, $content_type:expr, $policy:expr) => {
        Page {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../web/", $name)),
            policy: $policy,
        }
    };
}

/// The console loads scripts and styles only from this server; results may come from a
/// bucket's signed URLs, so media and images may come from anywhere.
const CONSOLE_POLICY: &str = "default-src 'self'; img-src * data: blob:; media-src * blob:; \
    style-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The reference needs nothing from elsewhere (the renderer would fetch its vendor's logo).
const DOCS_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
    style-src 'self' 'unsafe-inline'; worker-src 'self' blob:; object-src 'none'; \
    frame-ancestors 'none'; base-uri 'none'";

const HTML: &str = "text/html; charset=utf-8";
const SCRIPT: &str = "text/javascript; charset=utf-8";

const PAGES: [Page; 6] = [
    page!("console.html", HTML, Some(CONSOLE_POLICY)),
    page!("console.js", SCRIPT, None),
    page!("console.css", "text/css; charset=utf-8", None),
    page!("docs.html", HTML, Some(DOCS_POLICY)),
    page!("docs.js", SCRIPT, None),
    page!("redoc.standalone.js", SCRIPT, None),
];

/// Each page's entity tag, a hash of its bytes: names do not change between releases, so
/// browsers revalidate every load and get `304` until the binary changes.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    PAGES
        .iter()
        .map(|page| {
            let digest = Sha256::digest(page.body);
            // Quotes and hex digits are always a valid header value.
            HeaderValue::try_from(format!("\"{}\"", hex::encode(&digest[..12])))
                .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
        })
        .collect()
});

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(index) = PAGES.iter().position(|page| page.name == name) else {
        return not_found().into_response();
    };
    let page = &PAGES[index];
    let etag = &ETAGS[index];
    let mut response = if request.get(header::IF_NONE_MATCH) == Some(etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, page.content_type)], page.body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(policy) = page.policy {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(policy),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A person who opens the server's address wants the console, not an API error.
pub async fn home() -> Redirect {
    Redirect::temporary("/console")
}

pub async fn console(headers: HeaderMap) -> Response {
    serve("console.html", &headers)
}

pub async fn docs(headers: HeaderMap) -> Response {
    serve("docs.html", &headers)
}

/// The pages' scripts and styles.
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}
