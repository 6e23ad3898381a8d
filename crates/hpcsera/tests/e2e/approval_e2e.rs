//! Signed approvals end to end: the real agent binary with `[approval] require_signature =
//! true` and its own allowed-signers file, on the local adapter or on the real Slurm
//! (`HPCSERA_TEST_ADAPTER=slurm`). A bundle approved with a valid signature (made by OpenSSH's
//! `ssh-keygen -Y sign`, or by `hpcsera code approve --sign` / `--ssh-agent`) runs; approvals a
//! compromised server could record — unsigned, or signed for another project, site or digest,
//! expired, or by a key the cluster does not list — are refused by the agent, and the job
//! fails saying which check failed, with nothing unpacked.

use crate::code_e2e::{Env, SITE};
use crate::common;
use crate::common::code_tree;
use hpcsera_api_types::{JobStatus, SignedApproval};
use hpcsera_approval::ApprovalMessage;
use serde_json::json;
use std::path::{Path, PathBuf};

#[path = "../../../approval/tests/common/openssh.rs"]
mod openssh;

/// Keys and the agent's allowed-signers file (alice's first key only).
struct Keys {
    dir: tempfile::TempDir,
    /// In allowed_signers for alice, registered on the server for alice.
    alice: PathBuf,
    /// Registered on the server for alice, not in allowed_signers.
    unlisted: PathBuf,
    allowed: PathBuf,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let alice = openssh::ed25519(dir.path(), "alice");
        let unlisted = openssh::ed25519(dir.path(), "unlisted");
        let allowed = dir.path().join("allowed_signers");
        std::fs::write(
            &allowed,
            format!(
                "# who may approve code for this agent\nalice namespaces=\"hpcsera-code\" {}",
                openssh::public_line(&alice)
            ),
        )
        .unwrap();
        Keys {
            dir,
            alice,
            unlisted,
            allowed,
        }
    }

    fn allowed_text(&self) -> String {
        std::fs::read_to_string(&self.allowed).unwrap()
    }
}

/// The code set-up with an agent that requires signed approvals, and both keys registered for
/// alice on the server.
async fn env(keys: &Keys) -> Env {
    let env = Env::with_opts(common::Opts {
        agent_approval: format!(
            "require_signature = true\nallowed_signers = {:?}\nproject = \"p\"",
            keys.allowed.display().to_string()
        ),
        ..Default::default()
    })
    .await;
    for key in [&keys.alice, &keys.unlisted] {
        let (ok, out, err) = env
            .hpcsera(&[
                "admin",
                "user",
                "key",
                "add",
                "alice",
                key.with_extension("pub").to_str().unwrap(),
            ])
            .await;
        assert!(ok, "{out}{err}");
    }
    env
}

/// A pushed bundle with a waiting job whose HPC digest the agent reported: (digest, job id).
async fn waiting(env: &Env, label: &str) -> (String, String) {
    let src = env.dir.path().join(label);
    code_tree(&src, label);
    let id = env.push(&src).await;
    let job = env.submit(json!({"src": id, "greeting": label})).await;
    assert_eq!(job.status, JobStatus::AwaitingApproval);
    env.wait_hpc_digest(&id).await;
    (id, job.id)
}

fn message(digest: &str, project: &str, site: &str, expires: Option<i64>) -> String {
    ApprovalMessage::new(digest, project, &[site.to_string()], expires)
        .unwrap()
        .render()
}

fn signed(key: &Path, msg: &str) -> SignedApproval {
    SignedApproval {
        message: msg.to_string(),
        signature: openssh::sign(key, openssh::NS, msg),
        key_fingerprint: Some(openssh::fingerprint(key)),
    }
}

/// Waits for the job's end; asserts it completed and printed its greeting.
async fn assert_ran(env: &Env, job: &str, label: &str) {
    let out = env.wait_completed(job).await;
    assert!(out.contains(&format!("pushed code says: {label}")), "{out}");
}

