//! A job's output, followed live on its page: Server-Sent Events built on the output
//! long poll (`routes::wait::long_poll` over the channel that output appends and status
//! changes bump), so nothing polls.
//!
//! Events: `stdout` and `stderr` (a JSON string of at most 64 KiB of new output, cut on a
//! character boundary), `status` (`{"status": …}`, first at once and then on every change) and
//! `end` (the job has ended and all its output was sent; the stream closes). Every output
//! event's `id` is `STDOUT.STDERR`, the offsets sent so far, so a browser that reconnects
//! (`Last-Event-ID`) neither loses nor repeats a byte. A stream is bounded: it ends with the
//! job, after [`MAX_STREAM`] (the browser reconnects), when the session or the membership
//! ends (checked every [`RECHECK_ACCESS`]), or when the browser goes away (the keep-alive
//! comment every 15 s fails to send). The page works without it: it shows the output so far.

use super::access::{job_id, PageError, ProjectAccess, READ_ROLES};
use super::UiSession;
use crate::error::ApiResult;
use crate::routes::wait::{long_poll, Look};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use hpcsera_api_types::{JobStatus, OutputStream};
use hpcsera_store::OutputSlice;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most bytes of one output event.
const CHUNK_BYTES: i64 = 64 * 1024;
/// One long poll's wait for news.
const WAIT: Duration = Duration::from_secs(20);
/// How long one stream lasts before the browser is made to reconnect.
const MAX_STREAM: Duration = Duration::from_secs(600);
/// How often a stream checks that its session and membership still hold.
const RECHECK_ACCESS: Duration = Duration::from_secs(60);
/// How long a browser waits before it reconnects.
const RETRY: Duration = Duration::from_secs(2);

/// Where the stream starts: the offsets the page showed up to.
#[derive(serde::Deserialize)]
pub(crate) struct Start {
    stdout: Option<i64>,
    stderr: Option<i64>,
}

/// The offsets a reconnecting browser names in `Last-Event-ID` (`STDOUT.STDERR`).
fn last_event_id(headers: &HeaderMap) -> Option<[i64; 2]> {
    let v = headers.get("last-event-id")?.to_str().ok()?;
    let (o, e) = v.split_once('.')?;
    Some([o.parse().ok()?, e.parse().ok()?])
}

/// `GET /ui/projects/{project}/jobs/{id}/live?stdout=N&stderr=M`: the event stream.
pub(crate) async fn live(
    State(state): State<AppState>,
    session: UiSession,
    Path((project, id)): Path<(String, String)>,
    Query(start): Query<Start>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let access = ProjectAccess::for_page(&state, &session, &project, READ_ROLES).await?;
    job_id(&id)?;
    state.store.get_job(access.project_id, &id).await?;
    let offsets = last_event_id(&headers).unwrap_or([
        start.stdout.unwrap_or(0).max(0),
        start.stderr.unwrap_or(0).max(0),
    ]);
    let follow = Follow {
        state,
        session,
        access,
        id,
        offsets,
        status: None,
        queue: VecDeque::new(),
        started: Instant::now(),
        checked: Instant::now(),
        done: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        f.next()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), f))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// One browser's stream: what it was sent so far.
struct Follow {
    state: AppState,
    session: UiSession,
    access: ProjectAccess,
    id: String,
    /// Bytes of stdout and stderr sent.
    offsets: [i64; 2],
    /// The status last sent (none yet: the first look sends it).
    status: Option<String>,
    queue: VecDeque<Event>,
    started: Instant,
    checked: Instant,
    done: bool,
}

/// What one look found: the status (read first), then each stream from its offset.
struct News {
    status: String,
    out: OutputSlice,
    err: OutputSlice,
}

/// How many bytes of `data` to send now: up to a character boundary, unless the end is not
/// text anyway or the cut would leave nothing (a stream that ends inside a character).
fn text_prefix(data: &[u8]) -> usize {
    match std::str::from_utf8(data) {
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
        _ => data.len(),
    }
}

