//! A job's references to code bundles (a `code` parameter names a bundle): checking them
//! when the job is inserted — one query for all of a batch's bundles — and recording them.

use crate::code::CodeRef;
use crate::util::{in_list, values_list, CHUNK};
use crate::{col, corrupt, Result, Store, StoreError};
use hpcsera_api_types::{CodeStatus, FieldError};
use sqlx::Any;
use std::collections::HashMap;

impl Store {
    /// The status of each of the project's bundles among `ids` (bundles it does not have are
    /// left out), in one query per [`CHUNK`] of ids, inside the caller's transaction.
    pub(crate) async fn code_statuses(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project_id: i64,
        ids: &[&str],
    ) -> Result<HashMap<String, CodeStatus>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT id, status FROM code_bundles WHERE project_id = $1 AND id IN ({})",
                in_list(chunk.len(), 2)
            );
            let mut q = sqlx::query(&sql).bind(project_id);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut **tx).await? {
                let status = col::<String>(&r, "status")?.parse().map_err(corrupt)?;
                out.insert(col(&r, "id")?, status);
            }
        }
        Ok(out)
    }

    /// Checks a job's code references inside its insert transaction: each bundle must exist
    /// in the project and not be rejected. Returns whether all are approved.
    pub(crate) async fn check_code_refs(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project_id: i64,
        refs: &[CodeRef],
    ) -> Result<bool> {
        let ids: Vec<&str> = refs.iter().map(|(_, id)| id.as_str()).collect();
        let statuses = self.code_statuses(tx, project_id, &ids).await?;
        judge_code_refs(refs, &statuses)
    }

    /// Records a job's code references (replacing earlier ones).
    pub(crate) async fn set_code_refs(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        job_seq: i64,
        project_id: i64,
        refs: &[CodeRef],
    ) -> Result<()> {
        sqlx::query("DELETE FROM job_code WHERE job_seq = $1")
            .bind(job_seq)
            .execute(&mut **tx)
            .await?;
        let rows: Vec<_> = refs
            .iter()
            .map(|(param, id)| (job_seq, param.as_str(), project_id, id.as_str()))
            .collect();
        insert_code_refs(tx, &rows).await
    }
}

/// Why a code reference in `field` cannot be used, given its bundle's status in the project
/// (`None`: the project has no such bundle); `None` when it can (approved or still pending).
/// The one rule for a single job's references and a sweep's members'.
pub(crate) fn code_ref_problem(
    field: String,
    code: &str,
    status: Option<&CodeStatus>,
) -> Option<FieldError> {
    match status {
        None => Some(FieldError::new(
            field,
            format!("there is no code bundle {code} in this project; upload it first (POST /code)"),
        )),
        Some(CodeStatus::Rejected) => Some(FieldError::new(
            field,
            format!("code bundle {code} was rejected"),
        )),
        Some(CodeStatus::Approved | CodeStatus::PendingApproval) => None,
    }
}

/// Whether a job's code references are all approved, given the statuses of its project's
/// bundles ([`Store::code_statuses`]); 422 naming each parameter (`parameters.NAME`) whose
/// bundle the project does not have or rejected ([`code_ref_problem`]).
pub(crate) fn judge_code_refs(
    refs: &[CodeRef],
    statuses: &HashMap<String, CodeStatus>,
) -> Result<bool> {
    let errs: Vec<FieldError> = refs
        .iter()
        .filter_map(|(param, id)| {
            code_ref_problem(format!("parameters.{param}"), id, statuses.get(id))
        })
        .collect();
    if !errs.is_empty() {
        return Err(StoreError::Invalid(errs));
    }
    Ok(refs
        .iter()
        .all(|(_, id)| statuses.get(id) == Some(&CodeStatus::Approved)))
}

/// Code references of new jobs (`(job_seq, param, project_id, code_id)` each), in
/// multi-row inserts of [`CHUNK`] rows.
pub(crate) async fn insert_code_refs(
    tx: &mut sqlx::Transaction<'static, Any>,
    rows: &[(i64, &str, i64, &str)],
) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO job_code (job_seq, param, project_id, code_id) VALUES {}",
            values_list(chunk.len(), 4, 1)
        );
        let mut q = sqlx::query(&sql);
        for (seq, param, project_id, code) in chunk {
            q = q.bind(*seq).bind(*param).bind(*project_id).bind(*code);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
