//! The web UI's admin pages over plain HTTP: non-admins get 404 on every admin path; an
//! admin makes projects, memberships with roles, invitations, disables and enables accounts
//! (their sessions and tokens stop and start), and reads the audit log with filters and pages.

use crate::common::*;
use crate::ui::{hidden, people, Browser, PASSWORD};
use hpcsera_api_types::Role;
use reqwest::StatusCode;

/// Every admin path, with the method.
const ADMIN_PATHS: &[(&str, &str)] = &[
    ("GET", "/ui/admin"),
    ("GET", "/ui/admin/users"),
    ("GET", "/ui/admin/projects"),
    ("GET", "/ui/admin/sites"),
    ("GET", "/ui/admin/audit"),
    ("GET", "/ui/admin/audit?user=carol"),
    ("POST", "/ui/admin/users/invite"),
    ("POST", "/ui/admin/users/dave/disable"),
    ("POST", "/ui/admin/users/dave/enable"),
    ("POST", "/ui/admin/users/dave/make-admin"),
    ("POST", "/ui/admin/users/dave/drop-admin"),
    ("POST", "/ui/admin/projects"),
    ("POST", "/ui/admin/projects/proj-b/members"),
    ("POST", "/ui/admin/projects/proj-b/members/dave/remove"),
];

/// A user's record, which must exist.
async fn user(t: &TestApp, name: &str) -> hpcsera_store::UserRecord {
    t.store.user_by_name(name).await.unwrap().unwrap()
}

async fn admin(t: &TestApp) -> Browser<'_> {
    t.store
        .create_user("root", Some(PASSWORD), true)
        .await
        .unwrap();
    Browser::logged_in(t, "root").await
}

