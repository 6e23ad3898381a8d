//! The pages that need a real agent, in headless Chromium: approving a code bundle in its page
//! runs its job, rejecting one fails its job with the reason, a job's page follows its output
//! live, cancel from a job's page reaches the agent, a non-member sees nothing of the project
//! (pages and the API routes behind them), and forms without the CSRF token change nothing.
//!
//! The agent is the real binary (the e2e set-up, `tests/e2e/common.rs`): on the local adapter,
//! or on the real Slurm with `HPCSERA_TEST_ADAPTER=slurm` (`scripts/test.sh` runs this module
//! once more so). Screenshots of every page go to `target/ui-screenshots/`.

use crate::common::{self, code_tree, Env};
use crate::harness::{Browser, PASSWORD};
use hpcsera_api_types::{JobStatus, OutputStream, RoleSet};
use serde_json::json;
use std::time::{Duration, Instant};

pub(crate) const SITE: &str = "ui-site";

/// The code, sleep and ticker job types, and carol (with a password) in the set-up's project.
pub(crate) async fn env() -> Env {
    let job_types = [
        include_str!("../../fixtures/job_types/code.toml").to_string(),
        common::sleep_and_later_job_types(),
        include_str!("../../fixtures/job_types/ticker.toml").to_string(),
    ]
    .join("\n");
    let env = Env::new(SITE, &job_types).await;
    env.store
        .create_user("carol", Some(PASSWORD), false)
        .await
        .unwrap();
    env.store.add_member("carol", "p").await.unwrap();
    env
}

/// Pushes a code tree (see [`code_tree`]) holding `message`; its id.
pub(crate) async fn push(env: &Env, message: &str) -> String {
    let dir = env
        .path()
        .join(format!("src-{}", message.replace(' ', "-")));
    code_tree(&dir, message);
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    b.append_dir_all(".", &dir).unwrap();
    let gz = b.into_inner().unwrap().finish().unwrap();
    env.client.push_code(&gz).await.unwrap().0.id
}

pub(crate) async fn logged_in(env: &Env, b: &Browser, user: &str) {
    b.login(&env.url, user, PASSWORD).await;
    b.wait_for("/ui/projects", "Your projects").await;
}

async fn stdout(env: &Env, id: &str) -> String {
    let c = env
        .client
        .read_output(id, OutputStream::Stdout, 0, 1 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&c.data).into_owned()
}

