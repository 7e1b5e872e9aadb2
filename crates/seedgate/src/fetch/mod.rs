//! The one guarded HTTP client for every URL the gateway fetches on someone's behalf (media
//! inputs, upstream results): http/https and data: URIs only, internal addresses refused unless
//! allow-listed (see [`guard`]), connect/overall timeouts, at most 3 redirects — each one checked
//! again — and a size cap enforced while streaming.

pub mod guard;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use guard::{AddressPolicy, Forbidden, GuardedResolver};

use seedgate_contract::MediaInput;

use crate::config::FetchConfig;

/// Which size cap applies to an input.
#[derive(Clone, Copy, Debug)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
}

/// Why a URL could not be had. The messages name no purpose: callers say whether it was an
/// input, a result or a webhook.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} could not be reached: {reason}")]
    Transport { url: String, reason: String },
    #[error("not an http(s) URL or a valid data: URI")]
    Unsupported,
    #[error("URL refused: {0}")]
    Forbidden(String),
}

impl FetchError {
    /// Stable code for the task's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::TooLarge { .. } => "input_too_large",
            FetchError::Status { .. } | FetchError::Transport { .. } => "input_fetch_failed",
            FetchError::Unsupported => "invalid_media_url",
            FetchError::Forbidden(_) => "input_url_forbidden",
        }
    }
}

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    config: FetchConfig,
}

/// At most this many redirects, each re-checked against the policy.
const MAX_REDIRECTS: usize = 3;

impl Fetcher {
    pub fn new(config: FetchConfig) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(AddressPolicy::new(
            config.allow_private.clone(),
            config.public_internet,
        ));
        let redirect_policy = policy.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            // `previous` holds the original URL and every hop so far.
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            if !matches!(attempt.url().scheme(), "http" | "https") {
                return attempt.error("redirect to a non-http URL");
            }
            match redirect_policy.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(forbidden) => attempt.error(forbidden),
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_seconds))
            .timeout(Duration::from_secs(config.timeout_seconds))
            .redirect(redirects)
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .user_agent(concat!("seedgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            policy,
            config,
        })
    }

    /// The most bytes fetched for an input of `kind`.
    pub fn limit(&self, kind: MediaKind) -> u64 {
        match kind {
            MediaKind::Image => self.config.max_image_bytes,
            MediaKind::Video => self.config.max_video_bytes,
            MediaKind::Audio => self.config.max_audio_bytes,
        }
    }

    /// Why the guard would refuse `url` whatever happens later: its host is an IP literal it
    /// never reaches. None for names (judged when resolved) and for permitted addresses.
    pub fn refusal(&self, url: &str) -> Option<Forbidden> {
        let parsed = reqwest::Url::parse(url).ok()?;
        self.policy.check_url(&parsed).err()
    }

    /// The bytes behind an input. The URL never appears in full in errors when it is a data: URI.
    pub async fn fetch(&self, input: &MediaInput, kind: MediaKind) -> Result<Vec<u8>, FetchError> {
        let limit = self.limit(kind);
        if input.is_data_uri() {
            let bytes = input.data_bytes().ok_or(FetchError::Unsupported)?;
            if bytes.len() as u64 > limit {
                return Err(FetchError::TooLarge {
                    url: "data: URI".into(),
                    limit,
                });
            }
            return Ok(bytes);
        }
        self.fetch_url(input.as_str(), limit).await
    }

    /// The body behind an http(s) URL, refused past `limit` bytes.
    pub async fn fetch_url(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        let mut body = Vec::new();
        let mut chunks = self.fetch_stream(url, limit).await?;
        while let Some(chunk) = chunks.next().await {
            body.extend_from_slice(&chunk?);
        }
        Ok(body)
    }

    /// The body behind an http(s) URL as it arrives, for copies that must not be held whole:
    /// the stream ends with `TooLarge` once more than `limit` bytes came.
    pub async fn fetch_stream(
        &self,
        url: &str,
        limit: u64,
    ) -> Result<BoxStream<'static, Result<Bytes, FetchError>>, FetchError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::Unsupported)?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::Unsupported);
        }
        self.policy
            .check_url(&parsed)
            .map_err(|e| FetchError::Forbidden(e.to_string()))?;
        let url = url.to_owned();
        let response = self
            .client
            .get(parsed)
            .send()
            .await
            .map_err(|e| transport(&url, e))?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url,
                status: response.status().as_u16(),
            });
        }
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(FetchError::TooLarge { url, limit });
        }
        let chunks = futures_util::stream::try_unfold(
            (response, url, 0u64),
            move |(mut response, url, received)| async move {
                let Some(chunk) = response.chunk().await.map_err(|e| transport(&url, e))? else {
                    return Ok(None);
                };
                let received = received + chunk.len() as u64;
                if received > limit {
                    return Err(FetchError::TooLarge { url, limit });
                }
                Ok(Some((chunk, (response, url, received))))
            },
        );
        Ok(chunks.boxed())
    }
}

/// A failed request: the guard's refusal, if that is what stopped it (at DNS or on a
/// redirect), else the transport error.
fn transport(url: &str, error: reqwest::Error) -> FetchError {
    match forbidden_in(&error) {
        Some(reason) => FetchError::Forbidden(reason),
        None => FetchError::Transport {
            url: url.to_owned(),
            reason: describe(error),
        },
    }
}

/// A transport error with its causes ("error sending request: connection refused"), without
/// the URL (which may carry a signature).
pub fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The guard's refusal, if that is what stopped a request (at DNS or on a redirect).
fn forbidden_in(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(forbidden) = cause.downcast_ref::<Forbidden>() {
            return Some(forbidden.to_string());
        }
        source = cause.source();
    }
    None
}

impl Fetcher {
    /// POSTs a JSON body through the same guard (webhooks); returns the HTTP status.
    pub async fn post_json(
        &self,
        url: &str,
        body: String,
        headers: &[(&str, String)],
    ) -> Result<u16, FetchError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::Unsupported)?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::Unsupported);
        }
        self.policy
            .check_url(&parsed)
            .map_err(|e| FetchError::Forbidden(e.to_string()))?;
        let mut request = self
            .client
            .post(parsed)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|e| transport(url, e))?;
        Ok(response.status().as_u16())
    }
}
