//! New work for agents, told across server replicas: PostgreSQL's `LISTEN`/`NOTIFY`.
//!
//! A server wakes its own long-polling agents in process (a `watch` channel in the server's
//! state) when it queues a job or requests an operation. A job queued on another replica of
//! the same database must reach them too: [`Store::announce_work`] sends
//! `NOTIFY hpcsera_work` after the write committed, and [`Store::listen_for_work`] keeps a
//! connection of its own in `LISTEN hpcsera_work` and calls the server's wake-up for every
//! notification another replica sent. So a job queued on replica A reaches an agent waiting
//! on replica B one round trip after A's commit instead of at B's next re-check.
//!
//! * Announcements are coalesced: one task per store sends them, one `NOTIFY` for all the
//!   announcements made while the previous one was on its way (under a submission burst
//!   that is one statement per round trip, not one per job).
//! * The payload is this store's instance id, so a replica ignores its own notifications
//!   (its agents were already woken in process).
//! * A lost listener connection is re-established (sqlx's `PgListener`); notifications sent
//!   meanwhile are lost, so a reconnect wakes the local waiters once, and the server's long
//!   polls keep their periodic re-check as the floor.
//! * SQLite: one process serves the database, so both are no-ops.
//!
//! This module must never carry data in a notification: it only says "look again".

use crate::{Backend, Result, Store};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// The channel of work notifications.
const CHANNEL: &str = "hpcsera_work";

/// How long the listener waits before it tries to connect again after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// The sending side, shared by the clones of one [`Store`].
pub(crate) struct WorkNotifier {
    /// This store's instance id: the payload of its notifications (hex, safe in SQL text).
    id: String,
    /// Bumped by [`Store::announce_work`]; the sender task sends one `NOTIFY` per bump it sees.
    bump: watch::Sender<()>,
    /// Whether the sender task runs (started at the first announcement).
    started: OnceLock<()>,
    /// The database URL for the listener's own connection (PostgreSQL only). Never logged.
    url: Option<String>,
}

impl WorkNotifier {
    pub(crate) fn new(backend: Backend, url: &str) -> WorkNotifier {
        WorkNotifier {
            id: uuid::Uuid::new_v4().simple().to_string(),
            bump: watch::Sender::new(()),
            started: OnceLock::new(),
            url: (backend == Backend::Postgres).then(|| url.to_string()),
        }
    }
}

impl Store {
    /// Tells the other server replicas on this database that there may be new work for
    /// agents (a job queued, an operation requested). Call after the write committed.
    /// PostgreSQL: a coalesced `NOTIFY` sent by a task (this returns at once); SQLite:
    /// nothing.
    pub fn announce_work(&self) {
        if self.backend != Backend::Postgres {
            return;
        }
        let n = &self.work_notifier;
        n.bump.send_replace(());
        if n.started.get().is_some() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if n.started.set(()).is_err() {
            return;
        }
        let mut bumped = n.bump.subscribe();
        bumped.mark_changed();
        let pool = self.pool.clone();
        let sql = format!("NOTIFY {CHANNEL}, '{}'", n.id);
        // Ends when the last clone of the store (holding the sender) is gone.
        rt.spawn(async move {
            while bumped.changed().await.is_ok() {
                bumped.borrow_and_update();
                if let Err(e) = sqlx::query(&sql).execute(&pool).await {
                    tracing::warn!(error = %e, "cannot tell the other replicas about new work");
                }
            }
        });
    }

    /// Listens for the announcements of the other replicas on this database and calls
    /// `wake` for each (and once after a lost connection came back). PostgreSQL: connects
    /// (failing when it cannot), then returns the listening task; SQLite: `None`.
    pub async fn listen_for_work(
        &self,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Result<Option<tokio::task::JoinHandle<()>>> {
        let Some(url) = self.work_notifier.url.clone() else {
            return Ok(None);
        };
        let own = self.work_notifier.id.clone();
        let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
        listener.listen(CHANNEL).await?;
        let wake = Arc::new(wake);
        Ok(Some(tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) if n.payload() == own => {}
                    Ok(Some(_)) => wake(),
                    // The connection was lost; the next call reconnects and listens again.
                    // Whatever was sent meanwhile is not known: look again.
                    Ok(None) => {
                        tracing::warn!("the work notifications' connection was lost; reconnecting");
                        wake();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for work notifications; trying again");
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        wake();
                    }
                }
            }
        })))
    }
}
