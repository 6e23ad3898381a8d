//! Submissions as the store answers and stores them: one job (answered as it reads back) and
//! a concurrent burst that the group commit writes in batches.

use super::*;

/// The first job of the project's listing (a page of one).
async fn first_listed(store: &Store, project: i64) -> hpcsera_api_types::Job {
    let filter = crate::JobFilter {
        limit: 1,
        ..Default::default()
    };
    let (mut page, _) = store.list_jobs(project, &filter).await.unwrap();
    page.remove(0)
}

/// A submission is answered with the job built from what was inserted (nothing is read
/// back): it must be exactly the job a read returns, a listing included, for a job with every
/// field a client sets (parameters, resources, metadata, callback URL) and for a plain one.
#[tokio::test]
async fn a_new_job_is_answered_as_it_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, project, _) = store_with_an_expired_claim(&fresh_url(dir.path()).await).await;
    let user = store.list_users().await.unwrap()[0].id;
    let (site_id, _) = store.job_type("s", project, "t").await.unwrap();
    let params: serde_json::Map<String, serde_json::Value> = serde_json::from_value(
        serde_json::json!({"steps": 3, "tol": 0.1, "label": "a \"quoted\" ü", "on": true}),
    )
    .unwrap();
    let resources: hpcsera_api_types::Resources = serde_json::from_value(
        serde_json::json!({"node_count": 2, "duration": 3600, "memory": "4G"}),
    )
    .unwrap();
    let meta = serde_json::json!({"run": {"id": 7, "tags": ["x", "y"]}});
    for (metadata, callback) in [(Some(&meta), Some("http://127.0.0.1:9/hook")), (None, None)] {
        let answered = store
            .create_job(&NewJobRecord {
                resources: &resources,
                metadata,
                callback_url: callback,
                ..submission(project, user, site_id, &params)
            })
            .await
            .unwrap()
            .job;
        let read = store.get_job(project, &answered.id).await.unwrap();
        assert_eq!(
            serde_json::to_value(&answered).unwrap(),
            serde_json::to_value(&read).unwrap()
        );
        assert_eq!(
            serde_json::to_value(first_listed(&store, project).await).unwrap(),
            serde_json::to_value(&read).unwrap()
        );
        // A page is JSON the database builds (`job_page`): every character a message can hold
        // reads back the same through it as through a single read.
        let message = "a \"quoted\" \\ back\\slash\nnew line\ttab \u{1} ü 🚀 </script>";
        sqlx::query("UPDATE jobs SET message = $1, batch_job_id = $2 WHERE id = $3")
            .bind(message)
            .bind("42_7")
            .bind(&answered.id)
            .execute(&store.pool)
            .await
            .unwrap();
        let read = store.get_job(project, &answered.id).await.unwrap();
        assert_eq!(read.message.as_deref(), Some(message));
        assert_eq!(
            serde_json::to_value(first_listed(&store, project).await).unwrap(),
            serde_json::to_value(&read).unwrap()
        );
    }
}

