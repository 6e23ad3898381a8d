//! A person who is not a member of a project sees nothing of it, on every page and every API
//! route the web UI uses — one table of them all. carol's project (proj-a) has a site with a
//! job type, a job, a code bundle and a token of hers; dave (proj-b only) asks for each: in
//! Chromium for the pages and forms, with his token and his session for the API.

use crate::harness::{json_of, Browser, Server, PASSWORD};
use hpcsera_api_types::{Role, RoleSet};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SITE: &str = "iso-site";

/// What carol's project holds: ids a leak would show.
struct Secrets {
    job: String,
    bundle: String,
    token_id: String,
    token: String,
}

async fn carols_token(
    s: &Server,
    name: &str,
    roles: RoleSet,
    site: Option<&str>,
) -> (hpcsera_store::TokenRecord, String) {
    s.store
        .create_token(&hpcsera_store::NewToken {
            user: "carol",
            project: "proj-a",
            name,
            roles,
            site,
            expires_at: None,
        })
        .await
        .unwrap()
}

async fn carols_project(s: &Server) -> Secrets {
    let agent_roles = [Role::GetJob, Role::UpdateJobStatus, Role::GetCode];
    let (_, agent) = carols_token(s, "agent", agent_roles.into_iter().collect(), Some(SITE)).await;
    let (rec, secret) = carols_token(s, "carols-ci", RoleSet::all(), None).await;
    let http = reqwest::Client::new();
    let spec =
        json!({"jobTypes": [{"name": "sim", "parameters": [{"name": "n", "type": "integer"}]}]});
    let r = http
        .put(format!("{}/api/v1/sites/{SITE}/jobTypes", s.base))
        .bearer_auth(&agent)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let job: serde_json::Value = json_of(
        http.post(format!("{}/api/v1/job", s.base))
            .bearer_auth(&secret)
            .json(&json!({"site": SITE, "jobType": "sim", "parameters": {"n": 1}})),
    )
    .await;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "run.sh", &b"echo a"[..])
        .unwrap();
    let gz = tar.into_inner().unwrap().finish().unwrap();
    let bundle: serde_json::Value = json_of(
        http.post(format!("{}/api/v1/code", s.base))
            .bearer_auth(&secret)
            .header("content-type", "application/gzip")
            .body(gz),
    )
    .await;
    Secrets {
        job: job["id"].as_str().expect("a job").to_string(),
        bundle: bundle["id"].as_str().expect("a bundle").to_string(),
        token_id: rec.id,
        token: secret,
    }
}

