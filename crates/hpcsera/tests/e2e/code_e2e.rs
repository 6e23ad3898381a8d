//! Code ingest end to end: `hpcsera code push`, a job that waits in `awaiting_approval`, the
//! real agent binary computing the HPC-side digest, approval and rejection through
//! `hpcsera admin code …`, and the job running the pushed code — on the local adapter, or on
//! the real Slurm when `HPCSERA_TEST_ADAPTER=slurm`.

use crate::common;

use common::slurm;

use hpcsera_api_types::{CodeStatus, JobStatus, OutputStream};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) const SITE: &str = "e2e-code";

const JOB_TYPES: &str = include_str!("../../fixtures/job_types/code.toml");

/// The shared test set-up with the code job type, plus the helpers of these tests.
pub(crate) struct Env(pub(crate) common::Env);

impl std::ops::Deref for Env {
    type Target = common::Env;
    fn deref(&self) -> &common::Env {
        &self.0
    }
}

impl Env {
    async fn new() -> Env {
        Env(common::Env::new(SITE, JOB_TYPES).await)
    }

    /// With more lines in the agent's `[limits]`.
    async fn with_agent_limits(limits: &str) -> Env {
        Env::with_opts(common::Opts {
            agent_limits: limits.to_string(),
            ..Default::default()
        })
        .await
    }

    /// With other settings of the set-up.
    pub(crate) async fn with_opts(opts: common::Opts) -> Env {
        Env(common::Env::with_opts(SITE, JOB_TYPES, opts).await)
    }

    /// The files in the agent's code quarantine.
    fn quarantine(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(self.work.join(".code/quarantine"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                        (e.file_name().to_string_lossy().into_owned(), len)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Waits until the quarantine holds exactly `ids`.
    async fn wait_quarantine(&self, ids: &[&str]) {
        let started = Instant::now();
        loop {
            let names: Vec<String> = self.quarantine().into_iter().map(|(n, _)| n).collect();
            let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            want.sort();
            if names == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the quarantine holds {names:?}, not {want:?}: {}",
                self.agent_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) async fn submit(&self, params: Value) -> hpcsera_api_types::Job {
        self.submit_job("runcode", params).await
    }

    pub(crate) async fn wait_end(&self, id: &str) -> hpcsera_api_types::Job {
        let limit = Duration::from_secs(120);
        self.wait_for_within(id, JobStatus::is_terminal, "terminal", limit)
            .await
    }

    /// Waits for the job's end, asserts that it completed (on Slurm: as a Slurm job), and
    /// returns its stdout.
    pub(crate) async fn wait_completed(&self, id: &str) -> String {
        let done = self.wait_end(id).await;
        self.assert_completed(&done);
        if slurm() {
            assert!(
                done.batch_job_id
                    .as_deref()
                    .is_some_and(|b| b.parse::<u64>().is_ok()),
                "a Slurm job id: {:?}",
                done.batch_job_id
            );
        }
        let out = self
            .client
            .read_output(id, OutputStream::Stdout, 0, 1 << 20)
            .await
            .unwrap();
        String::from_utf8_lossy(&out.data).into_owned()
    }
}

#[tokio::test]
async fn pushed_code_runs_only_after_approval_of_the_hpc_digest() {
    let env = Env::new().await;
    let src = env.dir.path().join("src");
    common::code_tree(&src, "input data");
    let id = env.push(&src).await;
    assert!(hpcsera_api_types::is_code_id(&id), "{id:?}");
    // The same tree again, and a copy with other mtimes: the same digest.
    assert_eq!(env.push(&src).await, id);
    let copy = env.dir.path().join("copy");
    common::code_tree(&copy, "input data");
    std::fs::File::options()
        .write(true)
        .open(copy.join("data/input.txt"))
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(12345))
        .unwrap();
    assert_eq!(env.push(&copy).await, id);

    let job = env
        .submit(json!({"src": id, "greeting": "from the bundle"}))
        .await;
    assert_eq!(job.status, JobStatus::AwaitingApproval);

    // The agent fetches the bundle into quarantine and reports the digest it computed.
    let b = env.wait_hpc_digest(&id).await;
    assert_eq!(b.hpc_sha256.as_deref(), Some(id.as_str()));
    assert!(b.digests_match);
    assert_eq!(b.status, CodeStatus::PendingApproval);
    let (ok, status_out, _) = env.hpcsera(&["code", "status", &id]).await;
    assert!(ok);
    assert!(
        status_out.contains(&format!("hpc_sha256\t{id}")),
        "{status_out}"
    );
    let quarantined = env.work.join(".code/quarantine").join(&id);
    assert!(quarantined.is_file(), "the bytes are kept in quarantine");
    // Nothing was unpacked, nothing ran.
    assert!(!env.work.join(&job.id).join("code").exists());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.client.get_job(&job.id).await.unwrap().status,
        JobStatus::AwaitingApproval
    );

    // A token with every role cannot approve: there is no approval endpoint.
    let http = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::PUT, format!("/api/v1/code/{id}")),
        (reqwest::Method::POST, format!("/api/v1/code/{id}")),
        (reqwest::Method::POST, format!("/api/v1/code/{id}/approve")),
        (reqwest::Method::PUT, format!("/api/v1/code/{id}/status")),
        (reqwest::Method::PATCH, format!("/api/v1/code/{id}")),
    ] {
        let s = http
            .request(method.clone(), format!("{}{path}", env.url))
            .bearer_auth(&env.token)
            .json(&json!({"status": "approved"}))
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            s == reqwest::StatusCode::NOT_FOUND || s == reqwest::StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {s}"
        );
    }
    assert_eq!(
        env.client.code_status(&id).await.unwrap().status,
        CodeStatus::PendingApproval
    );
    // Someone outside the project cannot approve either.
    let (ok, out) = env.decide("approve", &id, "mallory", "me").await;
    assert!(!ok, "{out}");
    assert!(out.contains("not a member"), "{out}");

    // The owner approves out of band; the job runs the pushed code.
    let (ok, out) = env.decide("approve", &id, "alice", "reviewed").await;
    assert!(ok, "{out}");
    assert!(out.contains("1 waiting job(s) queued"), "{out}");
    assert_eq!(
        env.wait_completed(&job.id).await,
        "pushed code says: from the bundle\ninput data\n"
    );
    let unpacked = env.work.join(&job.id).join("code/src/bin/hello.sh");
    assert!(unpacked.is_file());
    let events = env.client.events(&job.id, 0).await.unwrap();
    assert!(events.iter().any(|e| e.to_status == Some(JobStatus::Queued)
        && e.from_status == Some(JobStatus::AwaitingApproval)
        && e.actor == "user:alice"));
}