impl Follow {
    /// The next event, waiting for one; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if self.done || self.started.elapsed() > MAX_STREAM {
                return None;
            }
            if self.checked.elapsed() > RECHECK_ACCESS {
                if !self.still_allowed().await {
                    return None;
                }
                self.checked = Instant::now();
            }
            match self.look().await {
                Ok(Some(news)) => self.queue_news(news),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "a live output stream ended on an error");
                    return None;
                }
            }
        }
    }

    /// Whether the session is still live and its user still may read the project's jobs.
    async fn still_allowed(&self) -> bool {
        let st = &self.state;
        let Ok(Some(rec)) = st
            .store
            .session(&self.session.secret, st.config.ui.session_idle_ms())
            .await
        else {
            return false;
        };
        let session = UiSession {
            rec,
            secret: self.session.secret.clone(),
        };
        ProjectAccess::for_page(st, &session, &self.access.project, READ_ROLES)
            .await
            .is_ok()
    }

    /// Waits (at most [`WAIT`]) until there is new output or a new status; `None` if nothing
    /// came.
    async fn look(&self) -> ApiResult<Option<News>> {
        let st = &self.state;
        let (project_id, id) = (self.access.project_id, self.id.as_str());
        let recheck = st.config.connections.long_poll_recheck;
        long_poll(&st.output, WAIT, recheck, || async move {
            // The status first: once it says the job ended, the agent had sent all output.
            let (_, status) = st.store.output_mark(project_id, id).await?;
            let read = |s, at| st.store.read_output(project_id, id, s, at, CHUNK_BYTES);
            let out = read(OutputStream::Stdout, self.offsets[0]).await?;
            let err = read(OutputStream::Stderr, self.offsets[1]).await?;
            let news = News { status, out, err };
            Ok(if self.is_news(&news) {
                Look::Found(Some(news))
            } else {
                Look::Nothing(None)
            })
        })
        .await
    }

    fn is_news(&self, n: &News) -> bool {
        !n.out.data.is_empty()
            || !n.err.data.is_empty()
            || self.status.as_deref() != Some(n.status.as_str())
            || ended(n)
    }

    /// Turns what a look found into events, and moves the offsets past the output sent.
    fn queue_news(&mut self, n: News) {
        for (i, (name, slice)) in [("stdout", &n.out), ("stderr", &n.err)]
            .into_iter()
            .enumerate()
        {
            if slice.data.is_empty() {
                continue;
            }
            let take = text_prefix(&slice.data);
            let text = String::from_utf8_lossy(&slice.data[..take]);
            self.offsets[i] = slice.next_offset - (slice.data.len() - take) as i64;
            let id = format!("{}.{}", self.offsets[0], self.offsets[1]);
            let data = serde_json::to_string(&text).unwrap_or_default();
            self.queue
                .push_back(Event::default().event(name).id(id).data(data));
        }
        let status_event = |kind: &str| {
            Event::default()
                .event(kind)
                .data(serde_json::json!({ "status": n.status }).to_string())
        };
        if self.status.as_deref() != Some(n.status.as_str()) {
            let mut e = status_event("status");
            if self.status.is_none() {
                e = e.retry(RETRY);
            }
            self.queue.push_back(e);
            self.status = Some(n.status.clone());
        }
        // All output sent after a look that found the job ended: the end.
        if ended(&n) && self.offsets[0] >= n.out.total && self.offsets[1] >= n.err.total {
            self.queue.push_back(status_event("end"));
            self.done = true;
        }
    }
}

/// Whether the look found the job ended with both streams read to their ends.
fn ended(n: &News) -> bool {
    n.status
        .parse::<JobStatus>()
        .is_ok_and(JobStatus::is_terminal)
        && n.out.next_offset >= n.out.total
        && n.err.next_offset >= n.err.total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_on_a_character_boundary_unless_nothing_would_be_left() {
        assert_eq!(text_prefix(b"abc"), 3);
        assert_eq!(text_prefix("aé".as_bytes()), 3);
        assert_eq!(text_prefix(&"aé".as_bytes()[..2]), 1, "half of é waits");
        assert_eq!(text_prefix(&"é".as_bytes()[..1]), 1, "nothing else: sent");
        assert_eq!(text_prefix(b"a\xffb"), 3, "not text: sent as it is");
    }

    #[test]
    fn a_reconnect_resumes_at_the_last_event_id() {
        let mut h = HeaderMap::new();
        assert_eq!(last_event_id(&h), None);
        h.insert("last-event-id", "12.7".parse().unwrap());
        assert_eq!(last_event_id(&h), Some([12, 7]));
        h.insert("last-event-id", "x.7".parse().unwrap());
        assert_eq!(last_event_id(&h), None);
    }
}
