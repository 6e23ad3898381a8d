//! Store tests that need the store's insides: interleavings that the API cannot produce on
//! demand, and upgrades of databases made by earlier versions. They run on SQLite, and on a
//! fresh PostgreSQL database when `HPCSERA_TEST_DATABASE_URL` names a PostgreSQL server.

use crate::{Backend, Claim, NewJobRecord, Store};
use hpcsera_api_types::{JobStatus, JobTypeSpec, Operation, Resources};
use sqlx::migrate::{Migration, MigrationType};
use sqlx::Connection;

#[path = "../../server/tests/api/fresh_database.rs"]
mod fresh_database;
mod submissions;

/// A URL for a fresh, empty database.
async fn fresh_url(dir: &std::path::Path) -> String {
    fresh_database::fresh_database(dir).await
}

/// A submission of job type t at `site_id` by `owner` with these parameters and nothing else.
fn submission<'a>(
    project_id: i64,
    owner_id: i64,
    site_id: i64,
    parameters: &'a serde_json::Map<String, serde_json::Value>,
) -> NewJobRecord<'a> {
    static NO_RESOURCES: std::sync::LazyLock<Resources> =
        std::sync::LazyLock::new(Resources::default);
    NewJobRecord {
        project_id,
        owner_id,
        site_id,
        job_type: "t",
        parameters,
        resources: &NO_RESOURCES,
        metadata: None,
        callback_url: None,
        idempotency: None,
        actor: "user:u",
        code_refs: &[],
    }
}

fn spec(name: &str) -> JobTypeSpec {
    serde_json::from_value(serde_json::json!({
        "name": name, "parameters": [], "subJobs": [{"name": "run", "kind": "batch"}]
    }))
    .unwrap()
}

/// A store with user u in project p, a site s with job type t, and one job claimed by token
/// "tok" that the agent never confirmed, whose lease has run out.
async fn store_with_an_expired_claim(url: &str) -> (Store, i64, String) {
    let store = Store::connect(url).await.unwrap();
    let user = store.create_user("u", None, false).await.unwrap();
    let project = store.create_project("p", "").await.unwrap();
    store.add_member("u", "p").await.unwrap();
    store
        .publish_job_types("s", project, None, None, &[spec("t")])
        .await
        .unwrap();
    let (site_id, _) = store.job_type("s", project, "t").await.unwrap();
    let params = serde_json::Map::new();
    let job = store
        .create_job(&submission(project, user.id, site_id, &params))
        .await
        .unwrap()
        .job;
    let claimed = store
        .claim_jobs(&Claim {
            token_id: "tok",
            project_id: project,
            site: "s",
            max_jobs: 1,
            claim_lease_ms: -1000,
            actor: "agent:u@s",
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    (store, project, job.id)
}

/// The reaper reads the jobs whose lease ran out, then decides on each under its lock. A
/// delete between the two must not put a deleted job back in the queue.
#[tokio::test]
async fn a_delete_between_the_reapers_read_and_its_lock_does_not_requeue_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (store, project, id) = store_with_an_expired_claim(&fresh_url(dir.path()).await).await;
    let now = crate::now_ms();
    let candidates = store.expired_lease_candidates(now).await.unwrap();
    assert_eq!(candidates.len(), 1);
    // The client deletes the job after the reaper read its candidates.
    assert!(store.delete_job(project, &id, "user:u").await.unwrap());
    let expired = store.expire_lease(candidates[0], now).await.unwrap();
    assert_eq!(expired.map(|e| e.to), Some(JobStatus::Cancelled));
    // Gone for good: not queued, not claimable.
    assert!(store.get_job_any(project, &id).await.is_err());
    let again = store
        .claim_jobs(&Claim {
            token_id: "tok2",
            project_id: project,
            site: "s",
            max_jobs: 10,
            claim_lease_ms: 60_000,
            actor: "agent:u@s",
        })
        .await
        .unwrap();
    assert!(again.is_empty());
}

/// The same race with a cancel instead of a delete: the cancel is carried out.
#[tokio::test]
async fn a_cancel_between_the_reapers_read_and_its_lock_is_carried_out() {
    let dir = tempfile::tempdir().unwrap();
    let (store, project, id) = store_with_an_expired_claim(&fresh_url(dir.path()).await).await;
    let now = crate::now_ms();
    let candidates = store.expired_lease_candidates(now).await.unwrap();
    store
        .request_operation(project, &id, Operation::Cancel, "user:u")
        .await
        .unwrap();
    store.expire_lease(candidates[0], now).await.unwrap();
    let job = store.get_job(project, &id).await.unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(job.pending_operation.is_none());
}

/// A database made before job types belonged to (site, project) keeps its data: every
/// project sees the job types and agent health it saw before.
#[tokio::test]
async fn upgrading_keeps_the_shared_job_types_for_every_project() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_url(dir.path()).await;
    let backend = make_release_5_database(&url).await;
    let store = Store::connect(&url).await.unwrap();
    for project in ["p1", "p2"] {
        let pid = project_id(&store, project).await;
        let sites = store.list_sites(pid).await.unwrap();
        let names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["s1", "s2"], "{project}: {pid}");
        assert_eq!(sites[0].job_types, ["old"]);
        assert_eq!(sites[0].agent_version.as_deref(), Some("0.1"));
        assert_eq!(sites[0].agent_host.as_deref(), Some("login1"));
        assert!(sites[1].last_seen_at.is_none());
        assert_eq!(store.job_types("s1", pid).await.unwrap().len(), 1);
    }
    // The old version table was adopted by sqlx's migrator, with every migration recorded.
    let all = crate::migrate::migrations(backend).len() as i64;
    let r = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(crate::col::<i64>(&r, 0).unwrap(), all);
    assert!(sqlx::query("SELECT 1 FROM schema_migrations")
        .fetch_optional(&store.pool)
        .await
        .is_err());
    // Opening it again applies nothing and keeps the data.
    let again = Store::connect(&url).await.unwrap();
    assert_eq!(
        again
            .job_types("s1", project_id(&again, "p2").await)
            .await
            .unwrap()
            .len(),
        1
    );
    // From now on each project publishes its own.
    let p1 = project_id(&store, "p1").await;
    let p2 = project_id(&store, "p2").await;
    store
        .publish_job_types("s1", p1, None, None, &[])
        .await
        .unwrap();
    assert!(store.job_types("s1", p1).await.unwrap().is_empty());
    assert_eq!(store.job_types("s1", p2).await.unwrap().len(), 1);
}