#[tokio::test]
async fn a_rejected_bundle_fails_its_job_and_is_deleted() {
    let env = Env::new().await;
    let src = env.dir.path().join("bad");
    common::code_tree(&src, "bad");
    let id = env.push(&src).await;
    let job = env.submit(json!({"src": id})).await;
    assert_eq!(job.status, JobStatus::AwaitingApproval);
    let file = env.code_dir.join(&id[..2]).join(&id);
    assert!(file.is_file());
    let (ok, out) = env.decide("reject", &id, "alice", "not reviewed").await;
    assert!(ok, "{out}");
    let done = env.client.get_job(&job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Failed);
    assert_eq!(
        done.message.as_deref(),
        Some(format!("code bundle {id} rejected: not reviewed").as_str())
    );
    assert_eq!(
        env.client.code_status(&id).await.unwrap().status,
        CodeStatus::Rejected
    );
    assert!(!file.exists(), "a rejected bundle's bytes are deleted");
    assert!(!env.work.join(&job.id).exists());
}

#[tokio::test]
async fn an_approved_but_unsafe_archive_is_refused_by_the_agent() {
    let env = Env::new().await;
    // A tar.gz with an entry that climbs out of the work directory.
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut h = tar::Header::new_old();
    let name = b"../../escaped.txt";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let mut gz = b.into_inner().unwrap();
    gz.flush().unwrap();
    let path = env.dir.path().join("evil.tar.gz");
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let id = env.push(&path).await;
    let job = env.submit(json!({"src": id})).await;
    env.wait_hpc_digest(&id).await;
    let (ok, out) = env.decide("approve", &id, "alice", "oops").await;
    assert!(ok, "{out}");
    let done = env.wait_end(&job.id).await;
    assert_eq!(done.status, JobStatus::Failed);
    let msg = done.message.unwrap_or_default();
    assert!(
        msg.contains("refused") && msg.contains("../../escaped.txt"),
        "{msg}"
    );
    assert!(!env.work.join("escaped.txt").exists());
    assert!(!env.dir.path().join("escaped.txt").exists());
    assert!(!env.work.join(&job.id).join("code/src").exists());
}

#[tokio::test]
async fn a_header_bomb_fails_its_job_with_a_short_message_and_the_agent_stays_small() {
    let env = Env::new().await;
    // A small tar.gz whose GNU long-name entry says 512 MiB, streamed to disk.
    let path = env.dir.path().join("bomb.tar.gz");
    {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::default(),
        ));
        let size = 512 * 1024 * 1024;
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, std::io::Read::take(std::io::repeat(b'a'), size))
            .unwrap();
        let mut h = tar::Header::new_old();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    assert!(std::fs::metadata(&path).unwrap().len() < 1024 * 1024);
    let id = env.push(&path).await;
    let job = env.submit(json!({"src": id})).await;
    env.wait_hpc_digest(&id).await;
    let (ok, out) = env.decide("approve", &id, "alice", "looks small").await;
    assert!(ok, "{out}");
    let done = env.wait_end(&job.id).await;
    assert_eq!(done.status, JobStatus::Failed, "{:?}", done.message);
    let msg = done.message.unwrap_or_default();
    assert!(msg.len() < 1000, "a short message: {} bytes", msg.len());
    assert!(msg.contains("long name"), "{msg}");
    let peak = env.agent_peak_rss();
    assert!(
        peak < 100 * 1024 * 1024,
        "the agent's peak RSS is {} MB",
        peak >> 20
    );
    assert!(!env.work.join(&job.id).join("code/src").exists());
}

