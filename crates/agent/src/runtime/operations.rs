//! Operations the server relays from clients (cancel, hold, release): carried out on the
//! job's current step and acknowledged with `operationDone`, whether they worked or not.
//!
//! This module must never leave an operation unacknowledged: the server waits for the
//! answer.

use super::agent::Agent;
use super::error::OperationError;
use super::job::{fit, End, Step};
use hpcsera_api_types::{JobStatus, Operation, OperationDone, SubJobStatus};

impl Agent {
    /// Carries out `op` on job `id` and acknowledges it.
    pub(super) async fn operation(&mut self, id: &str, op: Operation) {
        let result = match op {
            Operation::Cancel => self.cancel(id).await,
            Operation::Hold | Operation::Release => self.hold_or_release(id, op).await,
        };
        let (ok, message) = match result {
            Ok(m) => (true, m),
            Err(e) => (false, e.to_string()),
        };
        let done = OperationDone {
            operation: op,
            ok,
            message: Some(fit(&message)),
        };
        if let Err(e) = self.client.operation_done(id, &done).await {
            tracing::warn!(job = %id, error = %e, "cannot acknowledge the operation");
        }
    }

    /// Stops the job's current step and ends it `cancelled`.
    async fn cancel(&mut self, id: &str) -> Result<String, OperationError> {
        let mut run = self.jobs.remove(id).ok_or(OperationError::NotRunning)?;
        let msg = match self.stop_step(&run).await {
            Ok(()) => "cancelled on request".to_string(),
            Err(e) => format!("cancelled on request; stopping it failed: {e}"),
        };
        // The sub-job that ran ends with the job (it stayed `running` before).
        if run.sub().is_some() && !matches!(run.step, Step::Start) {
            run.set_sub(SubJobStatus::Cancelled, None, None, Some(msg.clone()));
        }
        let end = End {
            status: JobStatus::Cancelled,
            exit_code: None,
            message: msg.clone(),
        };
        self.finish(&mut run, end).await;
        Ok(msg)
    }

    /// Holds or releases the job's batch job (only a batch step can be).
    async fn hold_or_release(&self, id: &str, op: Operation) -> Result<String, OperationError> {
        let run = self.jobs.get(id).ok_or(OperationError::NotRunning)?;
        let Step::Batch { batch, .. } = &run.step else {
            return Err(OperationError::NotInBatch);
        };
        let b = &batch.id;
        if op == Operation::Hold {
            self.adapter.hold(b).await?;
            Ok(format!("batch job {b} held"))
        } else {
            self.adapter.release(b).await?;
            Ok(format!("batch job {b} released"))
        }
    }
}
