//! The HTTP layer: URLs, sending with retries and backoff, bounded reading of bodies, and
//! API errors. Every request of the SDK goes through `Client::send`.

use crate::*;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

impl Client {
    pub(crate) fn url(&self, path: &str) -> Result<url::Url> {
        self.base
            .join(&format!("{}{path}", api::API_BASE.trim_start_matches('/')))
            .map_err(|e| ClientError::Config(format!("bad path {path:?}: {e}")))
    }

    /// Sends a request with retries; returns the successful response.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response> {
        let url = self.url(path)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut rb = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&self.token);
            for (k, v) in headers {
                rb = rb.header(*k, v);
            }
            rb = match &body {
                Body::None => rb,
                Body::Json(v) => rb.json(v),
                Body::Bytes(b) => rb
                    .header("content-type", "application/octet-stream")
                    .body(b.to_vec()),
            };
            let last = attempt >= self.retry.attempts;
            match rb.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    let retryable = matches!(
                        status,
                        StatusCode::TOO_MANY_REQUESTS
                            | StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    );
                    if !retryable || last {
                        return Err(api_error(resp).await);
                    }
                    let wait = retry_after(&resp).unwrap_or_else(|| self.backoff(attempt));
                    tracing::debug!(
                        status = status.as_u16(),
                        wait_ms = wait.as_millis() as u64,
                        attempt,
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(source) if certificate_problem(&source).is_some() => {
                    return Err(ClientError::Certificate {
                        url: url.to_string(),
                        problem: certificate_problem(&source).unwrap_or_default(),
                        source,
                    })
                }
                Err(e) if (e.is_connect() || e.is_timeout() || e.is_request()) && !last => {
                    let wait = self.backoff(attempt);
                    tracing::debug!(error = %e, wait_ms = wait.as_millis() as u64, attempt, "retrying after a connection error");
                    tokio::time::sleep(wait).await;
                }
                Err(source) => {
                    return Err(ClientError::Connect {
                        url: url.to_string(),
                        source,
                    })
                }
            }
        }
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .first_backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.retry.max_backoff);
        let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..1.0);
        capped.mul_f64(jitter)
    }

    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
    ) -> Result<T> {
        let resp = self.send(method, path, body, &[]).await?;
        decode(resp, self.max_body_bytes).await
    }

    /// `POST path` with an `Idempotency-Key` (a fresh one without `key`, so retries are safe).
    pub(crate) async fn submit_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        key: Option<&str>,
    ) -> Result<T> {
        let key = key
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let body = to_value(body)?;
        let resp = self
            .send(
                Method::POST,
                path,
                Body::Json(&body),
                &[("idempotency-key", key)],
            )
            .await?;
        decode(resp, self.max_body_bytes).await
    }

    /// The events at `path` (a job's, a sweep's or the project's) after `after`, waiting up
    /// to `wait_seconds` (at most 60) for one when there is none yet.
    pub(crate) async fn events_at(
        &self,
        path: &str,
        after: i64,
        wait_seconds: u32,
    ) -> Result<Vec<JobEvent>> {
        let path = format!("{path}?after={after}&wait={}", wait_seconds.min(60));
        Ok(self
            .json::<JobEventList>(Method::GET, &path, Body::None)
            .await?
            .events)
    }

    /// `PUT path` with `{"operation": op}` (cancel, hold or release).
    pub(crate) async fn operation_at<T: DeserializeOwned>(
        &self,
        path: &str,
        op: Operation,
    ) -> Result<T> {
        let body = serde_json::json!({ "operation": op });
        self.json(Method::PUT, path, Body::Json(&body)).await
    }

    /// `DELETE path`; `true` when the server answered 202 (running work is cancelled first
    /// and removed once it ended).
    pub(crate) async fn delete_at(&self, path: &str) -> Result<bool> {
        let resp = self.send(Method::DELETE, path, Body::None, &[]).await?;
        Ok(resp.status() == StatusCode::ACCEPTED)
    }
}

/// The query string of a listing page: `status` (comma-separated, when any), then `extra`
/// pairs, `limit` and `cursor`.
pub(crate) fn page_query(
    statuses: &[JobStatus],
    extra: &[(&str, Option<&str>)],
    limit: Option<u32>,
    cursor: Option<&str>,
) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if !statuses.is_empty() {
        let s: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        q.append_pair("status", &s.join(","));
    }
    for (name, value) in extra {
        if let Some(v) = value {
            q.append_pair(name, v);
        }
    }
    if let Some(l) = limit {
        q.append_pair("limit", &l.to_string());
    }
    if let Some(c) = cursor {
        q.append_pair("cursor", c);
    }
    q.finish()
}

pub(crate) enum Body<'a> {
    None,
    Json(&'a serde_json::Value),
    Bytes(&'a [u8]),
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn to_value<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Percent-encodes one path segment.
pub(crate) fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Percent-encodes each `/`-separated segment of a relative path.
pub(crate) fn path_segs(s: &str) -> String {
    s.split('/').map(seg).collect::<Vec<_>>().join("/")
}

pub(crate) async fn decode<T: DeserializeOwned>(resp: reqwest::Response, max: u64) -> Result<T> {
    let bytes = read_body(resp, max).await?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

/// A response body of at most `max` bytes, read in chunks; a larger one is an error at the
/// first chunk beyond (or at once when its `Content-Length` says so).
pub(crate) async fn read_body(mut resp: reqwest::Response, max: u64) -> Result<Vec<u8>> {
    let too_large =
        || ClientError::Decode(format!("the server's answer is larger than {max} bytes"));
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut data = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ClientError::Decode(e.to_string()))?
    {
        if data.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large());
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// At most `max` bytes of a body (the rest is not read); for error answers.
pub(crate) async fn read_prefix(mut resp: reqwest::Response, max: u64) -> Vec<u8> {
    let mut data = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = (max as usize).saturating_sub(data.len());
        data.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if data.len() as u64 >= max {
            break;
        }
    }
    data
}

pub(crate) fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(300)))
}

pub(crate) async fn api_error(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let text = String::from_utf8_lossy(&read_prefix(resp, MAX_ERROR_BODY_BYTES).await).into_owned();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => ClientError::Api {
            status,
            code: b.error.code,
            message: b.error.message,
            fields: b.error.fields,
        },
        Err(_) => ClientError::Api {
            status,
            code: "http_error".into(),
            message: if text.is_empty() {
                format!("HTTP {status}")
            } else {
                text.chars().take(500).collect()
            },
            fields: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_redaction() {
        let c = Client::new("http://h:8080/api/v1/", "hpcs_secret").unwrap();
        assert_eq!(
            c.url("/job/x").unwrap().as_str(),
            "http://h:8080/api/v1/job/x"
        );
        let c = Client::new("https://h/prefix", "hpcs_secret").unwrap();
        assert_eq!(
            c.url("/sites").unwrap().as_str(),
            "https://h/prefix/api/v1/sites"
        );
        assert!(!format!("{c:?}").contains("hpcs_secret"));
        assert!(Client::new("ftp://h", "t").is_err());
        assert!(Client::new("http://h", "bad token").is_err());
        assert!(Client::new("not a url", "t").is_err());
        assert_eq!(path_segs("out/a b.txt"), "out/a%20b.txt");
    }
}
