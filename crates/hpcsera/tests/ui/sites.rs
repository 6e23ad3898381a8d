//! The sites page and its job form in headless Chromium, with a real agent: the site with its
//! agent's health and job types, a form whose bad value comes back with the server's problem
//! next to its input, and a job submitted from the form whose output the job's page follows
//! live (on the local adapter, or Slurm with `HPCSERA_TEST_ADAPTER=slurm`).

use crate::agent_pages::{env, logged_in, text, SITE};
use crate::harness::Browser;
use hpcsera_api_types::JobStatus;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_from_the_sites_form_is_followed_live() {
    let env = env().await;
    let b = browser!("a_job_submitted_from_the_sites_form_is_followed_live");
    logged_in(&env, &b, "carol").await;
    b.click("a[href='/ui/sites']").await;
    let html = b.wait_for("/ui/projects/p/sites", SITE).await;
    for shown in [
        "prints a numbered line every 0.4 s",
        "whole number, 1 to 1000",
        "ticker",
    ] {
        assert!(html.contains(shown), "{shown}");
    }
    let version = text(&b, &format!("#site-{SITE} .version")).await;
    assert_ne!(version, "unknown", "the agent's version");
    assert_ne!(text(&b, &format!("#site-{SITE} .last-seen")).await, "never");
    b.shot("sites").await;

    let form = format!("/ui/projects/p/sites/{SITE}/ticker");
    b.click(&format!("a[href='{form}']")).await;
    b.wait_for(&form, "Submit the job").await;
    assert_eq!(
        b.client
            .find(fantoccini::Locator::Css("#p-n"))
            .await
            .unwrap()
            .attr("type")
            .await
            .unwrap()
            .as_deref(),
        Some("number")
    );
    b.shot("job-form").await;
    // Past the maximum: the browser's own check is switched off, so the server's is seen.
    b.fill("#p-n", "5000").await;
    b.client
        .execute(
            "document.getElementById('job-form').noValidate = true;",
            vec![],
        )
        .await
        .unwrap();
    b.click("#submit").await;
    b.wait_for(&form, "is 5000; the maximum is 1000").await;
    assert_eq!(text(&b, "#e-n").await, "is 5000; the maximum is 1000");
    b.shot("job-form-problem").await;

    b.fill("#p-n", "25").await;
    b.click("#submit").await;
    // The job's page, where its output follows live.
    let started = Instant::now();
    let job_page = loop {
        let at = b.path().await;
        if at.starts_with("/ui/projects/p/jobs/") {
            break at;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "at {at}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id = job_page
        .trim_start_matches("/ui/projects/p/jobs/")
        .to_string();
    let job = env.client.get_job(&id).await.unwrap();
    assert_eq!(job.parameters["n"], 25);
    assert_eq!(job.owner, "carol");
    b.wait_for(&job_page, "data-live").await;
    let started = Instant::now();
    loop {
        let shown = text(&b, "#stdout").await;
        if shown.contains("tick 3") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no live output: {shown:?}; agent log:\n{}",
            env.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.shot("job-from-form-live").await;
    let started = Instant::now();
    while !text(&b, "#live-state").await.contains("has ended") {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the page never saw the end"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected: String = (1..=25).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(text(&b, "#stdout").await.trim_end(), expected.trim_end());
    let done = env.client.get_job(&id).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.message);
    b.close().await;
}
