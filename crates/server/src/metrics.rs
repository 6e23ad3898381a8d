//! Prometheus metrics, kept by hand and rendered in the text exposition format (checked with
//! `promtool check metrics` in the tests).
//!
//! Kept in memory per replica: requests by route, method and status; request latency per
//! route and method, with **long polls apart** (a request that waited for news — the agents'
//! poll, events and output with `wait` — is measured in its own histogram, so it does not
//! fill the request histogram's `+Inf`); webhook attempts; the audit writer's drops, writes
//! and lag. Asked at scrape time ([`Scrape`]): jobs by site and status, each site's agents'
//! last contact, webhook deliveries by status (one grouped query each), the database pool and
//! the audit queue.
//!
//! Label values come from closed sets: route templates (anything unmatched is
//! `route="unmatched"`), standard methods (else `other`), statuses, and sites (names made by
//! admins and agents' tokens, never by clients); so cardinality is bounded whatever clients send.

use hpcsera_api_types::JobStatus;
use hpcsera_store::{OpsStats, PoolStats};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Request latency buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Long-poll duration buckets, in seconds (the longest wait a client may ask is 60 s).
const LONG_POLL_BUCKETS: [f64; 11] = [
    0.05, 0.25, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0,
];

tokio::task_local! {
    /// Set by a handler that waits for news (`routes::wait::long_poll`).
    static LONG_POLL: Arc<AtomicBool>;
}

/// Runs a request's handling; whether it was a long poll.
pub async fn scope_request<F: std::future::Future>(f: F) -> (F::Output, bool) {
    let flag = Arc::new(AtomicBool::new(false));
    let out = LONG_POLL.scope(flag.clone(), f).await;
    (out, flag.load(Ordering::Relaxed))
}

/// Marks the current request as a long poll (no effect outside a request).
pub fn mark_long_poll() {
    let _ = LONG_POLL.try_with(|f| f.store(true, Ordering::Relaxed));
}

/// The route label: the matched route template; a request no route matched (and the
/// routers' fallbacks) is `unmatched`.
pub fn route_label(matched: Option<&str>) -> &str {
    match matched {
        Some(m) if !m.contains("__private__axum") => m,
        _ => "unmatched",
    }
}

