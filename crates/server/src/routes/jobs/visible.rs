//! Which jobs a caller may see: those of its token's project (the store scopes by it) at a
//! site its token may use; any other is 404, as if it did not exist.
//!
//! Every route that names a job by id and is open to clients asks here first. It must never
//! tell a caller that a job it may not see exists.

use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use hpcsera_api_types::Job;

/// Narrows a listing's `site` filter to the token's site: a site-restricted token lists only
/// its site (asking for another is 403).
pub(crate) fn narrow_to_token_site(caller: &Caller, site: &mut Option<String>) -> ApiResult<()> {
    if let Some(restricted) = &caller.0.site {
        match site {
            Some(s) if s != restricted => return Err(crate::extract::site_refused(restricted)),
            _ => *site = Some(restricted.clone()),
        }
    }
    Ok(())
}

/// Reads a job and hides it (404) when the token's site restriction excludes it.
pub(crate) async fn visible_job(st: &AppState, caller: &Caller, id: &str) -> ApiResult<Job> {
    let job = st.store.get_job(caller.0.project_id, id).await?;
    if !caller.may_use_site(&job.site) {
        return Err(ApiError::NotFound("job not found".into()));
    }
    Ok(job)
}