/// The text of the element `css` on the current page.
pub(crate) async fn text(b: &Browser, css: &str) -> String {
    b.client
        .find(fantoccini::Locator::Css(css))
        .await
        .expect(css)
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_a_bundle_in_its_page_runs_its_job() {
    let env = env().await;
    let b = browser!("approving_a_bundle_in_its_page_runs_its_job");
    // A bundle no job waits for: the agent never computes its digest, so no approval yet.
    let idle = push(&env, "never used").await;
    let id = push(&env, "approved input").await;
    let job = env
        .submit_job("runcode", json!({"src": id, "greeting": "from the page"}))
        .await;
    assert_eq!(job.status, JobStatus::AwaitingApproval);
    logged_in(&env, &b, "carol").await;

    let idle_page = format!("/ui/projects/p/code/{idle}");
    b.goto(&format!("{}{idle_page}", env.url)).await;
    b.wait_for(&idle_page, "has not reported its digest yet")
        .await;
    assert!(b.source().await.contains("id=\"approve\" disabled"));
    b.shot("code-bundle-unreported").await;

    env.wait_hpc_digest(&id).await;
    // The files route the page's list comes from (the SDK's `code_files`).
    let files = env.client.code_files(&id).await.unwrap();
    let script = files
        .files
        .iter()
        .find(|f| f.path.ends_with("bin/hello.sh"))
        .expect("bin/hello.sh is listed");
    assert_eq!(
        (script.kind.as_str(), script.mode.as_str()),
        ("file", "0755")
    );
    b.click("a[href='/ui/code']").await;
    b.wait_for("/ui/projects/p/code", &id[..12]).await;
    b.shot("code-list").await;
    let page = format!("/ui/projects/p/code/{id}");
    b.click(&format!("a[href='{page}']")).await;
    let html = b.wait_for(&page, "The digests match").await;
    assert!(
        html.contains(&job.id) && html.contains("hello.sh"),
        "{html}"
    );
    b.shot("code-bundle").await;
    b.click("#approve").await;
    b.wait_for(&page, "status-approved").await;
    b.shot("code-bundle-approved").await;

    let done = env
        .wait_for_within(
            &job.id,
            JobStatus::is_terminal,
            "ended",
            Duration::from_secs(300),
        )
        .await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.message);
    let out = stdout(&env, &job.id).await;
    assert!(
        out.contains("pushed code says: from the page") && out.contains("approved input"),
        "{out}"
    );
    let job_page = format!("/ui/projects/p/jobs/{}", job.id);
    b.goto(&format!("{}{job_page}", env.url)).await;
    b.wait_for(&job_page, "pushed code says: from the page")
        .await;
    b.shot("job-completed").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_a_bundle_in_its_page_fails_its_job_with_the_reason() {
    let env = env().await;
    let b = browser!("rejecting_a_bundle_in_its_page_fails_its_job_with_the_reason");
    let id = push(&env, "rejected input").await;
    let job = env.submit_job("runcode", json!({"src": id})).await;
    logged_in(&env, &b, "carol").await;
    let page = format!("/ui/projects/p/code/{id}");
    b.goto(&format!("{}{page}", env.url)).await;
    b.wait_for(&page, "Jobs waiting for it").await;
    b.fill("#reason", "reads files it should not").await;
    b.click("#reject").await;
    b.wait_for(&page, "status-rejected").await;
    b.shot("code-bundle-rejected").await;
    let failed = env
        .wait_for(&job.id, JobStatus::is_terminal, "failed")
        .await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(
        failed.message.as_deref(),
        Some(format!("code bundle {id} rejected: reads files it should not").as_str())
    );
    let job_page = format!("/ui/projects/p/jobs/{}", job.id);
    b.goto(&format!("{}{job_page}", env.url)).await;
    b.wait_for(&job_page, "rejected: reads files it should not")
        .await;
    b.shot("job-failed").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_page_follows_its_output_live() {
    let env = env().await;
    let b = browser!("a_jobs_page_follows_its_output_live");
    // Two short jobs first, for the list's picture.
    for seconds in [0, 1] {
        env.submit_job("sleep", json!({ "seconds": seconds })).await;
    }
    let job = env.submit_job("ticker", json!({"n": 40})).await;
    logged_in(&env, &b, "carol").await;
    // A shared Slurm may keep it pending a while: the page is opened once it runs.
    let running = |s: JobStatus| s == JobStatus::Running || s.is_terminal();
    let limit = Duration::from_secs(300);
    let now = env
        .wait_for_within(&job.id, running, "running", limit)
        .await;
    assert_eq!(now.status, JobStatus::Running, "{:?}", now.message);
    let page = format!("/ui/projects/p/jobs/{}", job.id);
    b.goto(&format!("{}{page}", env.url)).await;
    b.wait_for(&page, "data-live").await;
    // A mark on this page's window: gone if the page were reloaded.
    b.client
        .execute("window.hpcseraMark = 1;", vec![])
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let shown = text(&b, "#stdout").await;
        if shown.contains("tick 4") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no live output: {shown:?}; agent log:\n{}",
            env.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = env.client.get_job(&job.id).await.unwrap();
    assert!(
        !now.status.is_terminal(),
        "the output appeared while the job ran"
    );
    b.shot("job-live").await;
    let started = Instant::now();
    while !text(&b, "#live-state").await.contains("has ended") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the page never saw the end"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shown = text(&b, "#stdout").await;
    let expected: String = (1..=40).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(
        shown.trim_end(),
        expected.trim_end(),
        "all of it, in order, once"
    );
    assert_eq!(text(&b, "#job-status").await, "completed");
    let mark = b
        .client
        .execute("return window.hpcseraMark;", vec![])
        .await
        .unwrap();
    assert_eq!(mark, json!(1), "followed without reloading the page");
    b.click("a[href='/ui/jobs']").await;
    b.wait_for("/ui/projects/p/jobs", &job.id).await;
    b.shot("jobs").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_a_jobs_page_reaches_the_agent() {
    let env = env().await;
    let b = browser!("cancel_from_a_jobs_page_reaches_the_agent");
    let job = env.submit_job("sleep", json!({"seconds": 300})).await;
    let running = env.wait_submitted(&job.id).await;
    logged_in(&env, &b, "carol").await;
    let page = format!("/ui/projects/p/jobs/{}", job.id);
    b.goto(&format!("{}{page}", env.url)).await;
    b.wait_for(&page, "id=\"cancel\"").await;
    b.shot("job-running").await;
    b.client.set_window_size(390, 844).await.expect("resize");
    b.shot("job-phone").await;
    b.client.set_window_size(1280, 900).await.expect("resize");
    b.click("#cancel").await;
    b.wait_for(&page, "user:carol").await;
    let ended = env
        .wait_for(&job.id, JobStatus::is_terminal, "cancelled")
        .await;
    assert_eq!(ended.status, JobStatus::Cancelled, "{:?}", ended.message);
    // The agent carried it out: it reported the end, and its batch job is gone.
    let events = env.client.events(&job.id, 0).await.unwrap();
    let end = events
        .iter()
        .find(|e| e.to_status == Some(JobStatus::Cancelled))
        .expect("the cancelled event");
    assert!(end.actor.to_string().starts_with("agent:"), "{end:?}");
    if let Some(batch) = running.batch_job_id.as_deref() {
        let started = Instant::now();
        while env.batch_job_active(batch) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the batch job still runs"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    b.goto(&format!("{}{page}", env.url)).await;
    b.wait_for(&page, "status-cancelled").await;
    b.shot("job-cancelled").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_sees_nothing_and_forms_without_the_csrf_token_change_nothing() {
    let env = env().await;
    let b = browser!("a_non_member_sees_nothing_and_forms_without_the_csrf_token_change_nothing");
    let bundle = push(&env, "private code").await;
    let job = env.submit_job("sleep", json!({"seconds": 300})).await;
    env.wait_submitted(&job.id).await;
    // erin is a member of another project only.
    env.store
        .create_user("erin", Some(PASSWORD), false)
        .await
        .unwrap();
    env.store.add_member("erin", "other").await.unwrap();
    logged_in(&env, &b, "erin").await;
    for path in [
        "/ui/projects/p/jobs".to_string(),
        format!("/ui/projects/p/jobs/{}", job.id),
        format!("/ui/projects/p/jobs/{}/live", job.id),
        "/ui/projects/p/code".to_string(),
        format!("/ui/projects/p/code/{bundle}"),
        format!("/ui/projects/other/jobs/{}", job.id),
    ] {
        b.goto(&format!("{}{path}", env.url)).await;
        let html = b.wait_for(&path, "Not found").await;
        assert!(
            !html.contains(&job.id) && !html.contains(&bundle[..12]),
            "{path}"
        );
    }
    b.goto(&format!("{}/ui/jobs", env.url)).await;
    let html = b.wait_for("/ui/projects/other/jobs", "No jobs").await;
    assert!(!html.contains(&job.id));
    // The API routes behind the pages, with a token of erin's (every role, her project).
    let erin =
        crate::test_server::token(&env.store, "erin", "other", "t", RoleSet::all(), None).await;
    let http = reqwest::Client::new();
    for path in [
        format!("/api/v1/job/{}", job.id),
        format!("/api/v1/job/{}/events", job.id),
        format!("/api/v1/job/{}/output/stdout", job.id),
        format!("/api/v1/job/{}/results", job.id),
        format!("/api/v1/code/{bundle}/status"),
        format!("/api/v1/code/{bundle}/files"),
    ] {
        let r = http
            .get(format!("{}{path}", env.url))
            .bearer_auth(&erin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND, "{path}");
    }
    b.click(".logout button").await;
    b.wait_for("/ui/login", "User name").await;

    // carol's forms without their CSRF token: refused, nothing changed.
    logged_in(&env, &b, "carol").await;
    let job_page = format!("/ui/projects/p/jobs/{}", job.id);
    let code_page = format!("/ui/projects/p/code/{bundle}");
    for (page, form, button, posted) in [
        (
            &job_page,
            "form[action$='/operation']",
            "#cancel",
            "/operation",
        ),
        (&code_page, "#reject-form", "#reject", "/decision"),
    ] {
        b.goto(&format!("{}{page}", env.url)).await;
        b.wait_for(page, "csrf").await;
        if button == "#reject" {
            b.fill("#reason", "forged").await;
        }
        let script = format!("document.querySelector(\"{form} input[name=csrf]\").remove()");
        b.client.execute(&script, vec![]).await.expect("script");
        b.click(button).await;
        b.wait_for(&format!("{page}{posted}"), "Form refused").await;
    }
    let now = env.client.get_job(&job.id).await.unwrap();
    assert!(now.pending_operation.is_none() && !now.status.is_terminal());
    assert_eq!(
        env.client.code_status(&bundle).await.unwrap().status,
        hpcsera_api_types::CodeStatus::PendingApproval
    );
    env.cancel_unfinished_jobs().await;
    b.close().await;
}
