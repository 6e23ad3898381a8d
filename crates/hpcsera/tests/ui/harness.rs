//! What the browser tests stand on: a real server on port 0 over a fresh database (SQLite, or
//! a new PostgreSQL database when `HPCSERA_TEST_DATABASE_URL` names one), a chromedriver on a
//! free port driving headless Chromium, and screenshots as test artefacts.
//!
//! chromedriver runs in its own process group, which is killed when the [`Browser`] is
//! dropped, so no chromedriver or Chromium outlives a test, whatever path it ends on. Without
//! Chromium a test fails when `CI=true` and says loudly that it skipped otherwise.

use fantoccini::{Client, ClientBuilder, Locator};
use hpcsera_server::{Application, ServerConfig};
use hpcsera_store::Store;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery";

/// A server for one test, with carol (member of proj-a) and dave (member of proj-b), both
/// with the password [`PASSWORD`].
pub struct Server {
    pub base: String,
    pub store: Store,
    pub database_url: String,
    pub dir: tempfile::TempDir,
}

use crate::common::fresh::fresh_database;

impl Server {
    pub async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    /// A server with the default settings as `configure` changes them.
    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(dir.path()).await;
        let store = Store::connect(&database_url).await.expect("open the store");
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".into(),
            code_dir: dir.path().join("code"),
            ..ServerConfig::default()
        };
        configure(&mut config);
        let app = Application::build(config, store.clone())
            .await
            .expect("bind");
        let base = format!("http://{}", app.local_addr().expect("address"));
        tokio::spawn(app.run_until(std::future::pending()));
        for (user, project) in [("carol", "proj-a"), ("dave", "proj-b")] {
            store
                .create_user(user, Some(PASSWORD), false)
                .await
                .expect("user");
            store
                .create_project(project, &format!("the project {project}"))
                .await
                .expect("project");
            store.add_member(user, project).await.expect("member");
        }
        Server {
            base,
            store,
            database_url,
            dir,
        }
    }

    /// `GET path` with a bearer token; the status.
    pub async fn api_status(&self, path: &str, token: &str) -> reqwest::StatusCode {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
            .status()
    }
}

/// Where `chromedriver` and Chromium are, when both are installed.
fn chromium() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|d| names.iter().map(move |n| d.join(n)))
            .find(|p| p.is_file())
    };
    Some((
        find(&["chromedriver"])?,
        find(&["chromium", "chromium-browser", "google-chrome"])?,
    ))
}

/// A headless Chromium driven over WebDriver, and the chromedriver that drives it.
pub struct Browser {
    pub client: Client,
    _driver: Driver,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free port and a browser session; `None` (after saying so) when
    /// Chromium is not installed outside CI. In CI (`CI=true`) a missing Chromium fails.
    pub async fn start(test: &str) -> Option<Browser> {
        let Some((driver_bin, chrome_bin)) = chromium() else {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "CI=true but chromium/chromedriver are not installed (scripts/test.sh installs them)"
            );
            eprintln!("SKIPPED {test}: chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut cmd = Command::new(driver_bin);
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd.spawn().expect("start chromedriver");
        let guard = Driver(Some(driver));
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let up = reqwest::get(format!("{url}/status")).await.is_ok();
            if up {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chrome_bin,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         "--no-first-run", "--disable-extensions"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a WebDriver session");
        let shots = screenshot_dir();
        Some(Browser {
            client,
            _driver: guard,
            shots,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.expect(css);
        e.clear().await.ok();
        e.send_keys(text).await.expect("type");
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .expect(css)
            .click()
            .await
            .expect("click");
    }

    pub async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("url")
            .path()
            .to_string()
    }

    /// Waits (at most 10 s) until the browser shows `path` and its page contains `text`: a
    /// click that submits a form may return before the answer (and its redirect) is shown.
    pub async fn wait_for(&self, path: &str, text: &str) -> String {
        let started = Instant::now();
        loop {
            let html = self.source().await;
            let at = self.path().await;
            if at == path && html.contains(text) {
                return html;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "waited 10 s for {path} with {text:?}; at {at}: {html}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens the login form and logs in.
    pub async fn login(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/ui/login")).await;
        self.fill("#user", user).await;
        self.fill("#password", password).await;
        self.click("#login").await;
    }

    /// Writes a screenshot of the current page to `<target>/ui-screenshots/<db>/<name>.png`.
    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
    }

    /// Ends the session (Chromium quits) and stops chromedriver.
    pub async fn close(self) {
        self.client.clone().close().await.ok();
    }
}

/// Kills chromedriver's process group (chromedriver and any Chromium it started) when dropped.
struct Driver(Option<Child>);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: killpg only sends a signal to the group this test started.
                unsafe {
                    libc::killpg(pid, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            // Chromium's processes are in the same group: wait (at most 5 s) until it is empty.
            if let Ok(pid) = i32::try_from(child.id()) {
                let until = Instant::now() + Duration::from_secs(5);
                // SAFETY: signal 0 only asks whether the group still has processes.
                while unsafe { libc::killpg(pid, 0) } == 0 && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// `<target>/ui-screenshots/<sqlite|postgres>`, made if needed.
fn screenshot_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().map(PathBuf::from).unwrap_or(tmp);
    let db = match std::env::var("HPCSERA_TEST_DATABASE_URL") {
        Ok(u) if u.starts_with("postgres") => "postgres",
        _ => "sqlite",
    };
    let dir = target.join("ui-screenshots").join(db);
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// Sends an API request and reads its answer as JSON, whatever its status.
pub async fn json_of(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send().await.unwrap().json().await.unwrap()
}
