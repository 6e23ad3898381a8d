//! The web UI over plain HTTP (the browser tests in `crates/hpcsera/tests/ui` drive Chromium):
//! sessions and their cookies, login errors, rate limits, CSRF, invitations, the token pages
//! and what a non-member sees.

use crate::common::*;
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery";

/// A browser without JavaScript: keeps the cookies it is given, follows no redirects.
pub struct Browser<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    pub cookies: Vec<(String, String)>,
    /// X-Forwarded-For to send (the test server trusts 127.0.0.1 as a proxy where set).
    pub forwarded_for: Option<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Page {
    /// Asserts that the body contains each of `texts`.
    #[track_caller]
    pub fn assert_shows(&self, texts: &[&str]) {
        for text in texts {
            assert!(self.body.contains(text), "{text} missing: {}", self.body);
        }
    }
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Browser {
            app,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
            forwarded_for: None,
        }
    }

    pub(crate) fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, rb: reqwest::RequestBuilder) -> Page {
        let mut rb = rb;
        if !self.cookies.is_empty() {
            rb = rb.header(COOKIE, self.cookie_header());
        }
        if let Some(ip) = &self.forwarded_for {
            rb = rb.header("x-forwarded-for", ip);
        }
        let r = rb.send().await.unwrap();
        let set_cookies: Vec<String> = r
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for c in &set_cookies {
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !c.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
        Page {
            status: r.status(),
            location: r
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_string()),
            retry_after: r
                .headers()
                .get(RETRY_AFTER)
                .map(|v| v.to_str().unwrap().to_string()),
            set_cookies,
            body: r.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let rb = self.http.get(format!("{}{path}", self.app.base));
        self.finish(rb).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let rb = self
            .http
            .post(format!("{}{path}", self.app.base))
            .form(form);
        self.finish(rb).await
    }

    /// Opens the login form and posts it.
    pub async fn login(&mut self, user: &str, password: &str) -> Page {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = hidden(&form.body, "csrf");
        self.post(
            "/ui/login",
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
        .await
    }

    /// Logs in and checks it worked.
    pub async fn logged_in(app: &'a TestApp, user: &str) -> Browser<'a> {
        let mut b = Browser::new(app);
        let p = b.login(user, PASSWORD).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        assert_eq!(p.location.as_deref(), Some("/ui/projects"));
        b
    }

    /// The CSRF token of the session, as its pages carry it.
    pub async fn csrf(&mut self) -> String {
        let p = self.get("/ui/tokens").await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        hidden(&p.body, "csrf")
    }
}

/// The value of the first hidden field `name` in a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("hidden field") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// The value of the read-only secret field of the "token made" page.
fn secret_of(html: &str) -> String {
    let marker = "id=\"secret\" value=\"";
    let start = html.find(marker).expect("secret field") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// carol (proj-a) and dave (proj-b) with passwords.
pub async fn people(t: &TestApp) {
    t.store
        .create_user("carol", Some(PASSWORD), false)
        .await
        .unwrap();
    t.store
        .create_user("dave", Some(PASSWORD), false)
        .await
        .unwrap();
    t.store.add_member("carol", "proj-a").await.unwrap();
    t.store.add_member("dave", "proj-b").await.unwrap();
}

#[tokio::test]
async fn login_sets_a_session_cookie_with_the_flags_and_logout_ends_it() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mut b = Browser::new(&t);
    let p = b.get("/ui/projects").await;
    assert_eq!(
        p.status,
        StatusCode::SEE_OTHER,
        "no session: to the login form"
    );
    assert_eq!(p.location.as_deref(), Some("/ui/login"));

    let p = b.login("carol", PASSWORD).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let session = p
        .set_cookies
        .iter()
        .find(|c| c.starts_with("hpcsera_session="))
        .expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/;"] {
        assert!(session.contains(flag), "{flag} missing: {session}");
    }
    assert!(
        !session.contains("Secure"),
        "plain http: not Secure: {session}"
    );
    let value = session["hpcsera_session=".len()..]
        .split(';')
        .next()
        .unwrap();
    assert!(value.len() >= 43, "256 bits: {value}");
    // Only the hash is stored: the cookie's value appears nowhere in the database file's rows.
    assert!(t.store.session(value, 60_000).await.unwrap().is_some());

    let p = b.get("/ui/projects").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.body.contains("proj-a") && !p.body.contains("proj-b"),
        "{}",
        p.body
    );

    let old = b.cookies.clone();
    let csrf = b.csrf().await;
    let p = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(p
        .set_cookies
        .iter()
        .any(|c| c.starts_with("hpcsera_session=;") && c.contains("Max-Age=0")));
    // The old cookie, sent again, is refused: the session is gone on the server.
    b.cookies = old;
    let p = b.get("/ui/projects").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location.as_deref(), Some("/ui/login"));
    let p = b
        .post("/ui/tokens", &[("csrf", &csrf), ("name", "x")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(t.store.session(value, 60_000).await.unwrap().is_none());
}

#[tokio::test]
async fn over_https_the_cookie_is_secure_and_host_prefixed() {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.ui.public_url = Some("https://hpc.example.org".into());
    })
    .await;
    people(&t).await;
    let mut b = Browser::new(&t);
    let p = b.login("carol", PASSWORD).await;
    let session = p
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-hpcsera_session="))
        .expect("__Host- session cookie");
    assert!(session.contains("; Secure"), "{session}");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"));
}