/// The method label: a standard method's name, `other` for any other token.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// A cumulative histogram over fixed buckets.
struct Histogram {
    buckets: &'static [f64],
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn new(buckets: &'static [f64]) -> Histogram {
        Histogram {
            buckets,
            counts: vec![0; buckets.len()],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        for (i, b) in self.buckets.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (b, n) in self.buckets.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Requests {
    /// (route, method) → status → requests.
    by_status: BTreeMap<(String, &'static str), BTreeMap<u16, u64>>,
    latency: BTreeMap<(String, &'static str), Histogram>,
    long_polls: BTreeMap<(String, &'static str), Histogram>,
}

/// The in-memory metrics of this replica.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<Requests>,
    pub audit_dropped: AtomicU64,
    pub audit_written: AtomicU64,
    /// How long the records of the last batch waited to be written, in ms.
    pub audit_lag_ms: AtomicU64,
    pub webhook_delivered: AtomicU64,
    pub webhook_failed_attempts: AtomicU64,
}

/// What is asked at scrape time.
pub struct Scrape {
    /// `None` when the database did not answer.
    pub ops: Option<OpsStats>,
    pub pool: PoolStats,
    pub audit_queued: usize,
    pub now_ms: i64,
}

/// `# HELP` and `# TYPE` of a metric.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and line breaks escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts a request; its duration goes to the long-poll histogram when it waited for news.
    pub fn observe(
        &self,
        route: &str,
        method: &'static str,
        status: u16,
        seconds: f64,
        long_poll: bool,
    ) {
        let Ok(mut r) = self.requests.lock() else {
            return;
        };
        let key = (route.to_string(), method);
        *r.by_status
            .entry(key.clone())
            .or_default()
            .entry(status)
            .or_default() += 1;
        let (map, buckets): (_, &'static [f64]) = if long_poll {
            (&mut r.long_polls, &LONG_POLL_BUCKETS)
        } else {
            (&mut r.latency, &BUCKETS)
        };
        map.entry(key)
            .or_insert_with(|| Histogram::new(buckets))
            .observe(seconds);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self, scrape: &Scrape) -> String {
        let mut out = String::new();
        head(
            &mut out,
            "hpcsera_build_info",
            "gauge",
            "The running build: its version.",
        );
        let _ = writeln!(
            out,
            "hpcsera_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        self.render_requests(&mut out);
        self.render_counters(&mut out, scrape);
        render_pool(&mut out, &scrape.pool);
        if let Some(ops) = &scrape.ops {
            render_ops(&mut out, ops, scrape.now_ms);
        }
        head(
            &mut out,
            "hpcsera_database_up",
            "gauge",
            "1 when the database answered this scrape's queries.",
        );
        let _ = writeln!(
            out,
            "hpcsera_database_up {}",
            u8::from(scrape.ops.is_some())
        );
        out
    }

    fn render_requests(&self, out: &mut String) {
        let r = match self.requests.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        head(
            out,
            "hpcsera_http_requests_total",
            "counter",
            "HTTP requests by route, method and status.",
        );
        for ((route, method), statuses) in &r.by_status {
            for (status, n) in statuses {
                let _ = writeln!(
                    out,
                    "hpcsera_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    esc(route)
                );
            }
        }
        let name = "hpcsera_http_request_duration_seconds";
        head(
            out,
            name,
            "histogram",
            "Latency of HTTP requests that did not wait for news.",
        );
        for ((route, method), h) in &r.latency {
            h.render(
                out,
                name,
                &format!("route=\"{}\",method=\"{method}\"", esc(route)),
            );
        }
        let name = "hpcsera_http_long_poll_duration_seconds";
        head(out, name, "histogram", "Duration of long polls (agent poll, events and output with wait), apart from request latency.");
        for ((route, method), h) in &r.long_polls {
            h.render(
                out,
                name,
                &format!("route=\"{}\",method=\"{method}\"", esc(route)),
            );
        }
    }

    fn render_counters(&self, out: &mut String, scrape: &Scrape) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        head(
            out,
            "hpcsera_audit_records_dropped_total",
            "counter",
            "Audit records dropped because the writer fell behind.",
        );
        let _ = writeln!(
            out,
            "hpcsera_audit_records_dropped_total {}",
            load(&self.audit_dropped)
        );
        head(
            out,
            "hpcsera_audit_records_written_total",
            "counter",
            "Audit records written to the database.",
        );
        let _ = writeln!(
            out,
            "hpcsera_audit_records_written_total {}",
            load(&self.audit_written)
        );
        head(
            out,
            "hpcsera_audit_queue_records",
            "gauge",
            "Audit records waiting for the writer.",
        );
        let _ = writeln!(out, "hpcsera_audit_queue_records {}", scrape.audit_queued);
        head(
            out,
            "hpcsera_audit_write_lag_seconds",
            "gauge",
            "How long the oldest record of the last written batch waited.",
        );
        let _ = writeln!(
            out,
            "hpcsera_audit_write_lag_seconds {}",
            load(&self.audit_lag_ms) as f64 / 1000.0
        );
        head(
            out,
            "hpcsera_webhook_attempts_total",
            "counter",
            "Webhook delivery attempts by outcome.",
        );
        let _ = writeln!(
            out,
            "hpcsera_webhook_attempts_total{{outcome=\"delivered\"}} {}",
            load(&self.webhook_delivered)
        );
        let _ = writeln!(
            out,
            "hpcsera_webhook_attempts_total{{outcome=\"failed\"}} {}",
            load(&self.webhook_failed_attempts)
        );
    }
}

fn render_pool(out: &mut String, pool: &PoolStats) {
    head(
        out,
        "hpcsera_db_pool_connections",
        "gauge",
        "Database connections of this replica's pool by state.",
    );
    let in_use = pool.open.saturating_sub(pool.idle);
    let _ = writeln!(
        out,
        "hpcsera_db_pool_connections{{state=\"idle\"}} {}",
        pool.idle
    );
    let _ = writeln!(
        out,
        "hpcsera_db_pool_connections{{state=\"in_use\"}} {in_use}"
    );
    head(
        out,
        "hpcsera_db_pool_max_connections",
        "gauge",
        "The most connections the pool opens.",
    );
    let _ = writeln!(out, "hpcsera_db_pool_max_connections {}", pool.max);
}

fn render_ops(out: &mut String, ops: &OpsStats, now_ms: i64) {
    head(
        out,
        "hpcsera_jobs",
        "gauge",
        "Jobs by site and status (every status of a site that has jobs).",
    );
    let mut by_site: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    for (site, status, n) in &ops.jobs {
        by_site.entry(site).or_default().insert(status, *n);
    }
    for (site, counts) in &by_site {
        for s in JobStatus::ALL {
            let n = counts.get(s.as_str()).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "hpcsera_jobs{{site=\"{}\",status=\"{}\"}} {n}",
                esc(site),
                s.as_str()
            );
        }
    }
    head(
        out,
        "hpcsera_agent_last_seen_age_seconds",
        "gauge",
        "Seconds since any agent of the site was last seen.",
    );
    for (site, seen) in &ops.agents_last_seen {
        let age = (now_ms - seen).max(0) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "hpcsera_agent_last_seen_age_seconds{{site=\"{}\"}} {age}",
            esc(site)
        );
    }
    head(
        out,
        "hpcsera_webhook_deliveries",
        "gauge",
        "Webhook deliveries by status: pending is the queue, failed were given up.",
    );
    for status in ["pending", "delivered", "failed"] {
        let n = ops
            .webhook_deliveries
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "hpcsera_webhook_deliveries{{status=\"{status}\"}} {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(ops: Option<OpsStats>) -> Scrape {
        Scrape {
            ops,
            pool: PoolStats {
                open: 3,
                idle: 2,
                max: 10,
            },
            audit_queued: 4,
            now_ms: 10_000,
        }
    }

    #[test]
    fn histograms_are_cumulative_and_long_polls_apart() {
        let m = Metrics::default();
        m.observe("/api/v1/job", "POST", 201, 0.003, false);
        m.observe("/api/v1/job", "POST", 422, 0.2, false);
        m.observe("/api/v1/agent/poll", "POST", 200, 29.0, true);
        let text = m.render(&scrape(None));
        assert!(text.contains(
            "hpcsera_http_requests_total{route=\"/api/v1/job\",method=\"POST\",status=\"201\"} 1"
        ));
        assert!(text.contains(
            "hpcsera_http_requests_total{route=\"/api/v1/agent/poll\",method=\"POST\",status=\"200\"} 1"
        ));
        assert!(text.contains("le=\"0.001\"} 0"));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"0.25\"} 2"));
        assert!(!text
            .contains("hpcsera_http_request_duration_seconds_count{route=\"/api/v1/agent/poll\""));
        assert!(text.contains(
            "hpcsera_http_long_poll_duration_seconds_bucket{route=\"/api/v1/agent/poll\",method=\"POST\",le=\"30\"} 1"
        ));
        assert!(text.contains("hpcsera_database_up 0"));
        assert!(text.contains("hpcsera_db_pool_connections{state=\"in_use\"} 1"));
    }

    #[test]
    fn database_numbers_are_rendered_with_every_status() {
        let ops = OpsStats {
            jobs: vec![("hawk".into(), "queued".into(), 3)],
            agents_last_seen: vec![("hawk".into(), 4_000)],
            webhook_deliveries: vec![("pending".into(), 2)],
        };
        let text = Metrics::default().render(&scrape(Some(ops)));
        assert!(text.contains("hpcsera_jobs{site=\"hawk\",status=\"queued\"} 3"));
        assert!(text.contains("hpcsera_jobs{site=\"hawk\",status=\"lost\"} 0"));
        assert!(text.contains("hpcsera_agent_last_seen_age_seconds{site=\"hawk\"} 6"));
        assert!(text.contains("hpcsera_webhook_deliveries{status=\"pending\"} 2"));
        assert!(text.contains("hpcsera_webhook_deliveries{status=\"failed\"} 0"));
        assert!(text.contains("hpcsera_database_up 1"));
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