/// Waits for the job's end; asserts it failed on the approval with `check` named, and that
/// nothing was unpacked.
async fn assert_refused(env: &Env, job: &str, check: &str) {
    let done = env.wait_end(job).await;
    assert_eq!(
        done.status,
        JobStatus::Failed,
        "{check}: {:?}",
        done.message
    );
    let msg = done.message.unwrap_or_default();
    assert!(
        msg.contains("the approval is refused")
            && msg.contains(check)
            && msg.contains("refusing to unpack"),
        "{check}: {msg}"
    );
    assert!(
        !env.work.join(job).join("code/src").exists(),
        "{check}: nothing unpacked"
    );
    assert!(done.batch_job_id.is_none(), "{check}: nothing submitted");
}

#[tokio::test]
async fn the_agent_runs_only_code_whose_signed_approval_it_can_verify() {
    let keys = Keys::new();
    let env = env(&keys).await;
    let labels = [
        "good", "unsigned", "project", "site", "digest", "expired", "unlisted",
    ];
    let mut b = Vec::new();
    for l in labels {
        b.push(waiting(&env, l).await);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // A signature made by OpenSSH, uploaded through the API: accepted by server and agent.
    let (id, good_job) = &b[0];
    let ok = env
        .client
        .approve_code_signed(
            id,
            &signed(&keys.alice, &message(id, "p", SITE, Some(now + 3600))),
        )
        .await
        .unwrap();
    assert_eq!(ok.decided_by.as_deref(), Some("alice"));
    // A compromised server writes what it likes into its database; the agent checks.
    let store = &env.store;
    store
        .decide_bundle("p", &b[1].0, "alice", true, None)
        .await
        .unwrap();
    let forged = [
        (2, message(&b[2].0, "other", SITE, None)),
        (3, message(&b[3].0, "p", "elsewhere", None)),
        (4, message(&b[0].0, "p", SITE, None)),
        (5, message(&b[5].0, "p", SITE, Some(now - 60))),
    ];
    for (i, msg) in forged {
        store
            .approve_bundle_signed("p", &b[i].0, "alice", &signed(&keys.alice, &msg))
            .await
            .unwrap();
    }
    // A key the server knows (alice registered it) but the cluster does not list.
    let (id, _) = &b[6];
    env.client
        .approve_code_signed(id, &signed(&keys.unlisted, &message(id, "p", SITE, None)))
        .await
        .unwrap();

    assert_ran(&env, good_job, "good").await;
    assert_refused(&env, &b[1].1, "not signed").await;
    assert_refused(
        &env,
        &b[2].1,
        "project: the signature approves project \"other\"",
    )
    .await;
    assert_refused(
        &env,
        &b[3].1,
        "site: the signature approves site(s) elsewhere",
    )
    .await;
    assert_refused(&env, &b[4].1, "digest: the signature approves").await;
    assert_refused(&env, &b[5].1, "expiry: the signed approval expired").await;
    assert_refused(&env, &b[6].1, "is not in the allowed signers").await;
}

#[tokio::test]
async fn code_approve_signs_what_ssh_keygen_verifies_and_the_agent_runs_it() {
    let keys = Keys::new();
    let env = env(&keys).await;
    // With a key file.
    let (id, job) = waiting(&env, "keyfile").await;
    let key = keys.alice.to_str().unwrap();
    let (ok, out, err) = env
        .hpcsera(&[
            "code",
            "approve",
            &id,
            "--sign",
            key,
            "--yes",
            "--expires",
            "1d",
        ])
        .await;
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("hpcsera-code-approval v1") && err.contains(&format!("digest sha256:{id}")),
        "{err}"
    );
    // What is approved is shown first: the bundle's entries with modes and sizes.
    assert!(
        err.contains("0755 file") && err.contains("bin/hello.sh"),
        "{err}"
    );
    assert!(err.contains("data/input.txt"), "{err}");
    assert!(out.contains(&format!("{id} approved by alice")), "{out}");
    let b = env.client.code_status(&id).await.unwrap();
    let approval = b.approval.expect("a signed approval");
    let (verified, said) = openssh::verify(
        &keys.allowed_text(),
        "alice",
        &approval.message,
        &approval.signature,
    );
    assert!(verified, "ssh-keygen -Y verify: {said}");
    assert_ran(&env, &job, "keyfile").await;

    // Through a real ssh-agent (the CLI picks the agent's only key).
    let agent = openssh::Agent::start(keys.dir.path());
    agent.add(&keys.alice);
    let (id, job) = waiting(&env, "agent").await;
    let (ok, out, err) = env
        .hpcsera_env(
            &[
                "code",
                "approve",
                &id,
                "--ssh-agent",
                "--site",
                SITE,
                "--yes",
            ],
            &[("SSH_AUTH_SOCK", agent.sock.as_path())],
        )
        .await;
    assert!(ok, "{out}{err}");
    assert!(err.contains("through the ssh-agent"), "{err}");
    let approval = env.client.code_status(&id).await.unwrap().approval.unwrap();
    let (verified, said) = openssh::verify(
        &keys.allowed_text(),
        "alice",
        &approval.message,
        &approval.signature,
    );
    assert!(verified, "{said}");
    assert_ran(&env, &job, "agent").await;

    // Stock OpenSSH, jq and curl, as the README says (its second block, run as written).
    let (id, job) = waiting(&env, "readme").await;
    let block = crate::readme::blocks("Signed approvals")[1]
        .replace("~/.ssh/id_ed25519", key)
        .replace("gwdg-scc", SITE);
    let work = tempfile::tempdir().unwrap();
    // Async: the in-process server must go on answering curl meanwhile.
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(work.path())
        .env("DIGEST", &id)
        .env("HPCSERA_URL", &env.url)
        .env("HPCSERA_TOKEN", &env.token)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("\"status\":\"approved\""), "{said}");
    assert_ran(&env, &job, "readme").await;

    // Without --yes and without a terminal it asks nothing and approves nothing.
    let (id, _) = waiting(&env, "unconfirmed").await;
    let (ok, _, err) = env.hpcsera(&["code", "approve", &id, "--sign", key]).await;
    assert!(!ok);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(
        env.client.code_status(&id).await.unwrap().status,
        hpcsera_api_types::CodeStatus::PendingApproval
    );
    env.cancel_unfinished_jobs().await;
}