async fn project_id(store: &Store, name: &str) -> i64 {
    let r = sqlx::query("SELECT id FROM projects WHERE name = $1")
        .bind(name)
        .fetch_one(&store.pool)
        .await
        .unwrap();
    crate::col(&r, 0).unwrap()
}

/// Every change the state machine refuses is refused by the one transition function, and
/// leaves the row and the event log as they were.
#[tokio::test]
async fn the_transition_function_refuses_every_illegal_change_and_writes_nothing() {
    use crate::transition::LockedJob;
    let dir = tempfile::tempdir().unwrap();
    let (store, project, id) = store_with_an_expired_claim(&fresh_url(dir.path()).await).await;
    let seq: i64 = {
        let r = sqlx::query("SELECT seq FROM jobs WHERE id = $1")
            .bind(&id)
            .fetch_one(&store.pool)
            .await
            .unwrap();
        crate::col(&r, 0).unwrap()
    };
    let events = |store: Store| async move {
        let r = sqlx::query("SELECT COUNT(*) FROM job_events WHERE job_seq = $1")
            .bind(seq)
            .fetch_one(&store.pool)
            .await
            .unwrap();
        crate::col::<i64>(&r, 0).unwrap()
    };
    let mut refused = 0;
    for from in JobStatus::ALL {
        for to in JobStatus::ALL {
            if from.can_transition_to(to) {
                continue;
            }
            refused += 1;
            sqlx::query("UPDATE jobs SET status = $1 WHERE seq = $2")
                .bind(from.as_str())
                .bind(seq)
                .execute(&store.pool)
                .await
                .unwrap();
            let before = events(store.clone()).await;
            let mut tx = store.begin_write().await.unwrap();
            let job = LockedJob {
                seq,
                project_id: project,
                status: from,
            };
            let r = store
                .transition(&mut tx.tx, &job, to, "test", Some("no"))
                .await;
            assert!(
                matches!(r, Err(crate::StoreError::Conflict(_))),
                "{from} -> {to}: {r:?}"
            );
            tx.commit().await.unwrap();
            let now = store.get_job_any(project, &id).await.unwrap();
            assert_eq!(now.status, from, "{from} -> {to} changed the status");
            assert_ne!(now.message.as_deref(), Some("no"));
            assert_eq!(
                events(store.clone()).await,
                before,
                "{from} -> {to} wrote an event"
            );
        }
    }
    assert!(refused > 50, "only {refused} refused pairs");
}

