//! Long polls: a read that finds nothing waits for a wake-up (or a recheck) and reads again,
//! until it finds something or its time is up.
//!
//! Owns the waiting, nothing else: what to read and when it counts as found is the caller's.
//! It must never hold a lock or a transaction across the wait.

use crate::error::ApiResult;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// What one look found.
pub(crate) enum Look<T> {
    /// Something to answer with now.
    Found(T),
    /// Nothing yet; answered as it is once the time is up.
    Nothing(T),
}

/// Looks until `look` finds something or `wait` has passed. Any bump of `changes` makes it
/// look again at once; the bump is taken as seen before each look, so none is missed.
/// Without a bump it looks again every `recheck` (`Connections::long_poll_recheck`, 2 s):
/// the floor for writes this server is not told about (another process on SQLite; on
/// PostgreSQL other replicas' work comes by NOTIFY, see `Store::listen_for_work`).
pub(crate) async fn long_poll<T, F, Fut>(
    changes: &watch::Sender<u64>,
    wait: Duration,
    recheck: Duration,
    look: F,
) -> ApiResult<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = ApiResult<Look<T>>>,
{
    if !wait.is_zero() {
        crate::metrics::mark_long_poll();
    }
    let mut changed = changes.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        changed.borrow_and_update();
        // Boxed: a look's store calls are large futures; the state kept across the wait
        // below holds only the waiting part.
        let found = Box::pin(look()).await?;
        let now = tokio::time::Instant::now();
        match found {
            Look::Found(t) => return Ok(t),
            Look::Nothing(t) if now >= deadline => return Ok(t),
            Look::Nothing(_) => {}
        }
        let nap = (deadline - now).min(recheck.max(Duration::from_millis(10)));
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}
