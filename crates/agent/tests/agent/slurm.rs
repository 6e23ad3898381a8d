//! End-to-end tests against a real Slurm (`scripts/setup-slurm.sh` sets one up).
//!
//! They run only when `HPCSERA_TEST_SLURM=1`; then a missing Slurm is a FAILURE, not a skip.
//! Run as root, jobs are submitted as the ordinary user `nobody` (or
//! `HPCSERA_TEST_SLURM_USER`) through a wrapped submit command (`runuser -u USER -- sbatch
//! …`), the way a site may wrap its commands in the agent's config.

use crate::common::assert_failed_with;
use hpcsera_agent::batch::command::{CommandAdapter, Templates};
use hpcsera_agent::config::BatchConfig;
use hpcsera_agent::env::job_dir;
use hpcsera_agent::journal::Journal;
use hpcsera_agent::script::render_batch_script;
use hpcsera_agent::{BatchAdapter, BatchJobRef, BatchPreset, BatchState, SubmitRequest};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn enabled() -> bool {
    if std::env::var("HPCSERA_TEST_SLURM").as_deref() != Ok("1") {
        eprintln!("HPCSERA_TEST_SLURM is not 1: not running the real-Slurm test");
        return false;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("sbatch").is_file()))
        .unwrap_or(false);
    assert!(
        on_path,
        "HPCSERA_TEST_SLURM=1 but sbatch is not on PATH: run scripts/setup-slurm.sh as root"
    );
    true
}

/// The user jobs run as (when the tests run as root), with uid and gid.
fn job_user() -> Option<(String, u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::env::var("HPCSERA_TEST_SLURM_USER").unwrap_or_else(|_| "nobody".into());
    let out = std::process::Command::new("id")
        .args(["-u", &name])
        .output()
        .unwrap();
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let out = std::process::Command::new("id")
        .args(["-g", &name])
        .output()
        .unwrap();
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Some((name, uid, gid))
}

fn adapter() -> CommandAdapter {
    let mut submit = Templates::preset(BatchPreset::Slurm).unwrap().submit;
    if let Some((user, _, _)) = job_user() {
        let mut wrapped: Vec<String> = vec!["runuser".into(), "-u".into(), user, "--".into()];
        wrapped.append(&mut submit);
        submit = wrapped;
    }
    CommandAdapter::from_config(&BatchConfig {
        preset: BatchPreset::Slurm,
        submit: Some(submit),
        ..BatchConfig::default()
    })
    .unwrap()
}

/// A work dir under /tmp that slurmd (running the job as the job user) can write.
struct Work {
    root: PathBuf,
}