#[tokio::test]
async fn sessions_end_when_idle_or_at_their_absolute_end() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let carol = t
        .store
        .verify_password("carol", PASSWORD)
        .await
        .unwrap()
        .unwrap();
    // Absolute end 50 ms after the start, however active.
    let s = t.store.create_session(carol.id, 60_000, 50).await.unwrap();
    assert!(t.store.session(&s.secret, 60_000).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(
        t.store.session(&s.secret, 60_000).await.unwrap().is_none(),
        "absolute end"
    );
    // Idle: looked up with an idle limit shorter than the time since the last request.
    let s = t
        .store
        .create_session(carol.id, 60_000, 3_600_000)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(t.store.session(&s.secret, 60_000).await.unwrap().is_some());
    assert!(
        t.store.session(&s.secret, 10).await.unwrap().is_none(),
        "idle end"
    );
}

#[tokio::test]
async fn login_errors_do_not_tell_whether_the_user_exists() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let message = "The user name or password is not right.";
    let mut wrong = Duration::ZERO;
    let mut unknown = Duration::ZERO;
    for _ in 0..3 {
        let mut b = Browser::new(&t);
        let started = Instant::now();
        let p = b.login("carol", "not the password").await;
        wrong += started.elapsed();
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(p.body.contains(message), "{}", p.body);
        let mut b = Browser::new(&t);
        let started = Instant::now();
        let q = b.login("nobody-here", "not the password").await;
        unknown += started.elapsed();
        assert_eq!(q.status, StatusCode::UNAUTHORIZED);
        assert!(q.body.contains(message), "{}", q.body);
        // The same page but for the name typed and the form's fresh CSRF token.
        let strip = |s: &str, name: &str| {
            s.replace(&hidden(s, "csrf"), "")
                .replace(&format!("value=\"{name}\""), "")
        };
        assert_eq!(strip(&p.body, "carol"), strip(&q.body, "nobody-here"));
    }
    // A user without a password (alice) looks the same too.
    let mut b = Browser::new(&t);
    let p = b.login("alice", "whatever it is").await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    // An unknown name costs an argon2 verification too: not several times faster.
    assert!(
        unknown * 3 > wrong,
        "unknown user {unknown:?} vs wrong password {wrong:?}"
    );
    println!("login timing: wrong password {wrong:?}, unknown user {unknown:?} (3 each)");
}

