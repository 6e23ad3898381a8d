//! The OAuth device flow end to end, approved through the real verification page in headless
//! Chromium: a library this project did not write (the `oauth2` crate) gets a token and uses
//! it; `hpcsera login --device` stores one; and CLI profiles send commands to the right one of
//! two servers (no browser needed for that one).

use crate::harness::{Browser, Server, PASSWORD};
use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, DeviceAuthorizationUrl, Scope, StandardDeviceAuthorizationResponse, TokenResponse,
    TokenUrl,
};
use reqwest::StatusCode;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// A server whose device clients poll every second.
async fn server() -> Server {
    Server::start_with(|c| c.device.device_poll_seconds = 1).await
}

/// In the browser: follows `link` (the verification page, with or without the code), logs in
/// as carol when asked, and approves the request as shown. Returns the request page's HTML.
async fn approve(b: &Browser, link: &str, code: Option<&str>) -> String {
    b.goto(link).await;
    b.wait_for("/ui/login", "User name").await;
    b.fill("#user", "carol").await;
    b.fill("#password", PASSWORD).await;
    b.click("#login").await;
    if let Some(code) = code {
        b.wait_for("/ui/device", "Code shown by the device").await;
        b.shot("device-code").await;
        b.fill("#user_code", &code.to_lowercase().replace('-', " "))
            .await;
        b.click("#lookup").await;
    }
    let html = b.wait_for("/ui/device", "asks for a token").await;
    b.shot("device-request").await;
    b.click("#approve").await;
    b.wait_for("/ui/device", "Approved").await;
    b.shot("device-approved").await;
    html
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth2_crate_gets_a_token_approved_in_the_browser_and_uses_it() {
    let s = server().await;
    let b = browser!("the_oauth2_crate_gets_a_token_approved_in_the_browser_and_uses_it");
    let client = BasicClient::new(ClientId::new("Jupyter on my laptop".into()))
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(format!("{}/oauth/device_authorization", s.base)).unwrap(),
        )
        .set_token_uri(TokenUrl::new(format!("{}/oauth/token", s.base)).unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("project:proj-a".into()))
        .add_scope(Scope::new("GET_JobStatus".into()))
        .add_scope(Scope::new("POST_Job".into()))
        .request_async(&http)
        .await
        .expect("a device code");
    assert_eq!(details.interval(), Duration::from_secs(1));
    let link = details
        .verification_uri_complete()
        .expect("a link with the code")
        .secret()
        .clone();
    // The library polls (honouring slow_down) while the person approves in the browser.
    let waiting = tokio::spawn(async move {
        client
            .exchange_device_access_token(&details)
            .request_async(&http, tokio::time::sleep, Some(Duration::from_secs(120)))
            .await
    });
    let page = approve(&b, &link, None).await;
    for shown in [
        "Jupyter on my laptop",
        "proj-a",
        "GET_JobStatus",
        "POST_Job",
        "any site",
    ] {
        assert!(
            page.contains(shown),
            "{shown} missing from the request page"
        );
    }
    let token = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the library got its answer within 60 s")
        .unwrap()
        .expect("a token");
    let scopes: Vec<String> = token
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(scopes.contains(&"POST_Job".to_string()), "{scopes:?}");
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/tokens/self", s.base))
        .bearer_auth(token.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (me["user"].as_str(), me["name"].as_str()),
        (Some("carol"), Some("Jupyter on my laptop"))
    );
    assert_eq!(
        me["roles"],
        serde_json::json!(["GET_JobStatus", "POST_Job"])
    );
    // An ordinary token: listed on the tokens page.
    b.goto(&format!("{}/ui/tokens", s.base)).await;
    b.wait_for("/ui/tokens", "Jupyter on my laptop").await;
    b.close().await;
}