impl Work {
    fn new() -> Work {
        let root =
            std::env::temp_dir().join(format!("hpcsera-slurm-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&root).unwrap();
        Work { root }
    }

    /// Renders the script for `job_id` and builds its submit request.
    fn job(
        &self,
        job_id: &str,
        script: &str,
        params: Value,
        options: &[&str],
    ) -> (SubmitRequest, PathBuf) {
        let dir = job_dir(&self.root, job_id).unwrap();
        let r = render_batch_script(&dir, "run", script).unwrap();
        if let Some((_, uid, gid)) = job_user() {
            for p in [&self.root, &dir, &r.path] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
            }
        }
        let params: Map<String, Value> = params.as_object().unwrap().clone();
        let options = options.iter().map(|s| s.to_string()).collect();
        crate::common::run_request(&dir, r, (job_id, "test", "slurm-test"), &params, options)
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn wait_for(
    a: &dyn BatchAdapter,
    job: &BatchJobRef,
    what: &str,
    done: impl Fn(&BatchState) -> bool,
) -> BatchState {
    let start = Instant::now();
    loop {
        let s = a.status_all(std::slice::from_ref(job)).await.unwrap()[&job.id].clone();
        if done(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "job {} is still {s:?}, waiting for {what}",
            job.id
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test]
async fn slurm_job_completes_with_output_and_params_verbatim() {
    if !enabled() {
        return;
    }
    let a = adapter();
    let w = Work::new();
    let canary = w.root.join("pwned");
    let value = format!(
        "a 'b' \"c\" $(touch {0}) `touch {0}` ;touch {0}\nnext line",
        canary.display()
    );
    let (req, exit_file) = w.job(
        &unique("ok"),
        "#SBATCH --ntasks=1\nprintf '%s' \"$HPCSERA_PARAM_x\"\necho >&2 \"user=$(id -un)\"\n",
        json!({ "x": value }),
        &["--time=00:05:00"],
    );
    let id = a.submit(&req).await.unwrap();
    assert!(id.chars().all(|c| c.is_ascii_digit()), "{id}");
    let job = BatchJobRef::new(id, Some(exit_file.clone()));
    let st = wait_for(&a, &job, "the end", BatchState::is_terminal).await;
    assert_eq!(st, BatchState::Completed { exit_code: 0 });
    assert_eq!(read(&req.stdout_path), value);
    if let Some((user, _, _)) = job_user() {
        assert_eq!(read(&req.stderr_path).trim(), format!("user={user}"));
    }
    assert_eq!(hpcsera_agent::script::read_exit_file(&exit_file), Some(0));
    assert!(!canary.exists());
}

#[tokio::test]
async fn slurm_failing_script_reports_its_exit_code() {
    if !enabled() {
        return;
    }
    let a = adapter();
    let w = Work::new();
    let (req, exit_file) = w.job(&unique("fail"), "echo failing\nexit 3\n", json!({}), &[]);
    let job = BatchJobRef::new(a.submit(&req).await.unwrap(), Some(exit_file));
    let st = wait_for(&a, &job, "the end", BatchState::is_terminal).await;
    assert_failed_with(&st, 3);
}

#[tokio::test]
async fn slurm_cancel_a_running_job() {
    if !enabled() {
        return;
    }
    let a = adapter();
    let w = Work::new();
    let (req, exit_file) = w.job(
        &unique("cancel"),
        "echo started\nsleep 300\n",
        json!({}),
        &[],
    );
    let job = BatchJobRef::new(a.submit(&req).await.unwrap(), Some(exit_file));
    wait_for(&a, &job, "running", |s| *s == BatchState::Running).await;
    a.cancel(&job.id).await.unwrap();
    let st = wait_for(&a, &job, "the end", BatchState::is_terminal).await;
    assert_eq!(st, BatchState::Cancelled);
}

#[tokio::test]
async fn slurm_hold_release_find_and_one_status_call() {
    if !enabled() {
        return;
    }
    let a = adapter();
    let w = Work::new();
    let mut jobs = Vec::new();
    let mut names = Vec::new();
    for i in 0..3 {
        let job_id = unique(&format!("hold{i}"));
        // Pending for an hour: it cannot start while the test looks at it.
        let (req, exit_file) = w.job(&job_id, "echo never\n", json!({}), &["--begin=now+1hour"]);
        let id = a.submit(&req).await.unwrap();
        names.push(req.job_name.clone());
        jobs.push(BatchJobRef::new(id, Some(exit_file)));
    }
    // Several jobs: one squeue call.
    let before = a.commands_spawned();
    let st = a.status_all(&jobs).await.unwrap();
    assert_eq!(a.commands_spawned() - before, 1);
    assert!(st.values().all(|s| *s == BatchState::Pending), "{st:?}");

    // find_by_name: all three, by the names that carry the hpcsera job ids.
    let found = a.find_by_name(&names).await.unwrap();
    for (n, j) in names.iter().zip(&jobs) {
        assert_eq!(found.get(n), Some(&j.id), "{found:?}");
    }

    let first = &jobs[0];
    a.hold(&first.id).await.unwrap();
    assert_eq!(
        wait_for(&a, first, "held", |s| *s == BatchState::Held).await,
        BatchState::Held
    );
    a.release(&first.id).await.unwrap();
    let st = wait_for(&a, first, "released", |s| *s != BatchState::Held).await;
    assert_eq!(st, BatchState::Pending);

    for j in &jobs {
        a.cancel(&j.id).await.unwrap();
    }
    let st = a.status_all(&jobs).await.unwrap();
    assert!(st.values().all(|s| *s == BatchState::Cancelled), "{st:?}");
}

/// The agent "crashes" after sbatch accepted the job but before it recorded the batch id:
/// reconciliation adopts the job instead of submitting it again.
#[tokio::test]
async fn slurm_restart_reconciliation_submits_nothing_twice() {
    if !enabled() {
        return;
    }
    let a = adapter();
    let w = Work::new();
    let job_id = unique("crash");
    let (req, exit_file) = w.job(&job_id, "sleep 2\n", json!({}), &[]);
    let submitted_id = {
        let j = Journal::open(w.root.join(".journal")).unwrap();
        j.record_intent(&job_id, "run", &req.job_name, Some(&exit_file))
            .unwrap();
        a.submit(&req).await.unwrap()
        // crash: record_submitted never happens
    };
    let j = Journal::open(w.root.join(".journal")).unwrap();
    let fresh = adapter();
    let r = j.reconcile(&fresh).await.unwrap();
    assert_eq!(r.adopted.len(), 1, "{r:?}");
    assert_eq!(r.adopted[0].1, submitted_id);
    assert!(r.not_submitted.is_empty());
    let active = j.active().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].batch_id, submitted_id);
    let job = BatchJobRef::new(submitted_id, Some(exit_file));
    assert_eq!(
        wait_for(&fresh, &job, "the end", BatchState::is_terminal).await,
        BatchState::Completed { exit_code: 0 }
    );
    // Exactly one Slurm job carries the name.
    let out = std::process::Command::new("squeue")
        .args([
            "--noheader",
            "--states=all",
            "--format=%i",
            &format!("--name={}", req.job_name),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}