#[tokio::test]
async fn the_agent_refuses_to_start_with_an_unusable_allowed_signers_file() {
    let keys = Keys::new();
    std::fs::write(&keys.allowed, "alice cert-authority ssh-ed25519 AAAA\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let token = dir.path().join("token");
    std::fs::write(&token, "hpcs_x\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let write = |allowed: &Path| {
        std::fs::write(
            &config,
            format!(
                "server_url = \"http://127.0.0.1:9\"\ntoken_file = {:?}\nsite = \"s\"\nwork_dir = {:?}\n\
                 [approval]\nrequire_signature = true\nallowed_signers = {:?}\nproject = \"p\"\n[batch]\npreset = \"local\"\n",
                token.display().to_string(),
                dir.path().join("work").display().to_string(),
                allowed.display().to_string(),
            ),
        )
        .unwrap();
    };
    let run = || {
        std::process::Command::new(common::bin())
            .args(["agent", "--config", config.to_str().unwrap(), "--once"])
            .output()
            .unwrap()
    };
    write(&keys.allowed);
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("allowed_signers") && err.contains(":1: cert-authority"),
        "{err}"
    );
    // Writable by others: refused too.
    std::fs::write(
        &keys.allowed,
        openssh::public_line(&keys.alice).replace("ssh-", "alice ssh-"),
    )
    .unwrap();
    std::fs::set_permissions(&keys.allowed, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("chmod go-w"), "{err}");
    // A missing [approval] setting is a config error.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("project = \"p\"\n", ""),
    )
    .unwrap();
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("approval.project"), "{err}");
}