/// Submissions that arrive together are written in one transaction with one multi-row
/// statement per table (`group_commit.rs`, `Store::insert_jobs_in_tx`). A burst mixing jobs
/// with and without idempotency keys, code references (approved, awaiting approval, refused)
/// and callback URLs must store each job as submitted: its row, its code references, its key,
/// one `created` event (saying so when it waits for its code) and a webhook outbox row for
/// that event exactly when it has a callback URL. A refused bundle fails its batch, which is
/// rolled back and retried one by one: that caller alone gets the 422. Submissions sharing
/// a key make one job.
// Over 80 lines on purpose: one burst, and every property of every job it made checked
// against the plan (`refs_of`, `callback_of`, `key_of`) in one place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_mixed_submissions_is_stored_as_submitted() {
    use crate::StoreError;
    use hpcsera_api_types::EventKind;
    use sqlx::Row;
    use std::collections::HashMap;

    let dir = tempfile::tempdir().unwrap();
    let (store, project, _) = store_with_an_expired_claim(&fresh_url(dir.path()).await).await;
    let user = store.list_users().await.unwrap()[0].id;
    let (site_id, _) = store.job_type("s", project, "t").await.unwrap();
    let (pending, approved, rejected) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
    for id in [&pending, &approved, &rejected] {
        store.create_bundle(project, id, 10, user).await.unwrap();
    }
    sqlx::query("UPDATE code_bundles SET status = 'approved' WHERE id = $1")
        .bind(&approved)
        .execute(&store.pool)
        .await
        .unwrap();
    store
        .decide_bundle("p", &rejected, "u", false, Some("no"))
        .await
        .unwrap();

    const N: usize = 300;
    // What submission i sends: its code references, callback URL and idempotency key (every
    // fourth has one; i and i + 40 share theirs, with the same request hash).
    let refs_of = |i: usize| -> Vec<(String, String)> {
        let r = |p: &str, c: &String| (p.to_string(), c.clone());
        match (i, i % 5) {
            (77, _) => vec![r("code", &rejected)],
            (133, _) => vec![r("code", &"d".repeat(64))],
            (_, 1) => vec![r("code", &pending)],
            (_, 2) => vec![r("code", &approved)],
            (_, 3) => vec![r("code", &approved), r("lib", &pending)],
            _ => vec![],
        }
    };
    let callback_of = |i: usize| {
        i.is_multiple_of(3)
            .then(|| format!("http://127.0.0.1:9/hook/{i}"))
    };
    let key_of = |i: usize| i.is_multiple_of(4).then(|| format!("k{}", i % 40));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let (store, refs, callback, key) = (store.clone(), refs_of(i), callback_of(i), key_of(i));
        tasks.spawn(async move {
            let params: serde_json::Map<String, serde_json::Value> =
                serde_json::from_value(serde_json::json!({ "i": i })).unwrap();
            let res = store
                .create_job(&NewJobRecord {
                    project_id: project,
                    owner_id: user,
                    site_id,
                    job_type: "t",
                    parameters: &params,
                    resources: &Default::default(),
                    metadata: None,
                    callback_url: callback.as_deref(),
                    idempotency: key.as_deref().map(|k| (k, format!("hash-{k}"))),
                    actor: "user:u",
                    code_refs: &refs,
                })
                .await;
            (i, res)
        });
    }
    let mut answers = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (i, res) = r.unwrap();
        answers.insert(i, res);
    }
    assert!(
        store
            .group_commit
            .largest_batch
            .load(std::sync::atomic::Ordering::Relaxed)
            > 1,
        "no batch of several submissions formed"
    );

    let mut by_key: HashMap<String, Vec<(usize, String, bool)>> = HashMap::new();
    let mut created = 0;
    for i in 0..N {
        let res = answers.remove(&i).unwrap();
        if i == 77 || i == 133 {
            match res {
                Err(StoreError::Invalid(errs)) => {
                    assert_eq!(errs.len(), 1, "{errs:?}");
                    assert_eq!(errs[0].field, "parameters.code");
                }
                other => panic!("submission {i} naming a refused bundle: {other:?}"),
            }
            continue;
        }
        let sub = res.unwrap_or_else(|e| panic!("submission {i}: {e:?}"));
        if let Some(k) = key_of(i) {
            by_key
                .entry(k)
                .or_default()
                .push((i, sub.job.id.clone(), sub.created));
        }
        if !sub.created {
            continue;
        }
        created += 1;
        let job = sub.job;
        assert_eq!(job.parameters["i"], serde_json::json!(i));
        let read = store.get_job(project, &job.id).await.unwrap();
        assert_eq!(
            serde_json::to_value(&job).unwrap(),
            serde_json::to_value(&read).unwrap(),
            "submission {i}"
        );
        let refs = refs_of(i);
        let waits = refs.iter().any(|(_, c)| *c == pending);
        let status = if waits {
            JobStatus::AwaitingApproval
        } else {
            JobStatus::Queued
        };
        assert_eq!(job.status, status, "submission {i}");
        assert_eq!(job.callback_url, callback_of(i), "submission {i}");

        let events = store
            .job_events(
                project,
                &job.id,
                &crate::EventFilter {
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "submission {i}: {events:?}");
        let e = &events[0];
        assert_eq!(e.kind, EventKind::Created);
        assert_eq!((e.from_status, e.to_status), (None, Some(status)));
        assert_eq!(
            e.message.as_deref(),
            waits.then_some(crate::jobs::AWAITING_CODE),
            "submission {i}"
        );

        let (outbox, code, key) = stored_with(&store, &job.id).await;
        let want: Vec<(i64, String)> = callback_of(i).map(|u| (e.seq, u)).into_iter().collect();
        assert_eq!(outbox, want, "submission {i}");
        assert_eq!(code, refs, "submission {i}");
        assert_eq!(key, key_of(i), "submission {i}");
    }
    // One job per key: every submission with it is answered with that job.
    for (k, subs) in &by_key {
        assert_eq!(subs.iter().filter(|s| s.2).count(), 1, "key {k}: {subs:?}");
        assert!(subs.iter().all(|s| s.1 == subs[0].1), "key {k}: {subs:?}");
    }
    let stored: i64 = sqlx::query("SELECT COUNT(*) FROM jobs WHERE project_id = $1")
        .bind(project)
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .get(0);
    // The job of `store_with_an_expired_claim`, and one per created answer.
    assert_eq!(stored, 1 + created);
    assert_eq!(created as usize, N - 2 - (N / 4 - 10));
}

/// What is stored with job `id` besides its row: its webhook outbox rows (event, URL), its
/// code references (parameter, bundle; sorted) and its idempotency key.
async fn stored_with(
    store: &Store,
    id: &str,
) -> (Vec<(i64, String)>, Vec<(String, String)>, Option<String>) {
    use sqlx::Row;
    let seq: i64 = sqlx::query("SELECT seq FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .get(0);
    let rows = |sql: &'static str| async move {
        sqlx::query(sql)
            .bind(seq)
            .fetch_all(&store.pool)
            .await
            .unwrap()
    };
    let outbox = rows("SELECT event_seq, url FROM webhook_deliveries WHERE job_seq = $1")
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut code: Vec<(String, String)> =
        rows("SELECT param, code_id FROM job_code WHERE job_seq = $1")
            .await
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    code.sort();
    let key = rows("SELECT key FROM idempotency_keys WHERE job_seq = $1")
        .await
        .first()
        .map(|r| r.get(0));
    (outbox, code, key)
}