/// A migration file that changed after it was applied is refused at start-up (sqlx's
/// checksums), and so is a database with a migration this binary does not know.
#[tokio::test]
async fn changed_or_unknown_migrations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_url(dir.path()).await;
    let store = Store::connect(&url).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 1")
        .bind(vec![0u8; 48])
        .execute(&store.pool)
        .await
        .unwrap();
    let e = Store::connect(&url).await.unwrap_err().to_string();
    assert!(e.contains("migration"), "{e}");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 1")
        .execute(&store.pool)
        .await
        .unwrap();
    let r = Migration::new(1, "init".into(), MigrationType::Simple, "".into(), false);
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (1, 'init', TRUE, $1, 0), (999, 'future', TRUE, $1, 0)",
    )
    .bind(r.checksum.to_vec())
    .execute(&store.pool)
    .await
    .unwrap();
    let e = Store::connect(&url).await.unwrap_err().to_string();
    assert!(e.contains("999"), "{e}");
}

/// A page of a job listing stays within its byte budget however large the jobs are, and the
/// cursor walk still returns every job exactly once.
#[tokio::test]
async fn a_page_of_large_jobs_ends_early_and_the_walk_sees_every_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, project, first) = store_with_an_expired_claim(&fresh_url(dir.path()).await).await;
    let user = store.list_users().await.unwrap()[0].id;
    let (site_id, _) = store.job_type("s", project, "t").await.unwrap();
    let params = serde_json::Map::new();
    let meta = serde_json::json!({"blob": "m".repeat(15 * 1024)});
    let n = 400;
    for _ in 0..n {
        store
            .create_job(&NewJobRecord {
                metadata: Some(&meta),
                ..submission(project, user, site_id, &params)
            })
            .await
            .unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let (jobs, next) = store
            .list_jobs(
                project,
                &crate::JobFilter {
                    limit: 1000,
                    before_seq: cursor,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        pages += 1;
        let size = serde_json::to_string(&jobs).unwrap().len();
        assert!(
            size < crate::listing::MAX_PAGE_BYTES + 64 * 1024,
            "a page of {size} bytes"
        );
        assert!(!jobs.is_empty());
        for j in jobs {
            assert!(seen.insert(j.id), "a job twice");
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), n + 1);
    assert!(seen.contains(&first));
    assert!(pages >= 2, "{pages} pages");
}

/// Makes the database at `url` as the release with schema version 5 left it (its own
/// `schema_migrations` table, job types shared by all projects), with two projects, a site
/// with a job type and agent health, and a site without. Returns the backend.
async fn make_release_5_database(url: &str) -> Backend {
    let backend = if url.starts_with("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    let old: Vec<&(i64, &str, &str)> = crate::migrate::migrations(backend)
        .iter()
        .filter(|(v, _, _)| *v <= 5)
        .collect();
    {
        sqlx::any::install_default_drivers();
        let url = if backend == Backend::Sqlite {
            format!("{url}?mode=rwc")
        } else {
            url.to_string()
        };
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        for (v, _, sql) in old {
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)")
                .bind(*v)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let spec = serde_json::to_string(&spec("old")).unwrap();
        for sql in [
            "INSERT INTO projects (name, description, created_at) VALUES ('p1', '', 0)",
            "INSERT INTO projects (name, description, created_at) VALUES ('p2', '', 0)",
            "INSERT INTO sites (name, agent_version, agent_host, last_seen_at, created_at) VALUES ('s1', '0.1', 'login1', 5, 0)",
            "INSERT INTO sites (name, created_at) VALUES ('s2', 0)",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        sqlx::query("INSERT INTO job_types (site_id, name, spec, updated_at) SELECT id, 'old', $1, 0 FROM sites WHERE name = 's1'")
            .bind(spec)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
    }
    backend
}