/// Whether `text` shows anything of carol's project.
fn leaks(text: &str, x: &Secrets) -> Option<&'static str> {
    [
        ("the project", "proj-a"),
        ("the site", SITE),
        ("carol", "carol"),
        ("the job", x.job.as_str()),
        ("the bundle", &x.bundle[..16]),
        ("the token", x.token_id.as_str()),
    ]
    .into_iter()
    .find(|(_, s)| text.contains(s))
    .map(|(what, _)| what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_sees_nothing_of_a_project_on_any_page_or_api_route_the_ui_uses() {
    let s = Server::start().await;
    let x = carols_project(&s).await;
    let (job, bundle, tok) = (&x.job, &x.bundle, &x.token_id);
    let b = browser!("a_non_member_sees_nothing_of_a_project_on_any_page_or_api_route_the_ui_uses");
    b.login(&s.base, "dave", PASSWORD).await;
    b.wait_for("/ui/projects", "Your projects").await;

    // Pages: `true` = not found; `false` = dave's own page, which must not show proj-a.
    let pages: Vec<(String, bool)> = vec![
        ("/ui/projects/proj-a/jobs".into(), true),
        (format!("/ui/projects/proj-a/jobs/{job}"), true),
        (format!("/ui/projects/proj-a/jobs/{job}/live"), true),
        (
            format!("/ui/projects/proj-a/jobs/{job}/results/out.txt"),
            true,
        ),
        ("/ui/projects/proj-a/code".into(), true),
        (format!("/ui/projects/proj-a/code/{bundle}"), true),
        ("/ui/projects/proj-a/sites".into(), true),
        (format!("/ui/projects/proj-a/sites/{SITE}/sim"), true),
        (format!("/ui/projects/proj-b/jobs/{job}"), true),
        (format!("/ui/projects/proj-b/code/{bundle}"), true),
        (format!("/ui/projects/proj-b/sites/{SITE}/sim"), true),
        ("/ui/projects".into(), false),
        ("/ui/tokens".into(), false),
        ("/ui/keys".into(), false),
        ("/ui/device".into(), false),
        ("/ui/projects/proj-b/jobs".into(), false),
        ("/ui/projects/proj-b/code".into(), false),
        ("/ui/projects/proj-b/sites".into(), false),
    ];
    for (page, not_found) in &pages {
        b.goto(&format!("{}{page}", s.base)).await;
        let html = b.wait_for(page, "hpcsera").await;
        assert_eq!(html.contains("Not found"), *not_found, "{page}");
        assert_eq!(leaks(&html, &x), None, "{page}");
    }
    b.shot("not-a-member").await;

    // Forms, posted with dave's own CSRF token: not found, and nothing changes.
    let forms = [
        format!("/ui/projects/proj-a/jobs/{job}/operation"),
        format!("/ui/projects/proj-a/jobs/{job}/delete"),
        format!("/ui/projects/proj-a/code/{bundle}/decision"),
        format!("/ui/projects/proj-a/sites/{SITE}/sim"),
        format!("/ui/tokens/{tok}/revoke"),
    ];
    for form in &forms {
        b.goto(&format!("{}/ui/tokens", s.base)).await;
        b.wait_for("/ui/tokens", "csrf").await;
        b.client
            .execute(
                "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0]; \
                 for (const [k, v] of [['operation', 'cancel'], ['decision', 'approve'], ['p.n', '2']]) { \
                   const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); } \
                 f.appendChild(document.querySelector('input[name=csrf]').cloneNode()); \
                 document.body.appendChild(f); f.submit();",
                vec![json!(form)],
            )
            .await
            .expect("script");
        let html = b.wait_for(form, "Not found").await;
        assert_eq!(leaks(&html, &x), None, "{form}");
    }

    // The API routes behind the pages, with a token of dave's (every role, his project).
    let (_, dave) = s
        .store
        .create_token(&hpcsera_store::NewToken {
            user: "dave",
            project: "proj-b",
            name: "daves",
            roles: RoleSet::all(),
            site: None,
            expires_at: None,
        })
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let routes: Vec<(Method, String, StatusCode)> = vec![
        (
            Method::GET,
            format!("/api/v1/job/{job}"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/api/v1/job/{job}/events"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/api/v1/job/{job}/output/stdout"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/api/v1/job/{job}/results"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/api/v1/job/{job}/results/out.txt"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/api/v1/job/{job}/provenance"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PUT,
            format!("/api/v1/job/updateByOperation/{job}"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            format!("/api/v1/job/{job}"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/api/v1/code/{bundle}/status"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/api/v1/code/{bundle}/files"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/api/v1/sites/{SITE}/jobTypes"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            format!("/api/v1/tokens/{tok}"),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/api/v1/job/findJobsByStatus".into(),
            StatusCode::OK,
        ),
        (Method::GET, "/api/v1/code".into(), StatusCode::OK),
        (Method::GET, "/api/v1/sites".into(), StatusCode::OK),
        (Method::GET, "/api/v1/tokens".into(), StatusCode::OK),
        (Method::GET, "/api/v1/keys".into(), StatusCode::OK),
    ];
    for (method, path, status) in &routes {
        let r = http
            .request(method.clone(), format!("{}{path}", s.base))
            .bearer_auth(&dave)
            .json(&json!({"operation": "cancel"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), *status, "{method} {path}");
        let body = r.text().await.unwrap();
        assert_eq!(leaks(&body, &x), None, "{method} {path}: {body}");
    }
    // The session's token API (cookie + CSRF header), as the UI's scripts would call it.
    b.goto(&format!("{}/ui/tokens", s.base)).await;
    b.wait_for("/ui/tokens", "csrf").await;
    let cookie = b.client.get_named_cookie("hpcsera_session").await.unwrap();
    let csrf = b
        .client
        .find(fantoccini::Locator::Css("input[name=csrf]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    for (method, path, status) in [
        (Method::GET, "/api/v1/tokens".to_string(), StatusCode::OK),
        (
            Method::DELETE,
            format!("/api/v1/tokens/{tok}"),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = http
            .request(method.clone(), format!("{}{path}", s.base))
            .header("cookie", format!("hpcsera_session={}", cookie.value()))
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "session {method} {path}");
        let body = r.text().await.unwrap();
        assert_eq!(leaks(&body, &x), None, "session {method} {path}: {body}");
    }

    // Nothing of carol's changed: the job waits, the bundle too, her token works.
    let r = http
        .get(format!("{}/api/v1/job/{job}", s.base))
        .bearer_auth(&x.token)
        .send()
        .await
        .unwrap();
    let now: serde_json::Value = r.json().await.unwrap();
    assert_eq!(now["status"], "queued", "{now}");
    assert!(now["pendingOperation"].is_null(), "{now}");
    let r = http
        .get(format!("{}/api/v1/code/{bundle}/status", s.base))
        .bearer_auth(&x.token)
        .send()
        .await
        .unwrap();
    let code: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code["status"], "pending_approval", "{code}");
    b.close().await;
}
