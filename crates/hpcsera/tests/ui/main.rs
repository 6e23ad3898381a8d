//! The web UI in a real headless Chromium, driven over WebDriver (fantoccini → chromedriver):
//! logging in, making a token and using it against the API, revoking it, CSRF refusals, what
//! a non-member sees, logging out, and an invitation from the admin CLI. Every page visited
//! is written as a screenshot to `target/ui-screenshots/<db>/` (the README's pictures).
//!
//! The code bundle and jobs pages, which need a real agent, are in `agent_pages`; the sites
//! page and its job form in `sites`; the admin pages in `admin`; what a non-member sees on
//! every page and API route the UI uses in `isolation`.
//! The device flow (an OAuth library and `hpcsera login --device` approved here) and CLI
//! profiles are in `device`.
//!
//! One test binary; each test has its own server, database, chromedriver and browser.

/// The e2e tests' set-up with a real agent (local adapter, or Slurm), for the pages that need one.
#[path = "../e2e/common.rs"]
mod common;
mod harness;
/// The agent's tests' server set-up, which the e2e set-up builds on.
#[path = "../../../agent/tests/agent/test_server.rs"]
mod test_server;

use harness::{json_of, Browser, Server, PASSWORD};
use reqwest::StatusCode;

macro_rules! browser {
    ($name:literal) => {
        match Browser::start($name).await {
            Some(b) => b,
            None => return,
        }
    };
}

/// The admin pages: an admin adds a member, a non-admin is refused.
mod admin;
/// Code bundle and job pages with a real agent.
mod agent_pages;
mod device;
/// One table of every page and API route the UI uses: a non-member sees nothing.
mod isolation;
/// The sites page and a job submitted from its form, followed live (real agent).
mod sites;
/// The session's token API from a page's script.
mod token_api;

