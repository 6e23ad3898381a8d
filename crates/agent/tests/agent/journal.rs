//! The journal: intent before submit, batch id after; after a crash, intents are reconciled
//! with the batch system so that nothing is submitted twice and nothing is forgotten.

use hpcsera_agent::batch::{BatchJobRef, BoxFuture};
use hpcsera_agent::journal::{Journal, JournalError, Phase};
use hpcsera_agent::{BatchAdapter, BatchError, BatchState, SubmitRequest};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A batch system that knows some job names.
struct Known {
    names: HashMap<String, String>,
    calls: AtomicU64,
}

impl BatchAdapter for Known {
    fn name(&self) -> &str {
        "known"
    }
    fn submit<'a>(&'a self, _: &'a SubmitRequest) -> BoxFuture<'a, Result<String, BatchError>> {
        Box::pin(async { panic!("reconciliation must not submit") })
    }
    fn status_all<'a>(
        &'a self,
        _: &'a [BatchJobRef],
    ) -> BoxFuture<'a, Result<HashMap<String, BatchState>, BatchError>> {
        Box::pin(async { Ok(HashMap::new()) })
    }
    fn cancel<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), BatchError>> {
        Box::pin(async { Ok(()) })
    }
    fn hold<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), BatchError>> {
        Box::pin(async { Ok(()) })
    }
    fn release<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), BatchError>> {
        Box::pin(async { Ok(()) })
    }
    fn find_by_name<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, String>, BatchError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(names
                .iter()
                .filter_map(|n| Some((n.clone(), self.names.get(n)?.clone())))
                .collect())
        })
    }
    fn commands_spawned(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn intent_without_batch_id_survives_a_crash_and_is_reconciled() {
    let d = tempfile::tempdir().unwrap();
    let exit_done = d.path().join("exit-j3");
    std::fs::write(&exit_done, "0\n").unwrap();
    {
        let j = Journal::open(d.path().join("journal")).unwrap();
        // j1: submitted and recorded; j2: submitted, crash before the id was recorded;
        // j3: submitted, ran and finished while the agent was down, and the batch system
        // forgot it; j4: crash before the submit command ran.
        j.record_intent("j1", "run", "hpcsera-j1-run", None)
            .unwrap();
        j.record_submitted("j1", "run", "101").unwrap();
        j.record_intent("j2", "run", "hpcsera-j2-run", None)
            .unwrap();
        j.record_intent("j3", "run", "hpcsera-j3-run", Some(&exit_done))
            .unwrap();
        j.record_intent(
            "j4",
            "run",
            "hpcsera-j4-run",
            Some(&d.path().join("exit-j4")),
        )
        .unwrap();
        // dropped: the "crash"
    }
    let j = Journal::open(d.path().join("journal")).unwrap();
    let pending: Vec<String> = j.pending().unwrap().into_iter().map(|p| p.job_id).collect();
    assert_eq!(pending, ["j2", "j3", "j4"]);
    let active = j.active().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0].job_id.as_str(), active[0].batch_id.as_str()),
        ("j1", "101")
    );

    let batch = Known {
        names: HashMap::from([("hpcsera-j2-run".to_string(), "102".to_string())]),
        calls: AtomicU64::new(0),
    };
    let r = j.reconcile(&batch).await.unwrap();
    assert_eq!(
        batch.commands_spawned(),
        1,
        "one find query for all intents"
    );
    assert_eq!(r.adopted.len(), 1);
    assert_eq!(
        (r.adopted[0].0.job_id.as_str(), r.adopted[0].1.as_str()),
        ("j2", "102")
    );
    assert_eq!(r.finished.len(), 1);
    assert_eq!(
        (r.finished[0].0.job_id.as_str(), r.finished[0].1),
        ("j3", 0)
    );
    let again: Vec<&str> = r.not_submitted.iter().map(|p| p.job_id.as_str()).collect();
    assert_eq!(again, ["j4"]);

    // The journal now says so, durably.
    let j = Journal::open(d.path().join("journal")).unwrap();
    let rec = j.get("j2").unwrap().unwrap();
    assert_eq!(rec.sub_jobs["run"].phase, Phase::Submitted);
    assert_eq!(rec.sub_jobs["run"].batch_id.as_deref(), Some("102"));
    assert_eq!(
        j.get("j3").unwrap().unwrap().sub_jobs["run"].phase,
        Phase::Done
    );
    let pending: Vec<String> = j.pending().unwrap().into_iter().map(|p| p.job_id).collect();
    assert_eq!(pending, ["j4"]);
    let mut active: Vec<String> = j.active().unwrap().into_iter().map(|a| a.job_id).collect();
    active.sort();
    assert_eq!(active, ["j1", "j2"]);

    j.record_done("j1", "run", Some(0), "completed").unwrap();
    assert_eq!(j.active().unwrap().len(), 1);
    j.forget("j1").unwrap();
    assert!(j.get("j1").unwrap().is_none());
    // Reconciling again with nothing pending asks nothing... except for j4, still pending.
    let r = j.reconcile(&batch).await.unwrap();
    assert_eq!(r.not_submitted.len(), 1);
}

#[test]
fn writes_are_atomic() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("journal");
    let j = Journal::open(&dir).unwrap();
    j.record_intent("j1", "run", "hpcsera-j1-run", None)
        .unwrap();
    j.record_submitted("j1", "run", "7").unwrap();
    // No temp files are left behind, and the file is complete JSON.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["j1.json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("j1.json")).unwrap()).unwrap();
    assert_eq!(v["sub_jobs"]["run"]["batch_id"], "7");
    drop(j);
    // A crash in the middle of a write leaves a temp file; the old record is intact and the
    // temp file is cleaned up on open.
    std::fs::write(dir.join(".j1.json.tmp"), "{\"job_id\": \"j1\", \"sub_jo").unwrap();
    let j = Journal::open(&dir).unwrap();
    assert!(!dir.join(".j1.json.tmp").exists());
    assert_eq!(
        j.get("j1").unwrap().unwrap().sub_jobs["run"]
            .batch_id
            .as_deref(),
        Some("7")
    );
    // A corrupt file is an error naming the file, never silently dropped.
    std::fs::write(dir.join("j2.json"), "{not json").unwrap();
    let e = j.pending().unwrap_err();
    assert!(
        matches!(e, JournalError::Corrupt { .. }) && e.to_string().contains("j2.json"),
        "{e}"
    );
    // Job ids that are not one plain file name are refused.
    assert!(matches!(
        j.record_intent("../x", "run", "n", None),
        Err(JournalError::BadJobId(_))
    ));
    // Recording a batch id without an intent is an error.
    assert!(matches!(
        j.record_submitted("j9", "run", "1"),
        Err(JournalError::NoIntent { .. })
    ));
}