#[tokio::test]
async fn bytes_changed_after_approval_are_not_unpacked() {
    let env = Env::new().await;
    let src = env.dir.path().join("src");
    common::code_tree(&src, "original");
    let id = env.push(&src).await;
    let job = env.submit(json!({"src": id})).await;
    env.wait_hpc_digest(&id).await;
    // The stored bytes change behind the server's back (a tampered disk, a bad replica).
    let other = env.dir.path().join("other");
    common::code_tree(&other, "tampered");
    let tampered = env.dir.path().join("tampered.tar.gz");
    let out = env.push(&other).await;
    let other_file = env.code_dir.join(&out[..2]).join(&out);
    std::fs::copy(&other_file, &tampered).unwrap();
    std::fs::copy(&tampered, env.code_dir.join(&id[..2]).join(&id)).unwrap();
    let (ok, out) = env.decide("approve", &id, "alice", "reviewed").await;
    assert!(ok, "{out}");
    let done = env.wait_end(&job.id).await;
    assert_eq!(done.status, JobStatus::Failed);
    let msg = done.message.unwrap_or_default();
    assert!(
        msg.contains("not the approved digest") && msg.contains("refusing to unpack"),
        "{msg}"
    );
    assert!(!env.work.join(&job.id).join("code/src").exists());
}

#[tokio::test]
async fn job_submit_with_an_at_path_pushes_the_directory_and_references_it() {
    let env = Env::new().await;
    let src = env.dir.path().join("cli-src");
    common::code_tree(&src, "from the cli");
    let pushed = env.push(&src).await;
    let (ok, out, err) = env
        .hpcsera(&[
            "job",
            "submit",
            SITE,
            "runcode",
            "-p",
            &format!("src=@{}", src.display()),
            "--output",
            "json",
        ])
        .await;
    assert!(ok, "{err}");
    let job: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        job["parameters"]["src"],
        pushed.as_str(),
        "the same tree gives the same digest"
    );
    assert_eq!(job["status"], "awaiting_approval");
    assert!(err.contains(&pushed), "says what it pushed: {err}");
    let (ok, _, err) = env
        .hpcsera(&["job", "submit", SITE, "runcode", "-p", "src=@/no/such/dir"])
        .await;
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error:"), "{err}");
}

/// A code tree with a 200 KB file that does not compress.
fn big_code_tree(root: &Path, seed: u64) {
    common::code_tree(root, &format!("seed {seed}"));
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<u8> = (0..200_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect();
    std::fs::write(root.join("data/blob.bin"), data).unwrap();
}

#[tokio::test]
async fn the_quarantine_keeps_only_pending_bundles_within_its_size_limit() {
    let mut env = Env::with_agent_limits("max_quarantine_bytes = 300000").await;
    let mut ids = Vec::new();
    for seed in 1..=3 {
        let src = env.dir.path().join(format!("src{seed}"));
        big_code_tree(&src, seed);
        ids.push(env.push(&src).await);
    }
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    // A is verified and kept while it is pending.
    let job_a = env.submit(json!({"src": a})).await;
    env.wait_hpc_digest(a).await;
    env.wait_quarantine(&[a]).await;
    // A is rejected; B is verified: A goes, B stays.
    let (ok, out) = env.decide("reject", a, "alice", "no").await;
    assert!(ok, "{out}");
    assert_eq!(env.wait_end(&job_a.id).await.status, JobStatus::Failed);
    env.submit(json!({"src": b})).await;
    env.wait_hpc_digest(b).await;
    env.wait_quarantine(&[b]).await;
    // C is verified too: both are pending, but only one fits in 300 kB: the older goes.
    env.submit(json!({"src": c})).await;
    env.wait_hpc_digest(c).await;
    env.wait_quarantine(&[c]).await;
    let total: u64 = env.quarantine().iter().map(|(_, n)| n).sum();
    assert!(total <= 300_000, "{total}");
    // C is approved while the agent is down: the next start removes it.
    env.0.kill_agent().await;
    let (ok, out) = env.decide("approve", c, "alice", "fine").await;
    assert!(ok, "{out}");
    env.0.start_agent();
    env.wait_quarantine(&[]).await;
    env.cancel_unfinished_jobs().await;
}
