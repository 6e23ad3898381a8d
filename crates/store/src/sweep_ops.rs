//! Operations on a whole sweep (cancel, hold, release) and its deletion: ONE transaction
//! that locks every member row and decides each member by the same rules as one job's
//! operation (`changes.rs`), applied with chunked statements. Status changes go through
//! `Store::transition_many` (the state machine); nothing here writes `status` itself.

use crate::transition::LockedJob;
use crate::util::{in_list, CHUNK};
use crate::{col, corrupt, now_ms, Result, Store};
use hpcsera_api_types::{EventKind, JobStatus, Operation};
use sqlx::Any;

/// A member row as locked for an operation.
struct Member {
    job: LockedJob,
    held: bool,
    pending_cancel: bool,
}

/// How many members an operation on a sweep changed, and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepOpCounts {
    /// Took effect at once (no agent held the member).
    pub done: u64,
    /// Recorded for the agent that holds the member.
    pub handed_to_agent: u64,
    /// Not applicable (ended, already so, or a cancel is pending).
    pub skipped: u64,
}

impl Store {
    /// Locks the visible members of a sweep of the project (404 for another project's).
    async fn lock_members(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project_id: i64,
        sweep_id: &str,
    ) -> Result<(i64, Vec<Member>)> {
        let r = sqlx::query(&format!(
            "SELECT seq FROM sweeps WHERE id = $1 AND project_id = $2{}",
            self.for_update()
        ))
        .bind(sweep_id)
        .bind(project_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(crate::StoreError::NotFound("sweep"))?;
        let sweep_seq: i64 = col(&r, "seq")?;
        let rows = sqlx::query(&format!(
            "SELECT seq, status, held, pending_op FROM jobs WHERE sweep_seq = $1 AND project_id = $2 \
             AND deleted_at IS NULL ORDER BY seq{}",
            self.for_update()
        ))
        .bind(sweep_seq)
        .bind(project_id)
        .fetch_all(&mut **tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let status: String = col(&r, "status")?;
            let op: Option<String> = col(&r, "pending_op")?;
            out.push(Member {
                job: LockedJob {
                    seq: col(&r, "seq")?,
                    project_id,
                    status: status.parse().map_err(corrupt)?,
                },
                held: col::<i64>(&r, "held")? != 0,
                pending_cancel: op.as_deref() == Some(Operation::Cancel.as_str()),
            });
        }
        Ok((sweep_seq, out))
    }

    /// Requests `op` on every member of a sweep, in one transaction, by the rules of one
    /// job's operation: a member no agent holds is cancelled, held or released at once; one
    /// an agent holds gets the operation as pending (a pending cancel is never replaced);
    /// ended members are skipped.
    pub async fn operate_sweep(
        &self,
        project_id: i64,
        sweep_id: &str,
        op: Operation,
        actor: &str,
    ) -> Result<SweepOpCounts> {
        let mut tx = self.begin_write().await?;
        let (_, members) = self.lock_members(&mut tx.tx, project_id, sweep_id).await?;
        let mut counts = SweepOpCounts::default();
        let (mut at_once, mut to_agent, mut flags) = (Vec::new(), Vec::new(), Vec::new());
        let hold = op == Operation::Hold;
        for m in &members {
            let s = m.job.status;
            if s.is_terminal() || (m.pending_cancel && s.is_with_agent()) {
                counts.skipped += 1;
            } else if s.is_with_agent() {
                to_agent.push(m.job.seq);
            } else if op == Operation::Cancel {
                at_once.push(m.job);
            } else if m.held != hold {
                flags.push(m.job.seq);
            } else {
                counts.skipped += 1;
            }
        }
        let why = format!("cancelled by {actor} before it started");
        self.transition_many(
            &mut tx.tx,
            project_id,
            &at_once,
            JobStatus::Cancelled,
            actor,
            Some(&why),
        )
        .await?;
        self.set_held(&mut tx.tx, project_id, &flags, hold, actor)
            .await?;
        self.set_pending(&mut tx.tx, project_id, &to_agent, op, actor, false)
            .await?;
        tx.commit().await?;
        counts.done = (at_once.len() + flags.len()) as u64;
        counts.handed_to_agent = to_agent.len() as u64;
        Ok(counts)
    }

    /// Sets the held flag of members no agent holds, with an `operation_done` event each.
    async fn set_held(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project_id: i64,
        seqs: &[i64],
        held: bool,
        actor: &str,
    ) -> Result<()> {
        let now = now_ms();
        for chunk in seqs.chunks(CHUNK) {
            let sql = format!(
                "UPDATE jobs SET held = $1, updated_at = $2 WHERE seq IN ({})",
                in_list(chunk.len(), 3)
            );
            let mut q = sqlx::query(&sql).bind(i64::from(held)).bind(now);
            for s in chunk {
                q = q.bind(*s);
            }
            q.execute(&mut **tx).await?;
        }
        let op = if held {
            Operation::Hold
        } else {
            Operation::Release
        };
        let events: Vec<_> = seqs.iter().map(|s| (*s, None, None)).collect();
        self.add_events_bulk(
            tx,
            project_id,
            &events,
            EventKind::OperationDone,
            actor,
            Some(op.as_str()),
        )
        .await
    }

    /// Records `op` as the pending operation of members an agent holds (handed over with the
    /// agent's next poll), with an event each; `delete` also hides them (deleted, removed
    /// when they end).
    async fn set_pending(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project_id: i64,
        seqs: &[i64],
        op: Operation,
        actor: &str,
        delete: bool,
    ) -> Result<()> {
        let now = now_ms();
        let deleted = if delete { ", deleted_at = $2" } else { "" };
        for chunk in seqs.chunks(CHUNK) {
            let sql = format!(
                "UPDATE jobs SET pending_op = $1, pending_op_at = $2, pending_op_by = $3, updated_at = $2{deleted} \
                 WHERE seq IN ({})",
                in_list(chunk.len(), 4)
            );
            let mut q = sqlx::query(&sql)
                .bind(op.as_str())
                .bind(now)
                .bind(actor.to_string());
            for s in chunk {
                q = q.bind(*s);
            }
            q.execute(&mut **tx).await?;
        }
        let events: Vec<_> = seqs.iter().map(|s| (*s, None, None)).collect();
        let (kind, message) = if delete {
            (EventKind::Deleted, "cancel requested")
        } else {
            (EventKind::OperationRequested, op.as_str())
        };
        self.add_events_bulk(tx, project_id, &events, kind, actor, Some(message))
            .await
    }

    /// Deletes a sweep: members no agent holds are removed at once; members an agent holds
    /// are hidden, cancelled through their agent and removed when they end (as `DELETE
    /// /job` does). The sweep itself goes at once. Returns how many members are still to
    /// end.
    pub async fn delete_sweep(&self, project_id: i64, sweep_id: &str, actor: &str) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let (sweep_seq, members) = self.lock_members(&mut tx.tx, project_id, sweep_id).await?;
        let (held, free): (Vec<&Member>, Vec<&Member>) =
            members.iter().partition(|m| m.job.status.is_with_agent());
        let held: Vec<i64> = held.iter().map(|m| m.job.seq).collect();
        self.set_pending(
            &mut tx.tx,
            project_id,
            &held,
            Operation::Cancel,
            actor,
            true,
        )
        .await?;
        for chunk in free.chunks(CHUNK) {
            let sql = format!(
                "DELETE FROM jobs WHERE seq IN ({})",
                in_list(chunk.len(), 1)
            );
            let mut q = sqlx::query(&sql);
            for m in chunk {
                q = q.bind(m.job.seq);
            }
            q.execute(&mut *tx.tx).await?;
        }
        // Members still held lose their sweep (ON DELETE SET NULL); they are hidden already.
        sqlx::query("DELETE FROM sweeps WHERE seq = $1")
            .bind(sweep_seq)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(held.len() as u64)
    }
}