#[tokio::test]
async fn login_attempts_are_limited_per_account_and_per_address() {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.ui.login_attempts_per_minute = 3;
        c.connections.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    people(&t).await;
    // One account from four addresses: the fourth attempt is refused.
    for i in 1..=4 {
        let mut b = Browser::new(&t);
        b.forwarded_for = Some(format!("10.0.0.{i}"));
        let p = b.login("carol", "wrong password").await;
        if i <= 3 {
            assert_eq!(p.status, StatusCode::UNAUTHORIZED, "attempt {i}");
        } else {
            assert_eq!(
                p.status,
                StatusCode::TOO_MANY_REQUESTS,
                "attempt {i}: {}",
                p.body
            );
            let wait: u64 = p.retry_after.expect("Retry-After").parse().unwrap();
            assert!((1..=60).contains(&wait), "{wait}");
            assert!(p.body.contains("Too many attempts"));
        }
    }
    // Even the right password waits: the limit is checked before the password.
    let mut b = Browser::new(&t);
    b.forwarded_for = Some("10.0.0.99".into());
    assert_eq!(
        b.login("carol", PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // One address trying four names: the fourth is refused, whatever the name.
    for (i, name) in ["u1", "u2", "u3", "dave"].iter().enumerate() {
        let mut b = Browser::new(&t);
        b.forwarded_for = Some("10.9.9.9".into());
        let p = b.login(name, "wrong password").await;
        let want = if i < 3 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(p.status, want, "name {name}");
    }
    // Another account from another address is unaffected.
    let mut b = Browser::new(&t);
    b.forwarded_for = Some("10.1.1.1".into());
    assert_eq!(
        b.login("dave", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn forms_without_the_right_csrf_token_are_refused() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let csrf = b.csrf().await;
    let form = |c: &'static str| {
        vec![
            ("csrf", c),
            ("name", "ci"),
            ("project", "proj-a"),
            ("role", "GET_JobStatus"),
            ("days", "7"),
        ]
    };
    // No token, a wrong one, another session's token.
    let mut other = Browser::logged_in(&t, "dave").await;
    let other_csrf = other.csrf().await;
    for bad in ["", "not-the-token", other_csrf.as_str()] {
        let mut f: Vec<(&str, &str)> = form("").into_iter().filter(|(k, _)| *k != "csrf").collect();
        if !bad.is_empty() {
            f.push(("csrf", bad));
        }
        let p = b.post("/ui/tokens", &f).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "csrf {bad:?}");
        assert!(p.body.contains("Form refused"), "{}", p.body);
    }
    let p = b.post("/ui/logout", &[]).await;
    assert_eq!(
        p.status,
        StatusCode::FORBIDDEN,
        "logout needs the token too"
    );
    assert!(
        t.store.list_tokens(Some("carol")).await.unwrap().is_empty(),
        "nothing made"
    );
    // With the right token it works, and the session is still there.
    let mut f = form("");
    f[0].1 = &csrf;
    assert_eq!(b.post("/ui/tokens", &f).await.status, StatusCode::CREATED);

    // The login form: its token must match its cookie.
    let mut fresh = Browser::new(&t);
    let page = fresh.get("/ui/login").await;
    let login_csrf = hidden(&page.body, "csrf");
    fresh.cookies.clear();
    let p = fresh
        .post(
            "/ui/login",
            &[
                ("csrf", &login_csrf),
                ("user", "carol"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "no login cookie");
}

#[tokio::test]
async fn a_token_made_in_the_ui_works_until_revoked_there() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let page = b.get("/ui/tokens").await;
    for r in hpcsera_api_types::Role::ALL {
        assert!(
            page.body.contains(r.as_str()) && page.body.contains(&html_escape(r.description())),
            "{r}"
        );
    }
    assert!(page.body.contains("value=\"30\""), "default expiry");
    let csrf = hidden(&page.body, "csrf");
    let p = b
        .post(
            "/ui/tokens",
            &[
                ("csrf", &csrf),
                ("name", "CI <of> my-model"),
                ("project", "proj-a"),
                ("role", "GET_JobStatus"),
                ("role", "POST_Job"),
                ("site", SITE),
                ("days", "7"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    assert!(p.body.contains("CI &#60;of&#62; my-model"), "escaped");
    assert!(!p.body.contains("<of>"));
    let secret = secret_of(&p.body);
    let (s, me) = t.get("/api/v1/tokens/self", &secret).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["user"], "carol");
    assert_eq!(
        me["roles"],
        serde_json::json!(["GET_JobStatus", "POST_Job"])
    );
    assert_eq!(me["site"], SITE);
    let expires = hpcsera_store::parse_rfc3339_ms(me["expiresAt"].as_str().unwrap()).unwrap();
    let days = (expires - hpcsera_store::now_ms()) as f64 / 86_400_000.0;
    assert!((6.9..=7.0).contains(&days), "{days}");

    // The list shows it without its secret; the secret is never shown again.
    let list = b.get("/ui/tokens").await;
    assert!(list.body.contains("CI &#60;of&#62; my-model") && list.body.contains("active"));
    assert!(!list.body.contains(&secret));
    let id = me["tokenId"].as_str().unwrap();
    let p = b
        .post(&format!("/ui/tokens/{id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let (s, _) = t.get("/api/v1/tokens/self", &secret).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(b.get("/ui/tokens").await.body.contains("revoked"));

    // Both changes are in the audit log, under carol and the project (written in batches).
    let mut found = Vec::new();
    for _ in 0..50 {
        found = t.store.recent_audit(100).await.unwrap();
        if found
            .iter()
            .filter(|r| r.path.starts_with("/ui/tokens"))
            .count()
            >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (path, status) in [("/ui/tokens", 201), ("/ui/tokens/revoke", 303)] {
        let r = found
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("{path} not audited: {found:?}"));
        assert_eq!(r.user.as_deref(), Some("carol"));
        assert_eq!(r.project.as_deref(), Some("proj-a"));
        assert_eq!((r.method.as_str(), r.status), ("POST", status));
    }
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('\'', "&#39;")
        .replace('"', "&#34;")
}

#[tokio::test]
async fn the_token_form_refuses_bad_input_and_other_projects() {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.ui.token_max_days = 30;
    })
    .await;
    people(&t).await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let csrf = b.csrf().await;
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[
                ("name", "x"),
                ("project", "proj-b"),
                ("role", "GET_Job"),
                ("days", "7"),
            ],
            "Project",
        ),
        (
            &[
                ("name", "x"),
                ("project", "no-such"),
                ("role", "GET_Job"),
                ("days", "7"),
            ],
            "Project",
        ),
        (
            &[("name", "x"), ("project", "proj-a"), ("days", "7")],
            "Roles",
        ),
        (
            &[
                ("name", "x"),
                ("project", "proj-a"),
                ("role", "GET_Job"),
                ("days", "31"),
            ],
            "Expires",
        ),
        (
            &[
                ("name", ""),
                ("project", "proj-a"),
                ("role", "ADMIN"),
                ("days", "7"),
            ],
            "Name",
        ),
    ];
    for (fields, problem) in cases {
        let mut f = fields.to_vec();
        f.push(("csrf", &csrf));
        let p = b.post("/ui/tokens", &f).await;
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        assert!(
            p.body.contains(&format!("<li>{problem}:")),
            "{problem}: {}",
            p.body
        );
    }
    assert!(t.store.list_tokens(Some("carol")).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_non_member_sees_nothing_of_another_project() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let dave_token = t.user("dave").project("proj-b").token().await;
    let dave_id = t.store.list_tokens(Some("dave")).await.unwrap()[0]
        .id
        .clone();
    t.store
        .create_project("proj-secret", "the hidden one")
        .await
        .unwrap();
    let mut b = Browser::logged_in(&t, "carol").await;
    for path in ["/ui/projects", "/ui/tokens"] {
        let p = b.get(path).await;
        assert_eq!(p.status, StatusCode::OK);
        for hidden in ["proj-b", "proj-secret", "hidden one", "dave", &dave_id] {
            assert!(!p.body.contains(hidden), "{path} shows {hidden}");
        }
    }
    let csrf = b.csrf().await;
    let p = b
        .post(&format!("/ui/tokens/{dave_id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    let (s, _) = t.get("/api/v1/tokens/self", &dave_token).await;
    assert_eq!(s, StatusCode::OK, "dave's token still works");

    // A former member's tokens leave the list with the membership.
    let mut d = Browser::logged_in(&t, "dave").await;
    assert!(d.get("/ui/tokens").await.body.contains("proj-b"));
    t.store.remove_member("dave", "proj-b").await.unwrap();
    let p = d.get("/ui/tokens").await;
    assert!(
        !p.body.contains("proj-b") && !p.body.contains(&dave_id),
        "{}",
        p.body
    );
}

#[tokio::test]
async fn an_invitation_sets_a_password_once() {
    let t = TestApp::spawn().await;
    let secret = t.store.create_invite("erin", 3_600_000).await.unwrap();
    let mut b = Browser::new(&t);
    let p = b.get(&format!("/ui/invite/{secret}")).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("erin"));
    let path = format!("/ui/invite/{secret}");
    let p = b
        .post(
            &path,
            &[("password", "long enough 1"), ("confirm", "different")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    let p = b
        .post(&path, &[("password", "short"), ("confirm", "short")])
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    let p = b
        .post(&path, &[("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some("/ui/login?welcome=1"));
    // Used up.
    assert_eq!(b.get(&path).await.status, StatusCode::NOT_FOUND);
    let p = b
        .post(
            &path,
            &[("password", "another one!"), ("confirm", "another one!")],
        )
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    let p = b.login("erin", PASSWORD).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    // An expired invitation is refused.
    let old = t.store.create_invite("frank", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        b.get(&format!("/ui/invite/{old}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn pages_carry_the_security_headers_and_assets_are_built_in() {
    let t = TestApp::spawn().await;
    let mut b = Browser::new(&t);
    let p = b.get("/ui/login").await;
    assert_eq!(p.status, StatusCode::OK);
    let r = reqwest::get(format!("{}/ui/login", t.base)).await.unwrap();
    let h = r.headers();
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let css = reqwest::get(format!("{}/ui/static/style.css", t.base))
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let missing = reqwest::get(format!("{}/ui/static/nope.js", t.base))
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_tokens_page_lists_many_tokens() {
    let t = TestApp::spawn().await;
    people(&t).await;
    for i in 0..300 {
        t.store
            .create_token(&hpcsera_store::NewToken {
                user: "carol",
                project: "proj-a",
                name: &format!("token-{i}"),
                roles: hpcsera_api_types::RoleSet::all(),
                site: None,
                expires_at: None,
            })
            .await
            .unwrap();
    }
    let mut b = Browser::logged_in(&t, "carol").await;
    b.get("/ui/tokens").await;
    let started = Instant::now();
    let p = b.get("/ui/tokens").await;
    let took = started.elapsed();
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.body.matches("<tr id=\"token-").count(), 300);
    println!(
        "the tokens page with 300 tokens: {took:?}, {} bytes",
        p.body.len()
    );
}

/// A server that honours `X-Remote-User` from `proxy` (None: the setting is off), with people.
async fn behind_proxy(proxy: Option<&str>) -> TestApp {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        if let Some(proxy) = proxy {
            c.ui.trusted_user_header = Some("X-Remote-User".into());
            c.connections.trusted_proxies = vec![proxy.parse().unwrap()];
        }
    })
    .await;
    people(&t).await;
    t
}

/// `GET /ui/login` from a fresh browser with the given extra headers.
async fn login_page_with<'a>(t: &'a TestApp, headers: &[(&str, &str)]) -> (Browser<'a>, Page) {
    let mut b = Browser::new(t);
    let mut rb = b.http.get(format!("{}/ui/login", t.base));
    for (name, value) in headers {
        rb = rb.header(*name, *value);
    }
    let p = b.finish(rb).await;
    (b, p)
}

#[tokio::test]
async fn a_trusted_proxy_header_names_the_user_only_from_a_trusted_proxy() {
    let carol = ("x-remote-user", "carol");
    // Configured and the test client (127.0.0.1) is a trusted proxy: a session for carol.
    let t = behind_proxy(Some("127.0.0.1")).await;
    let (mut b, p) = login_page_with(&t, &[carol]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some("/ui/projects"));
    let p = b.get("/ui/projects").await;
    assert!(p.status == StatusCode::OK && p.body.contains("carol"));
    // A name without an account: refused, no session.
    let (_, p) = login_page_with(&t, &[("x-remote-user", "nobody")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("No account"));

    // The header from an address that is not a trusted proxy is ignored: the password form.
    let t = behind_proxy(Some("10.0.0.1")).await;
    let (_, p) = login_page_with(&t, &[carol, ("x-forwarded-for", "10.0.0.1")]).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("Password"));
    // And without the setting (the default) it is ignored too.
    let t = behind_proxy(None).await;
    let (_, p) = login_page_with(&t, &[carol]).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("Password"));
}

#[tokio::test]
async fn a_person_adds_lists_and_removes_ssh_keys_on_the_keys_page() {
    use crate::approvals::openssh;
    let t = TestApp::spawn().await;
    people(&t).await;
    let dir = tempfile::tempdir().unwrap();
    let key = openssh::ed25519(dir.path(), "carol@laptop");
    let line = openssh::public_line(&key);
    let fp = openssh::fingerprint(&key);
    let mut b = Browser::logged_in(&t, "carol").await;
    let page = b.get("/ui/keys").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("You have no keys yet"), "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    // Without the CSRF token nothing is added.
    let p = b.post("/ui/keys", &[("key", &line)]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // Bad input: the form comes back with the problem, nothing stored.
    let private = std::fs::read_to_string(&key).unwrap();
    for (bad, problem) in [
        ("ssh-ed25519 AAAAnot-a-key", "not an OpenSSH public key"),
        (private.as_str(), "private key"),
        ("", "not an OpenSSH public key"),
    ] {
        let p = b.post("/ui/keys", &[("csrf", &csrf), ("key", bad)]).await;
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert!(p.body.contains(problem), "{problem}: {}", p.body);
    }
    let long = "n".repeat(101);
    let p = b
        .post(
            "/ui/keys",
            &[("csrf", &csrf), ("name", &long), ("key", &line)],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    let carol = t.store.user_by_name("carol").await.unwrap().unwrap().id;
    assert!(t.store.list_user_keys(carol).await.unwrap().is_empty());
    // Added (named after its comment), listed with its fingerprint.
    let p = b.post("/ui/keys", &[("csrf", &csrf), ("key", &line)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let page = b.get("/ui/keys").await;
    assert!(page.body.contains(&fp), "{}", page.body);
    assert!(page.body.contains("carol@laptop"));
    let keys = t.store.list_user_keys(carol).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].fingerprint, fp);
    // The same key again, or by someone else: refused (a key names one person).
    let p = b.post("/ui/keys", &[("csrf", &csrf), ("key", &line)]).await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    assert!(p.body.contains("registered already"));
    let mut d = Browser::logged_in(&t, "dave").await;
    let dcsrf = d.csrf().await;
    let p = d
        .post("/ui/keys", &[("csrf", &dcsrf), ("key", &line)])
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    // Dave cannot remove carol's key, and does not see it.
    let path = format!("/ui/keys/{}/delete", keys[0].id);
    let p = d.post(&path, &[("csrf", &dcsrf)]).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(!d.get("/ui/keys").await.body.contains(&fp));
    // Carol removes it.
    assert_eq!(b.post(&path, &[]).await.status, StatusCode::FORBIDDEN);
    let p = b.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(t.store.list_user_keys(carol).await.unwrap().is_empty());
    assert!(b
        .get("/ui/keys")
        .await
        .body
        .contains("You have no keys yet"));
}
