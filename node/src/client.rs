//! The CLI's HTTP client for a node's API.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// Timeout for one API call from the CLI.
pub const CLI_REQUEST_TIMEOUT_MS: u64 = 15_000;
/// Timeout for moving a snapshot (up to 16 MiB) either way.
pub const CLI_TRANSFER_TIMEOUT_MS: u64 = 300_000;
/// Largest API response the CLI reads.
pub const CLI_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(CLI_REQUEST_TIMEOUT_MS))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// The same HTTP client, without the token, talking to another node's API: the URL
    /// comes from cluster state (a member's `api`), so the token is not sent there.
    pub fn at(&self, base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: None,
            http: self.http.clone(),
        }
    }

    /// GETs a JSON document.
    ///
    /// # Errors
    /// When the node is unreachable or answers with an error.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.get_within(path, Duration::from_millis(CLI_REQUEST_TIMEOUT_MS))
            .await
    }

    /// [`ApiClient::get`], giving up after `timeout`.
    ///
    /// # Errors
    /// When the node does not answer in time or answers with an error.
    pub async fn get_within(&self, path: &str, timeout: Duration) -> anyhow::Result<Value> {
        let request = self.http.get(self.url(path)).timeout(timeout);
        Self::json(self.send(request).await?).await
    }

    /// GETs a text document (`/metrics`).
    ///
    /// # Errors
    /// When the node is unreachable, answers with an error, or the body is not UTF-8.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let (body, _) = self
            .get_text_within(path, Duration::from_millis(CLI_REQUEST_TIMEOUT_MS))
            .await?;
        Ok(body)
    }

    /// [`ApiClient::get_text`] giving up after `timeout`, with the answer's headers.
    ///
    /// # Errors
    /// As [`ApiClient::get_text`].
    pub async fn get_text_within(
        &self,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<(String, reqwest::header::HeaderMap)> {
        let resp = self
            .send(self.http.get(self.url(path)).timeout(timeout))
            .await?;
        let headers = resp.headers().clone();
        let body = Self::body(resp).await?;
        Ok((
            String::from_utf8(body).context("the answer is not UTF-8")?,
            headers,
        ))
    }

    /// PUTs a body with the bearer token.
    ///
    /// # Errors
    /// When there is no token, the node is unreachable, or it answers with an error; the
    /// error carries the API's JSON error document.
    pub async fn put(&self, path: &str, body: String) -> anyhow::Result<Value> {
        let request = self
            .http
            .put(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/toml")
            .body(body);
        self.send_authorized(request).await
    }

    /// POSTs a JSON document with the bearer token.
    ///
    /// # Errors
    /// As [`ApiClient::put`].
    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let within = Duration::from_millis(CLI_REQUEST_TIMEOUT_MS);
        self.post_json_within(path, body, within).await
    }

    /// [`ApiClient::post_json`] for a request that may take longer than one API call
    /// (a membership change waits for the new node to catch up).
    ///
    /// # Errors
    /// As [`ApiClient::put`].
    pub async fn post_json_within(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let request = self.http.post(self.url(path)).timeout(timeout).json(body);
        self.send_authorized(request).await
    }

    /// DELETEs a resource with the bearer token, giving up after `timeout`.
    ///
    /// # Errors
    /// As [`ApiClient::put`].
    pub async fn delete_within(&self, path: &str, timeout: Duration) -> anyhow::Result<Value> {
        let request = self.http.delete(self.url(path)).timeout(timeout);
        self.send_authorized(request).await
    }

    /// [`ApiClient::delete_within`] within one API call's timeout.
    ///
    /// # Errors
    /// As [`ApiClient::put`].
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let within = Duration::from_millis(CLI_REQUEST_TIMEOUT_MS);
        self.delete_within(path, within).await
    }

    /// GETs raw bytes with the bearer token (a snapshot), at most `limit` of them, within
    /// [`CLI_TRANSFER_TIMEOUT_MS`].
    ///
    /// # Errors
    /// As [`ApiClient::put`], and when the answer is larger than `limit`.
    pub async fn download(&self, path: &str, limit: usize) -> anyhow::Result<Vec<u8>> {
        let request = self
            .http
            .get(self.url(path))
            .timeout(Duration::from_millis(CLI_TRANSFER_TIMEOUT_MS));
        let resp = self.send_with_token(request).await?;
        if !resp.status().is_success() {
            return Self::body(resp).await; // An `ApiError`.
        }
        read_limited(resp, limit).await
    }

    /// POSTs raw bytes with the bearer token, within [`CLI_TRANSFER_TIMEOUT_MS`].
    ///
    /// # Errors
    /// As [`ApiClient::put`].
    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        let request = self
            .http
            .post(self.url(path))
            .timeout(Duration::from_millis(CLI_TRANSFER_TIMEOUT_MS))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        self.send_authorized(request).await
    }

    async fn send_authorized(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = self.send_with_token(request).await?;
        Self::json(resp).await
    }

    async fn send_with_token(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let Some(token) = &self.token else {
            bail!("this command needs the API token: set CONSENTRY_TOKEN or pass --token-file");
        };
        self.send(request.bearer_auth(token)).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        request.send().await.with_context(|| {
            format!(
                "cannot reach the consentry API at {} (set --api or CONSENTRY_API)",
                self.base
            )
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn json(resp: reqwest::Response) -> anyhow::Result<Value> {
        Ok(parse_json(&Self::body(resp).await?))
    }

    /// The body of a successful answer; an error answer becomes an [`ApiError`].
    async fn body(resp: reqwest::Response) -> anyhow::Result<Vec<u8>> {
        let status = resp.status();
        let body = read_limited(resp, CLI_RESPONSE_BYTES_MAX).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(ApiError {
            status: status.as_u16(),
            body: parse_json(&body),
        }
        .into())
    }
}

/// JSON, or the text as a JSON string when it is not JSON.
fn parse_json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Reads a whole response body, refusing one larger than `limit` bytes.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            bail!("the answer is larger than {limit} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error answer from the API, kept whole so the CLI can print its details.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub body: Value,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.body["error"];
        let msg = e["message"].as_str().unwrap_or("");
        let code = e["code"].as_str().unwrap_or("error");
        write!(f, "HTTP {}: {code}: {msg}", self.status)?;
        if let Some(details) = e["details"].as_array() {
            for d in details {
                if let (Some(l), Some(c), Some(m)) = (
                    d["line"].as_u64(),
                    d["column"].as_u64(),
                    d["message"].as_str(),
                ) {
                    write!(f, "\n  {l}:{c}: {m}")?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a query value.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