/// The value of the read-only secret field on the "token made" page.
async fn shown_secret(b: &Browser) -> String {
    b.client
        .find(fantoccini::Locator::Css("#secret"))
        .await
        .expect("the secret field")
        .prop("value")
        .await
        .expect("value")
        .expect("a value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_make_a_token_use_it_revoke_it_and_log_out() {
    let s = Server::start().await;
    let b = browser!("log_in_make_a_token_use_it_revoke_it_and_log_out");

    b.goto(&format!("{}/ui/projects", s.base)).await;
    b.wait_for("/ui/login", "User name").await;
    b.shot("login").await;
    // A wrong password: the same message as for an unknown user, still on the form.
    b.login(&s.base, "carol", "not the password").await;
    b.wait_for("/ui/login", "The user name or password is not right.")
        .await;
    b.shot("login-failed").await;

    b.login(&s.base, "carol", PASSWORD).await;
    b.wait_for("/ui/projects", "the project proj-a").await;
    b.shot("projects").await;

    b.click("a[href='/ui/tokens']").await;
    b.wait_for("/ui/tokens", "Make a token").await;
    b.shot("tokens-empty").await;
    b.fill("#name", "CI of my-model").await;
    b.click("#role-GET_JobStatus").await;
    b.click("#role-POST_Job").await;
    b.fill("#days", "7").await;
    b.click("#create").await;
    b.wait_for("/ui/tokens", "Token “CI of my-model” made")
        .await;
    b.shot("token-created").await;
    let secret = shown_secret(&b).await;
    assert!(secret.starts_with("hpcs_"), "{secret}");

    // The token works against the API, as curl would use it.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/tokens/self", s.base))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["user"], "carol");
    assert_eq!(me["project"], "proj-a");
    assert_eq!(
        me["roles"],
        serde_json::json!(["GET_JobStatus", "POST_Job"])
    );

    // Listed (without the secret), then revoked: the next request is 401.
    b.goto(&format!("{}/ui/tokens", s.base)).await;
    let page = b.source().await;
    assert!(page.contains("CI of my-model") && !page.contains(&secret));
    b.shot("tokens").await;
    b.click("button[aria-label='Revoke CI of my-model']").await;
    b.wait_for("/ui/tokens", "state-revoked").await;
    b.shot("tokens-revoked").await;
    assert_eq!(
        s.api_status("/api/v1/tokens/self", &secret).await,
        StatusCode::UNAUTHORIZED
    );

    // Phone width: the same page, readable (tables become cards).
    b.client.set_window_size(390, 844).await.expect("resize");
    b.shot("tokens-phone").await;
    b.client.set_window_size(1280, 900).await.expect("resize");

    // Logout ends the session: the old cookie, sent again, is refused.
    let cookie = b
        .client
        .get_named_cookie("hpcsera_session")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)");
    let old = cookie.value().to_string();
    b.click(".logout button").await;
    b.wait_for("/ui/login", "User name").await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/ui/tokens", s.base))
        .header("cookie", format!("hpcsera_session={old}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "the old cookie is refused"
    );
    assert_eq!(r.headers()["location"], "/ui/login");
    b.client
        .add_cookie(cookie)
        .await
        .expect("put the old cookie back");
    b.goto(&format!("{}/ui/tokens", s.base)).await;
    b.wait_for("/ui/login", "User name").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_post_without_the_right_csrf_token_is_refused() {
    let s = Server::start().await;
    let b = browser!("a_form_post_without_the_right_csrf_token_is_refused");
    b.login(&s.base, "carol", PASSWORD).await;
    b.wait_for("/ui/projects", "Your projects").await;
    for (how, script) in [
        (
            "missing",
            "document.querySelector('form[action=\"/ui/tokens\"] input[name=csrf]').remove()",
        ),
        (
            "wrong",
            "document.querySelector('form[action=\"/ui/tokens\"] input[name=csrf]').value = 'forged'",
        ),
    ] {
        b.goto(&format!("{}/ui/tokens", s.base)).await;
        b.fill("#name", "forged").await;
        b.click("#role-GET_Job").await;
        b.client.execute(script, vec![]).await.expect("script");
        b.click("#create").await;
        b.wait_for("/ui/tokens", "Form refused").await;
        if how == "missing" {
            b.shot("csrf-refused").await;
        }
    }
    assert!(
        s.store.list_tokens(Some("carol")).await.unwrap().is_empty(),
        "no token was made"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_sees_nothing_of_another_project() {
    let s = Server::start().await;
    // carol has a token in proj-a; dave (proj-b only) must see nothing of it.
    let (carol_token, carol_secret) = s
        .store
        .create_token(&hpcsera_store::NewToken {
            user: "carol",
            project: "proj-a",
            name: "carols-ci",
            roles: hpcsera_api_types::RoleSet::all(),
            site: None,
            expires_at: None,
        })
        .await
        .unwrap();
    let b = browser!("a_non_member_sees_nothing_of_another_project");
    b.login(&s.base, "dave", PASSWORD).await;
    b.wait_for("/ui/projects", "Your projects").await;
    for page in ["/ui/projects", "/ui/tokens"] {
        b.goto(&format!("{}{page}", s.base)).await;
        let html = b.wait_for(page, "hpcsera").await;
        for secret in ["proj-a", "carol", "carols-ci", carol_token.id.as_str()] {
            assert!(!html.contains(secret), "{page} shows {secret}");
        }
    }
    // The project list of the form has only dave's project.
    let options = b
        .client
        .find_all(fantoccini::Locator::Css("#project option"))
        .await
        .unwrap();
    assert_eq!(options.len(), 1);
    assert_eq!(options[0].text().await.unwrap(), "proj-b");
    // A revoke of carol's token from dave's session: not found, and it still works.
    b.client
        .execute(
            "const f = document.createElement('form'); f.method = 'post'; \
             f.action = '/ui/tokens/' + arguments[0] + '/revoke'; \
             const c = document.querySelector('input[name=csrf]').cloneNode(); f.appendChild(c); \
             document.body.appendChild(f); f.submit();",
            vec![serde_json::json!(carol_token.id)],
        )
        .await
        .expect("script");
    b.wait_for(
        &format!("/ui/tokens/{}/revoke", carol_token.id),
        "Not found",
    )
    .await;
    b.shot("not-found").await;
    assert_eq!(
        s.api_status("/api/v1/tokens/self", &carol_secret).await,
        StatusCode::OK
    );
    // The API the UI's tokens use: dave's token lists no token of carol's.
    b.goto(&format!("{}/ui/tokens", s.base)).await;
    b.fill("#name", "daves").await;
    b.click("#role-GET_JobStatus").await;
    b.click("#create").await;
    b.wait_for("/ui/tokens", "made").await;
    let dave_secret = shown_secret(&b).await;
    let list: serde_json::Value = json_of(
        reqwest::Client::new()
            .get(format!("{}/api/v1/tokens", s.base))
            .bearer_auth(&dave_secret),
    )
    .await;
    let text = list.to_string();
    assert!(
        !text.contains("carol") && !text.contains("proj-a"),
        "{text}"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_from_the_admin_cli_sets_a_password() {
    let s = Server::start().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hpcsera"))
        .args(["admin", "user", "invite", "erin", "--public-url", &s.base])
        .env("HPCSERA_DATABASE_URL", &s.database_url)
        .env("HPCSERA_DATA_DIR", s.dir.path())
        .output()
        .expect("run hpcsera admin user invite");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        link.starts_with(&format!("{}/ui/invite/", s.base)),
        "{link}"
    );
    s.store.add_member("erin", "proj-b").await.unwrap();

    let b = browser!("an_invitation_from_the_admin_cli_sets_a_password");
    b.goto(&link).await;
    b.wait_for(link.trim_start_matches(&s.base), "erin").await;
    b.shot("invite").await;
    b.fill("#password", PASSWORD).await;
    b.fill("#confirm", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_for("/ui/login", "Your password is set").await;
    b.login(&s.base, "erin", PASSWORD).await;
    b.wait_for("/ui/projects", "proj-b").await;
    // The link works once.
    b.goto(&link).await;
    b.wait_for(link.trim_start_matches(&s.base), "Not found")
        .await;
    b.close().await;
}
