//! Test harness: a real server on a random port over a fresh database — SQLite in a temp
//! directory, or a fresh PostgreSQL database when `HPCSERA_TEST_DATABASE_URL` names one.
#![allow(dead_code)]

use hpcsera_api_types::{Role, RoleSet};
use hpcsera_server::{Application, ServerConfig};
use hpcsera_store::{NewToken, Store};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub struct TestApp {
    pub base: String,
    pub store: Store,
    pub http: reqwest::Client,
    pub code_dir: std::path::PathBuf,
    /// The database's URL, for a second store handle (another process's view).
    pub db_url: String,
    _dir: tempfile::TempDir,
}

#[path = "fresh_database.rs"]
mod fresh;
pub use fresh::fresh_database;

pub const SITE: &str = "testsite";
pub const JOB_TYPE: &str = "sim";

pub fn job_type_spec() -> Value {
    json!({
        "name": JOB_TYPE,
        "description": "a simulation",
        "parameters": [
            {"name": "label", "type": "string", "maxLength": 200},
            {"name": "steps", "type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
            {"name": "tol", "type": "number", "minimum": 0.0, "maximum": 1.0, "required": false},
            {"name": "verbose", "type": "boolean", "default": false},
            {"name": "mode", "type": "enum", "values": ["fast", "exact"], "default": "fast"},
            {"name": "tag", "type": "string", "pattern": "[a-z][a-z0-9-]*", "required": false},
            {"name": "code", "type": "code", "required": false}
        ],
        "subJobs": [{"name": "stage", "kind": "login"}, {"name": "run", "kind": "batch"}]
    })
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        // Rate limiting has its own test; the others make bursts of requests on purpose.
        Self::spawn_configured(|c| c.rate_limits.rate_limit_per_second = 0).await
    }

    /// A server on a free port with the default settings as `configure` changes them.
    pub async fn spawn_configured(configure: impl FnOnce(&mut ServerConfig)) -> TestApp {
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".into(),
            ..Default::default()
        };
        configure(&mut config);
        Self::spawn_with(config).await
    }

    pub async fn spawn_with(config: ServerConfig) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = fresh_database(dir.path()).await;
        let store = Store::connect(&url).await.expect("open store");
        let mut config = config;
        if config.code_dir == ServerConfig::default().code_dir {
            config.code_dir = dir.path().join("code");
        }
        let code_dir = config.code_dir.clone();
        let app = Application::build(config, store.clone())
            .await
            .expect("bind");
        let addr = app.local_addr().expect("addr");
        tokio::spawn(app.run_until(std::future::pending()));
        let t = TestApp {
            base: format!("http://{addr}"),
            store,
            http: reqwest::Client::new(),
            code_dir,
            db_url: url,
            _dir: dir,
        };
        // Users, projects, and the site's job type, published by an agent token.
        for u in ["alice", "bob", "agent"] {
            t.store.create_user(u, None, false).await.expect("user");
        }
        for p in ["proj-a", "proj-b"] {
            t.store.create_project(p, "").await.expect("project");
        }
        t.store.add_member("alice", "proj-a").await.expect("member");
        t.store.add_member("agent", "proj-a").await.expect("member");
        t.store.add_member("bob", "proj-b").await.expect("member");
        // Job types belong to (site, project): each project's agent publishes its own.
        for agent in [t.agent_token().await, t.agent_token_b().await] {
            let r = t
                .publish(&agent, SITE, json!({"jobTypes": [job_type_spec()]}))
                .await;
            assert_eq!(r.0, StatusCode::NO_CONTENT, "{}", r.1);
        }
        t
    }

    /// A token to make, for `user`: every role, no site restriction and the project
    /// `proj-a` unless the builder says otherwise, e.g.
    /// `t.user("bob").project("proj-b").roles(&[Role::GetJob]).site(SITE).token().await`.
    pub fn user<'a>(&'a self, user: &'a str) -> TokenBuilder<'a> {
        TokenBuilder {
            app: self,
            user,
            project: "proj-a",
            roles: RoleSet::all(),
            site: None,
        }
    }

    /// alice in proj-a with every role.
    pub async fn alice(&self) -> String {
        self.user("alice").project("proj-a").token().await
    }

    /// The agent of SITE in proj-a.
    pub async fn agent_token(&self) -> String {
        self.user("agent")
            .project("proj-a")
            .roles(&AGENT_ROLES)
            .site(SITE)
            .token()
            .await
    }

    /// The agent of SITE in proj-b (run by bob).
    pub async fn agent_token_b(&self) -> String {
        self.user("bob")
            .project("proj-b")
            .roles(&AGENT_ROLES)
            .site(SITE)
            .token()
            .await
    }

    /// Sends a request; returns status and the JSON body (Null when empty or not JSON).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends a request without a body (with a bearer token when given) and returns the raw
    /// response, for tests that look at headers or bytes.
    pub async fn raw(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            rb = rb.bearer_auth(token);
        }
        rb.send().await.expect("request")
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let r = self.raw(Method::GET, "/metrics", None).await;
        r.text().await.expect("metrics")
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, token, None).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, token, None).await
    }

    /// Submits a job of the test type; panics unless 201.
    pub async fn submit(&self, token: &str, params: Value) -> Value {
        let (s, b) = self
            .post_job(
                token,
                json!({"site": SITE, "jobType": JOB_TYPE, "parameters": params}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }

    /// `POST /job` with this body, whatever the answer.
    pub async fn post_job(&self, token: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, "/api/v1/job", token, Some(body))
            .await
    }

    /// `POST /agent/poll` with this body, whatever the answer.
    pub async fn agent_poll(&self, agent: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, "/api/v1/agent/poll", agent, Some(body))
            .await
    }

    /// `POST /agent/jobs/{id}/operationDone` with this body.
    pub async fn operation_done(&self, agent: &str, id: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            &format!("/api/v1/agent/jobs/{id}/operationDone"),
            agent,
            Some(body),
        )
        .await
    }

    /// `PUT /sites/{site}/jobTypes` with this body, whatever the answer.
    pub async fn publish(&self, agent: &str, site: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            Method::PUT,
            &format!("/api/v1/sites/{site}/jobTypes"),
            agent,
            Some(body),
        )
        .await
    }

    /// Requests an operation (`cancel`, `hold`, `release`) on a job.
    pub async fn operation(&self, token: &str, id: &str, op: &str) -> (StatusCode, Value) {
        self.send(
            Method::PUT,
            &format!("/api/v1/job/updateByOperation/{id}"),
            token,
            Some(json!({ "operation": op })),
        )
        .await
    }

    /// Claims the queued, unheld jobs of SITE as the agent does (`POST /agent/poll`, the only
    /// way to claim) and confirms the claims; returns the ids claimed, which must include `id`.
    pub async fn claim(&self, agent: &str, id: &str) -> Vec<String> {
        let (s, r) = self
            .agent_poll(agent, json!({"maxJobs": 1000, "waitSeconds": 0}))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let ids: Vec<String> = r["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(id_of)
            .collect();
        assert!(ids.iter().any(|i| i == id), "{id} not claimed: {r}");
        for i in &ids {
            let (s, b) = self.report(agent, i, json!({"status": "dispatched"})).await;
            assert_eq!(s, StatusCode::OK, "confirming the claim of {i}: {b}");
        }
        ids
    }

    /// Moves a job along as the agent would.
    pub async fn report(&self, agent: &str, id: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, &format!("/api/v1/job/{id}"), agent, Some(body))
            .await
    }
}