#[tokio::test]
async fn non_admins_get_not_found_on_every_admin_page_and_form() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let csrf = b.csrf().await;
    assert!(!b.get("/ui/projects").await.body.contains("/ui/admin"));
    for (method, path) in ADMIN_PATHS {
        let p = if *method == "GET" {
            b.get(path).await
        } else {
            b.post(
                path,
                &[
                    ("csrf", &csrf),
                    ("name", "x"),
                    ("user", "carol"),
                    ("role", "GET_Job"),
                ],
            )
            .await
        };
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert!(!p.body.contains("dave"), "{method} {path}");
    }
    // Nothing changed: dave is still a member and enabled, carol no admin.
    assert_eq!(
        t.store
            .user_memberships(user(&t, "dave").await.id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(!user(&t, "carol").await.is_admin);
    // Without a session: the login form (pages) or 403 (forms), as elsewhere.
    let mut anon = Browser::new(&t);
    assert_eq!(
        anon.get("/ui/admin/users").await.location.as_deref(),
        Some("/ui/login")
    );
    assert_eq!(
        anon.post("/ui/admin/projects", &[]).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn an_admin_makes_projects_and_memberships_with_roles() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mut b = admin(&t).await;
    let page = b.get("/ui/admin/projects").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"member-proj-a-carol\"") && page.body.contains("all eight"));
    let csrf = hidden(&page.body, "csrf");
    // Forms without the CSRF token change nothing.
    let p = b.post("/ui/admin/projects", &[("name", "proj-c")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = b
        .post(
            "/ui/admin/projects",
            &[
                ("csrf", &csrf),
                ("name", "proj-c"),
                ("description", "the third"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = b
        .post("/ui/admin/projects", &[("csrf", &csrf), ("name", "proj-c")])
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("exists already"), "{}", p.body);
    let p = b
        .post(
            "/ui/admin/projects",
            &[("csrf", &csrf), ("name", "no spaces")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);

    // dave joins proj-c with two roles; his token there can do no more.
    let members = "/ui/admin/projects/proj-c/members";
    let p = b
        .post(
            members,
            &[
                ("csrf", &csrf),
                ("user", "dave"),
                ("role", "GET_JobStatus"),
                ("role", "POST_Job"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let dave_id = user(&t, "dave").await.id;
    let m = t.store.user_memberships(dave_id).await.unwrap();
    let c = m
        .iter()
        .find(|m| m.project == "proj-c")
        .expect("a member of proj-c");
    assert_eq!(
        c.roles,
        [Role::GetJobStatus, Role::PostJob].into_iter().collect()
    );
    // The same form for an existing member changes the roles.
    b.post(
        members,
        &[("csrf", &csrf), ("user", "dave"), ("role", "GET_JobStatus")],
    )
    .await;
    let m = t.store.user_memberships(dave_id).await.unwrap();
    assert_eq!(
        m.iter().find(|m| m.project == "proj-c").unwrap().roles,
        [Role::GetJobStatus].into_iter().collect()
    );
    for bad in [
        vec![
            ("csrf", csrf.as_str()),
            ("user", "nobody"),
            ("role", "GET_Job"),
        ],
        vec![("csrf", csrf.as_str()), ("user", "dave")],
        vec![("csrf", csrf.as_str()), ("user", "dave"), ("role", "ROOT")],
    ] {
        let p = b.post(members, &bad).await;
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    }
    let page = b.get("/ui/admin/projects").await;
    assert!(
        page.body.contains("id=\"member-proj-c-dave\""),
        "{}",
        page.body
    );
    // Removed: gone from the store and the page.
    let p = b
        .post(
            "/ui/admin/projects/proj-c/members/dave/remove",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(t
        .store
        .user_memberships(dave_id)
        .await
        .unwrap()
        .iter()
        .all(|m| m.project != "proj-c"));
    let p = b
        .post(
            "/ui/admin/projects/proj-c/members/dave/remove",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Sites: which projects' agents serve them.
    let p = b.get("/ui/admin/sites").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("testsite") && p.body.contains("proj-a") && p.body.contains("proj-b"));
}

#[tokio::test]
async fn a_disabled_account_loses_its_sessions_and_tokens_until_enabled() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mut b = admin(&t).await;
    let csrf = b.csrf().await;
    let mut carol = Browser::logged_in(&t, "carol").await;
    let token = t.user("carol").project("proj-a").token().await;
    assert_eq!(t.get("/api/v1/tokens/self", &token).await.0, StatusCode::OK);

    let p = b
        .post("/ui/admin/users/carol/disable", &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        carol.get("/ui/projects").await.location.as_deref(),
        Some("/ui/login")
    );
    let (s, body) = t.get("/api/v1/tokens/self", &token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body.to_string().contains("disabled"), "{body}");
    let p = Browser::new(&t).login("carol", PASSWORD).await;
    assert_eq!(
        p.status,
        StatusCode::UNAUTHORIZED,
        "the same answer as a wrong password"
    );
    assert!(b
        .get("/ui/admin/users")
        .await
        .body
        .contains("state-revoked\">disabled"));
    // An admin cannot lock themselves out.
    let p = b
        .post("/ui/admin/users/root/disable", &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);

    let p = b
        .post("/ui/admin/users/carol/enable", &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(t.get("/api/v1/tokens/self", &token).await.0, StatusCode::OK);
    Browser::logged_in(&t, "carol").await;
    // The admin flag.
    b.post("/ui/admin/users/carol/make-admin", &[("csrf", &csrf)])
        .await;
    assert!(user(&t, "carol").await.is_admin);
    b.post("/ui/admin/users/carol/drop-admin", &[("csrf", &csrf)])
        .await;
    assert!(!user(&t, "carol").await.is_admin);
    assert_eq!(
        b.post("/ui/admin/users/nobody/disable", &[("csrf", &csrf)])
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn an_invitation_made_on_the_users_page_works_once() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mut b = admin(&t).await;
    let csrf = b.csrf().await;
    let p = b
        .post(
            "/ui/admin/users/invite",
            &[("csrf", &csrf), ("name", "erin")],
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let link = hidden_value(&p.body, "invite-link");
    let path = link.strip_prefix(&t.base).expect("the server's own URL");
    let mut erin = Browser::new(&t);
    assert_eq!(erin.get(path).await.status, StatusCode::OK);
    let p = b
        .post(
            "/ui/admin/users/invite",
            &[("csrf", &csrf), ("name", "-bad")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b
        .get("/ui/admin/users")
        .await
        .body
        .contains("id=\"user-erin\""));
}

/// The value of the input with `id`.
fn hidden_value(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\" value=\"");
    let start = html.find(&marker).expect("the field") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn the_audit_log_filters_by_user_project_action_and_time_and_pages() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let alice = t.alice().await;
    for _ in 0..3 {
        t.get("/api/v1/tokens/self", &alice).await;
    }
    let bob = t.user("bob").project("proj-b").token().await;
    t.get("/api/v1/sites", &bob).await;
    // The audit writer batches: wait until the records are in.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.store.audit_row_counts().await.unwrap().0 < 4 {
        assert!(std::time::Instant::now() < until, "no audit records");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut b = admin(&t).await;
    let rows = |html: &str| html.matches("<td data-label=\"When\">").count();
    let p = b.get("/ui/admin/audit?user=alice").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(rows(&p.body), 3);
    assert!(!p.body.contains("/api/v1/sites"));
    // proj-b: its agent's publication (PUT /api/v1/sites/testsite/jobTypes) and bob's list.
    let p = b
        .get("/ui/admin/audit?project=proj-b&action=/api/v1/sites")
        .await;
    assert_eq!(rows(&p.body), 2);
    let p = b
        .get("/ui/admin/audit?project=proj-b&action=/api/v1/sites/")
        .await;
    assert_eq!(rows(&p.body), 1);
    let p = b.get("/ui/admin/audit?action=/api/v1/si_es").await;
    assert_eq!(rows(&p.body), 0, "_ is not a wildcard");
    let p = b.get("/ui/admin/audit?until=1970-01-02T00:00").await;
    assert_eq!(rows(&p.body), 0);
    let p = b
        .get("/ui/admin/audit?since=1970-01-02T00:00&user=alice")
        .await;
    assert_eq!(rows(&p.body), 3);
    // Pages of two: the older link keeps the filters and ends.
    let p = b.get("/ui/admin/audit?user=alice&limit=2").await;
    assert_eq!(rows(&p.body), 2);
    let start = p
        .body
        .find("href=\"/ui/admin/audit?user=alice&#38;limit=2&#38;before=")
        .expect("older link");
    let link = p.body[start + 6..]
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&");
    let p = b.get(&link).await;
    assert_eq!(rows(&p.body), 1);
    assert!(!p.body.contains("id=\"older\""));
    let p = b.get("/ui/admin/audit?since=yesterday").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
}
