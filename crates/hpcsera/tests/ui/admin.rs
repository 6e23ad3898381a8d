//! The admin pages in headless Chromium: the admin CLI makes carol an administrator
//! (`hpcsera admin user admin carol`), she adds dave to her project with two roles on the
//! projects page, looks at users, sites and the audit log; dave, no admin, is refused every
//! admin page (not found) and sees no Admin entry, but now sees carol's project.

use crate::harness::{Browser, Server, PASSWORD};
use hpcsera_api_types::{Role, RoleSet};

/// Every admin page.
const ADMIN_PAGES: &[&str] = &[
    "/ui/admin",
    "/ui/admin/users",
    "/ui/admin/projects",
    "/ui/admin/sites",
    "/ui/admin/audit",
];

fn admin_cli(s: &Server, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hpcsera"))
        .arg("admin")
        .args(args)
        .env("HPCSERA_DATABASE_URL", &s.database_url)
        .env("HPCSERA_DATA_DIR", s.dir.path())
        .output()
        .expect("run hpcsera admin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_a_member_and_a_non_admin_is_refused() {
    let s = Server::start().await;
    let out = admin_cli(&s, &["user", "admin", "carol"]);
    assert_eq!(out.trim(), "carol is an administrator");
    // An agent's token in proj-a, used once, so the sites and audit pages have something.
    let (_, agent) = s
        .store
        .create_token(&hpcsera_store::NewToken {
            user: "carol",
            project: "proj-a",
            name: "agent",
            roles: [Role::GetJob, Role::UpdateJobStatus, Role::GetCode]
                .into_iter()
                .collect(),
            site: Some("admin-site"),
            expires_at: None,
        })
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .put(format!("{}/api/v1/sites/admin-site/jobTypes", s.base))
        .bearer_auth(&agent)
        .json(&serde_json::json!({"jobTypes": [], "agentVersion": "0.1.0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    // The audit writer batches: wait until the publication is recorded.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.store.audit_row_counts().await.unwrap().0 == 0 {
        assert!(std::time::Instant::now() < until, "no audit record");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let b = browser!("an_admin_adds_a_member_and_a_non_admin_is_refused");
    b.login(&s.base, "carol", PASSWORD).await;
    b.wait_for("/ui/projects", "You are an administrator").await;
    b.click("a[href='/ui/admin']").await;
    b.wait_for("/ui/admin/users", "Invite someone").await;
    b.shot("admin-users").await;

    b.click("a[href='/ui/admin/projects']").await;
    b.wait_for("/ui/admin/projects", "id=\"member-proj-a-carol\"")
        .await;
    b.click("#project-proj-a summary").await;
    b.fill("#user-proj-a", "dave").await;
    // Only GET_JobStatus and POST_Job: untick the other six.
    for r in Role::ALL {
        if r != Role::GetJobStatus && r != Role::PostJob {
            b.click(&format!(
                "#project-proj-a input[name=role][value={}]",
                r.as_str()
            ))
            .await;
        }
    }
    b.click("#add-member-proj-a").await;
    let html = b
        .wait_for("/ui/admin/projects", "id=\"member-proj-a-dave\"")
        .await;
    assert!(html.contains("GET_JobStatus POST_Job"), "{html}");
    let dave = s.store.user_by_name("dave").await.unwrap().unwrap();
    let m = s.store.user_memberships(dave.id).await.unwrap();
    let a = m
        .iter()
        .find(|m| m.project == "proj-a")
        .expect("dave in proj-a");
    assert_eq!(
        a.roles,
        [Role::GetJobStatus, Role::PostJob]
            .into_iter()
            .collect::<RoleSet>()
    );
    b.shot("admin-projects").await;

    b.click("a[href='/ui/admin/sites']").await;
    b.wait_for("/ui/admin/sites", "admin-site").await;
    b.shot("admin-sites").await;
    b.click("a[href='/ui/admin/audit']").await;
    b.wait_for("/ui/admin/audit", "Audit log").await;
    b.fill("#a-project", "proj-a").await;
    b.click("#filter").await;
    b.wait_for("/ui/admin/audit", "/api/v1/sites/admin-site/jobTypes")
        .await;
    b.shot("admin-audit").await;
    // The CLI reads the same log with the same filters.
    let cli = admin_cli(
        &s,
        &["audit", "--project", "proj-a", "--action", "/api/v1/sites/"],
    );
    assert!(
        cli.contains("PUT\t/api/v1/sites/admin-site/jobTypes\t204"),
        "{cli}"
    );
    let cli = admin_cli(&s, &["audit", "--user", "dave"]);
    assert_eq!(cli.lines().count(), 1, "only the header: {cli}");
    b.click(".logout button").await;
    b.wait_for("/ui/login", "User name").await;

    // The CLI disables and enables dave (the users page's buttons are the same store calls).
    let out = admin_cli(&s, &["user", "disable", "dave"]);
    assert!(out.starts_with("dave is disabled"), "{out}");
    let listed = admin_cli(&s, &["user", "list"]);
    assert!(listed.contains("dave\t-\tdisabled"), "{listed}");
    b.login(&s.base, "dave", PASSWORD).await;
    b.wait_for("/ui/login", "The user name or password is not right.")
        .await;
    admin_cli(&s, &["user", "enable", "dave"]);

    // dave: no admin. Every admin page is "not found"; no Admin entry; carol's project now.
    b.login(&s.base, "dave", PASSWORD).await;
    let html = b.wait_for("/ui/projects", "proj-a").await;
    assert!(!html.contains("/ui/admin"), "{html}");
    for page in ADMIN_PAGES {
        b.goto(&format!("{}{page}", s.base)).await;
        let html = b.wait_for(page, "Not found").await;
        assert!(!html.contains("carol"), "{page}");
    }
    b.shot("admin-refused").await;
    b.close().await;
}