/// The roles of the test agents' tokens.
pub const AGENT_ROLES: [Role; 3] = [Role::GetJob, Role::UpdateJobStatus, Role::GetCode];

/// A token about to be made (see [`TestApp::user`]).
pub struct TokenBuilder<'a> {
    app: &'a TestApp,
    user: &'a str,
    project: &'a str,
    roles: RoleSet,
    site: Option<&'a str>,
}

impl<'a> TokenBuilder<'a> {
    pub fn project(mut self, project: &'a str) -> Self {
        self.project = project;
        self
    }

    /// Only these roles.
    pub fn roles(self, roles: &[Role]) -> Self {
        self.role_set(roles.iter().copied().collect())
    }

    pub fn role_set(mut self, roles: RoleSet) -> Self {
        self.roles = roles;
        self
    }

    /// Restricted to `site`.
    pub fn site(mut self, site: &'a str) -> Self {
        self.site = Some(site);
        self
    }

    /// Creates the token in the store; its secret.
    pub async fn token(self) -> String {
        self.app
            .store
            .create_token(&NewToken {
                user: self.user,
                project: self.project,
                name: "test",
                roles: self.roles,
                site: self.site,
                expires_at: None,
            })
            .await
            .expect("token")
            .1
    }
}

/// Sends a request and reads its answer as JSON, whatever its status.
pub async fn json_of(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

pub fn id_of(job: &Value) -> String {
    job["id"].as_str().expect("job id").to_string()
}

/// The error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// The field names of a validation error body.
pub fn fields(body: &Value) -> Vec<String> {
    body["error"]["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["field"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