/// The binary with a private config directory and no server or token from the environment.
fn hpcsera(home: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_hpcsera"));
    c.env_remove("HPCSERA_URL")
        .env_remove("HPCSERA_TOKEN")
        .env_remove("HPCSERA_PROFILE")
        .env_remove("HPCSERA_OUTPUT")
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("HOME", home)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// Runs the binary to its end: exit code, stdout, stderr.
async fn run(mut c: tokio::process::Command, stdin: Option<&str>) -> (i32, String, String) {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c.spawn().expect("start hpcsera");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("hpcsera ended within 60 s")
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpcsera_login_device_stores_a_token_approved_in_the_browser() {
    let s = server().await;
    let b = browser!("hpcsera_login_device_stores_a_token_approved_in_the_browser");
    let home = tempfile::tempdir().unwrap();
    let mut c = hpcsera(home.path());
    c.args(["login", "--device", "--url", &s.base, "--project", "proj-a"])
        .args([
            "--roles",
            "GET_JobStatus,UPDATE_Job",
            "--lifetime",
            "7d",
            "--profile",
            "hpc",
        ])
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("start hpcsera login --device");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut page, mut code) = (None, None);
    while code.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the login printed its code")
            .unwrap()
            .expect("stderr still open");
        if let Some(url) = line.strip_prefix("To approve this login, open ") {
            page = Some(url.to_string());
        }
        if let Some(c) = line.strip_prefix("and enter the code ") {
            code = Some(c.to_string());
        }
    }
    let (page, code) = (page.expect("the page"), code.unwrap());
    assert_eq!(page, format!("{}/ui/device", s.base));
    // The person opens the page and types the code (in lower case, with a space: it is read
    // as people type it).
    approve(&b, &page, Some(&code)).await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the login ended after the approval")
        .unwrap();
    let mut rest = String::new();
    while let Ok(Some(l)) = lines.next_line().await {
        rest.push_str(&l);
        rest.push('\n');
    }
    assert!(status.success(), "{rest}");
    assert!(rest.contains("as carol (project proj-a)"), "{rest}");
    let file = home.path().join("config/hpcsera/config.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("[profiles.\"hpc\"]") && text.contains(&s.base),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut c = hpcsera(home.path());
    c.args(["whoami", "--output", "json", "--profile", "hpc"]);
    let (code, out, err) = run(c, None).await;
    assert_eq!(code, 0, "{err}");
    let me: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(me["user"], "carol");
    assert_eq!(
        me["roles"],
        serde_json::json!(["GET_JobStatus", "UPDATE_Job"])
    );
    assert!(
        me["name"].as_str().unwrap().starts_with("hpcsera CLI on "),
        "{me}"
    );
    b.close().await;
}

/// A token for `user` in `project` on server `s`.
async fn token(s: &Server, user: &str, project: &str) -> String {
    s.store
        .create_token(&hpcsera_store::NewToken {
            user,
            project,
            name: "profiles test",
            roles: hpcsera_api_types::RoleSet::all(),
            site: None,
            expires_at: None,
        })
        .await
        .unwrap()
        .1
}

/// `hpcsera whoami` with `args` and `env`: the user it names, or the error.
async fn whoami(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let mut c = hpcsera(home);
    c.args(["whoami", "--output", "json"]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let (code, out, err) = run(c, None).await;
    if code != 0 {
        return Err(err);
    }
    let me: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    Ok(me["user"].as_str().unwrap_or_default().to_string())
}

/// Asserts that `hpcsera whoami` with `args` and `env` names `user`.
async fn expect_user(home: &Path, args: &[&str], env: &[(&str, &str)], user: &str) {
    assert_eq!(
        whoami(home, args, env).await.as_deref(),
        Ok(user),
        "{args:?} {env:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_send_commands_to_the_right_server() {
    // Two servers: carol on A, dave on B.
    let (a, b) = (Server::start().await, Server::start().await);
    let (token_a, token_b) = (
        token(&a, "carol", "proj-a").await,
        token(&b, "dave", "proj-b").await,
    );
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("config/hpcsera/config.toml");
    // A config file of the single-server form of earlier releases is the `default` profile.
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        format!("url = \"{}\"\ntoken = \"{token_a}\"\n", a.base),
    )
    .unwrap();
    expect_user(home.path(), &[], &[], "carol").await;

    let mut c = hpcsera(home.path());
    c.args(["login", "--profile", "b", "--url", &b.base, "--token-stdin"]);
    let (code, _, err) = run(c, Some(&token_b)).await;
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("[profiles.\"default\"]") && text.contains("[profiles.\"b\"]"),
        "{text}"
    );

    expect_user(home.path(), &[], &[], "carol").await;
    expect_user(home.path(), &["--profile", "b"], &[], "dave").await;
    expect_user(home.path(), &[], &[("HPCSERA_PROFILE", "b")], "dave").await;
    // The flag wins over the environment, and HPCSERA_URL/HPCSERA_TOKEN over any profile.
    let chosen = ["--profile", "default"];
    expect_user(home.path(), &chosen, &[("HPCSERA_PROFILE", "b")], "carol").await;
    let env = [
        ("HPCSERA_URL", b.base.as_str()),
        ("HPCSERA_TOKEN", token_b.as_str()),
    ];
    expect_user(home.path(), &chosen, &env, "dave").await;
    let unknown = whoami(home.path(), &["--profile", "nope"], &[])
        .await
        .unwrap_err();
    assert!(
        unknown.contains("no profile \"nope\"") && unknown.contains("b, default"),
        "{unknown}"
    );

    let mut c = hpcsera(home.path());
    c.args(["profiles", "--output", "json", "--profile", "b"]);
    let (code, out, err) = run(c, None).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains(&token_a) && !out.contains(&token_b),
        "no tokens shown: {out}"
    );
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["active"], "b");
    assert_eq!(list["profiles"][0]["name"], "b");
    assert_eq!(list["profiles"][0]["url"], b.base.as_str());
    assert_eq!(list["profiles"][1]["name"], "default");
    assert_eq!(list["profiles"][1]["hasToken"], true);

    // Logging out of one profile leaves the other.
    let mut c = hpcsera(home.path());
    c.args(["logout", "--profile", "default"]);
    assert_eq!(run(c, None).await.0, 0);
    assert!(whoami(home.path(), &[], &[]).await.is_err());
    expect_user(home.path(), &["--profile", "b"], &[], "dave").await;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
