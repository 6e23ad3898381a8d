//! The server's settings, in groups: limits, leases, webhooks, rate limits, connections, TLS,
//! the web UI (sessions, logins, token expiry) and the OAuth device flow.
//!
//! Each group is also the clap argument group of `hpcsera server` (flattened into its
//! arguments), so a setting's flag, environment variable, help text and default are written
//! once, here: the default is a constant that both the group's `Default` and its flag use.
//! Settings without a flag (`skip`) are for tests and embedders. A floor a setting must keep
//! is checked where the flag is parsed (an error at start, never a silent clamp). This module
//! must never read the environment or files itself; clap does, in the binary.

use crate::forwarded::TrustedProxy;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Settings of the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Where code bundle files live (content-addressed: `<code_dir>/ab/abcdef…`).
    pub code_dir: PathBuf,
    pub limits: Limits,
    pub leases: Leases,
    pub webhooks: Webhooks,
    pub rate_limits: RateLimits,
    pub connections: Connections,
    pub tls: TlsFiles,
    pub ui: Ui,
    pub device: DeviceFlow,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.into(),
            code_dir: PathBuf::from("hpcsera-code"),
            limits: Limits::default(),
            leases: Leases::default(),
            webhooks: Webhooks::default(),
            rate_limits: RateLimits::default(),
            connections: Connections::default(),
            tls: TlsFiles::default(),
            ui: Ui::default(),
            device: DeviceFlow::default(),
        }
    }
}

impl ServerConfig {
    /// This configuration with no per-token request limit: for benchmarks and tests that ask
    /// faster than a person would.
    pub fn without_rate_limit(mut self) -> Self {
        self.rate_limits.rate_limit_per_second = 0;
        self
    }
}

/// Where the bytes of a code bundle live: `<code_dir>/ab/abcdef…` (content-addressed; the
/// admin commands delete files by the same rule).
pub fn code_file_path(code_dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    code_dir.join(id.get(..2).unwrap_or("_")).join(id)
}

const MIB: usize = 1024 * 1024;

/// Sizes of what clients and agents send and what the server keeps.
#[derive(Clone, Debug, Args)]
pub struct Limits {
    /// Largest accepted JSON request body, in bytes.
    #[arg(long, env = "HPCSERA_MAX_BODY_BYTES", default_value_t = Limits::DEFAULT.max_body_bytes)]
    pub max_body_bytes: usize,
    /// Most bytes kept of each output stream (stdout, stderr) of a job.
    #[arg(long, env = "HPCSERA_MAX_OUTPUT_BYTES", default_value_t = Limits::DEFAULT.max_output_bytes)]
    pub max_output_bytes: usize,
    /// Largest request body of a result upload or an output chunk, in bytes; at least 1 MiB
    /// applies whatever is set here, since an agent sends output in chunks of up to 1 MiB.
    #[arg(long, env = "HPCSERA_MAX_RESULT_BYTES", default_value_t = Limits::DEFAULT.max_result_bytes)]
    pub max_result_bytes: usize,
    /// Most result files per job.
    #[arg(skip = Limits::DEFAULT.max_result_files)]
    pub max_result_files: i64,
    /// Largest code bundle (tar.gz) accepted, in bytes.
    #[arg(long, env = "HPCSERA_MAX_CODE_BYTES", default_value_t = Limits::DEFAULT.max_code_bytes)]
    pub max_code_bytes: u64,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        max_body_bytes: MIB,
        max_output_bytes: 64 * MIB,
        max_result_bytes: 10 * MIB,
        max_result_files: 1000,
        max_code_bytes: 50 * MIB as u64,
    };

    /// The least body limit of the byte routes: an output chunk is up to 1 MiB.
    pub const MIN_BLOB_BODY_BYTES: usize = MIB;

    /// The request body limit of the byte routes (output chunks, result files): the larger
    /// of `max_result_bytes` and [`Limits::MIN_BLOB_BODY_BYTES`].
    pub fn blob_body_bytes(&self) -> usize {
        self.max_result_bytes.max(Self::MIN_BLOB_BODY_BYTES)
    }

    /// The least body limit of `POST /sweeps`: 10,000 parameter sets of a few hundred bytes.
    pub const MIN_SWEEP_BODY_BYTES: usize = 16 * MIB;

    /// The request body limit of `POST /sweeps`: the larger of `max_body_bytes` and
    /// [`Limits::MIN_SWEEP_BODY_BYTES`].
    pub fn sweep_body_bytes(&self) -> usize {
        self.max_body_bytes.max(Self::MIN_SWEEP_BODY_BYTES)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// How long an agent holds a job without word from it, and how often that is checked.
#[derive(Clone, Debug, Args)]
pub struct Leases {
    /// How long an agent's lease on a job lasts after each poll or report, in seconds (at
    /// least 10).
    #[arg(long, env = "HPCSERA_LEASE_SECONDS", default_value_t = Leases::DEFAULT.lease_seconds,
        value_parser = clap::value_parser!(u64).range(Leases::MIN_LEASE_SECONDS..))]
    pub lease_seconds: u64,
    /// How long a fresh claim waits for the agent's confirmation before it is offered again.
    #[arg(skip = Leases::DEFAULT.claim_lease_seconds)]
    pub claim_lease_seconds: u64,
    /// How often leases are checked for expiry.
    #[arg(skip = Leases::DEFAULT.reaper_interval)]
    pub reaper_interval: Duration,
}

impl Leases {
    const DEFAULT: Leases = Leases {
        lease_seconds: 300,
        claim_lease_seconds: 60,
        reaper_interval: Duration::from_secs(10),
    };

    /// The shortest lease the command line accepts: an agent renews its leases once per poll
    /// cycle, and a shorter lease would call its jobs lost between two polls. (Tests set
    /// shorter leases through the library to see expiry quickly.)
    pub const MIN_LEASE_SECONDS: u64 = 10;
}

impl Default for Leases {
    fn default() -> Self {
        Leases::DEFAULT
    }
}

/// Where job callbacks may go, and how their delivery is retried.
#[derive(Clone, Debug, Args)]
pub struct Webhooks {
    /// A host that job callback URLs may point at (repeat for more; default: none): `host`
    /// (the scheme's default port only), `host:port`, or `host:*` (any port).
    // Matched by `webhooks::callback_allowed`.
    #[arg(
        long = "callback-allow-host",
        env = "HPCSERA_CALLBACK_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub callback_allow_hosts: Vec<String>,
    /// First wait before a failed delivery is tried again (doubling each time).
    #[arg(skip = Webhooks::DEFAULT_RETRY_BASE)]
    pub retry_base: Duration,
    /// Attempts of a delivery before it is given up.
    #[arg(skip = Webhooks::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
}

impl Webhooks {
    const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(2);
    const DEFAULT_MAX_ATTEMPTS: u32 = 8;
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            callback_allow_hosts: Vec::new(),
            retry_base: Webhooks::DEFAULT_RETRY_BASE,
            max_attempts: Webhooks::DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// How fast one token may ask, and how often one address may fail to authenticate.
#[derive(Clone, Debug, Args)]
pub struct RateLimits {
    /// Requests per second allowed per token, twice that in a burst (0: no limit). Agent
    /// tokens are not limited.
    #[arg(long, env = "HPCSERA_RATE_LIMIT", default_value_t = RateLimits::DEFAULT.rate_limit_per_second)]
    pub rate_limit_per_second: u32,
    /// Failed authentications allowed per client address and minute (in bursts of as many)
    /// before they are answered 429 (0: no limit).
    #[arg(long, env = "HPCSERA_AUTH_FAILURES_PER_MINUTE",
        default_value_t = RateLimits::DEFAULT.auth_failures_per_minute)]
    pub auth_failures_per_minute: u32,
}

impl RateLimits {
    const DEFAULT: RateLimits = RateLimits {
        rate_limit_per_second: 100,
        auth_failures_per_minute: 60,
    };
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::DEFAULT
    }
}

/// Client connections: how many, how slow, and who is in front of the server.
#[derive(Clone, Debug, Args)]
pub struct Connections {
    /// Most open client connections; at the cap the longest-idle one is closed to make room
    /// (0: the file limit, `ulimit -n`, less a quarter, at least 128, kept for the database
    /// and files).
    // 0 becomes `serve::default_max_connections()` when the server starts.
    #[arg(long, env = "HPCSERA_MAX_CONNECTIONS", default_value_t = Connections::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a keep-alive
    /// connection may stay idle.
    #[arg(skip = Connections::DEFAULT_HEADER_READ_TIMEOUT)]
    pub header_read_timeout: Duration,
    /// How often a waiting long poll looks again without a wake-up (the floor for changes
    /// this server is not told about: another process's writes on SQLite, or a lost
    /// LISTEN connection on PostgreSQL).
    #[arg(skip = Connections::DEFAULT_LONG_POLL_RECHECK)]
    pub long_poll_recheck: Duration,
    /// A reverse proxy, by address or CIDR range (10.0.0.7, 10.0.0.0/24), whose
    /// X-Forwarded-For, -Proto and -Host describe the client (repeat for more; from anyone
    /// else these headers are ignored and the socket's peer is the client).
    #[arg(
        long = "trusted-proxy",
        env = "HPCSERA_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "IP|CIDR"
    )]
    pub trusted_proxies: Vec<TrustedProxy>,
}

impl Connections {
    const DEFAULT_MAX_CONNECTIONS: usize = 0;
    const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    const DEFAULT_LONG_POLL_RECHECK: Duration = Duration::from_secs(2);
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            max_connections: Connections::DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Connections::DEFAULT_HEADER_READ_TIMEOUT,
            long_poll_recheck: Connections::DEFAULT_LONG_POLL_RECHECK,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The server's own TLS; without it the server speaks plain HTTP (behind a reverse proxy
/// that terminates TLS, or on localhost).
#[derive(Clone, Debug, Default, Args)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first: the server then speaks HTTPS
    /// only. Read again on SIGHUP (open connections keep theirs).
    #[arg(
        long,
        env = "HPCSERA_TLS_CERT",
        requires = "tls_key",
        value_name = "PEM"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1); read again on SIGHUP.
    #[arg(
        long,
        env = "HPCSERA_TLS_KEY",
        requires = "tls_cert",
        value_name = "PEM"
    )]
    pub tls_key: Option<PathBuf>,
}

const HOUR_MINUTES: u64 = 60;

/// The web UI: where it is served, how long sessions last, how often one may try to log in,
/// and the expiry of the tokens people make there.
#[derive(Clone, Debug, Args)]
pub struct Ui {
    /// The URL people reach the server at, e.g. https://hpc.example.org (invitation links
    /// start with it; with https:// the session cookie is `Secure`).
    #[arg(long, env = "HPCSERA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// A web session ends after this many minutes without a request.
    #[arg(long, env = "HPCSERA_SESSION_IDLE_MINUTES", default_value_t = Ui::DEFAULT.session_idle_minutes,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub session_idle_minutes: u64,
    /// A web session ends this many hours after the login, whatever the activity.
    #[arg(long, env = "HPCSERA_SESSION_MAX_HOURS", default_value_t = Ui::DEFAULT.session_max_hours,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub session_max_hours: u64,
    /// Login attempts allowed per account, and per client address, each minute (in bursts of
    /// as many; 0: no limit).
    #[arg(long, env = "HPCSERA_LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = Ui::DEFAULT.login_attempts_per_minute)]
    pub login_attempts_per_minute: u32,
    /// A request header (e.g. X-Remote-User) that names the logged-in user, set by an SSO
    /// reverse proxy: honoured only on connections from a `--trusted-proxy` address, and only
    /// for users that exist (default: none, every login is by password).
    #[arg(long, env = "HPCSERA_TRUSTED_USER_HEADER")]
    pub trusted_user_header: Option<String>,
    /// The expiry, in days, that the token form proposes.
    #[arg(long, env = "HPCSERA_TOKEN_DEFAULT_DAYS", default_value_t = Ui::DEFAULT.token_default_days,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub token_default_days: u32,
    /// The longest expiry, in days, of a token made in the web UI.
    #[arg(long, env = "HPCSERA_TOKEN_MAX_DAYS", default_value_t = Ui::DEFAULT.token_max_days,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub token_max_days: u32,
}

impl Ui {
    const DEFAULT: Ui = Ui {
        public_url: None,
        session_idle_minutes: 12 * HOUR_MINUTES,
        session_max_hours: 7 * 24,
        login_attempts_per_minute: 10,
        trusted_user_header: None,
        token_default_days: 30,
        token_max_days: 365,
    };

    /// Whether people reach the server over TLS (then cookies are `Secure`).
    pub fn https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
    }

    pub fn session_idle_ms(&self) -> i64 {
        i64::try_from(self.session_idle_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX)
    }

    pub fn session_max_ms(&self) -> i64 {
        i64::try_from(self.session_max_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX)
    }
}

impl Default for Ui {
    fn default() -> Self {
        Ui::DEFAULT
    }
}

/// The OAuth device flow (RFC 8628): how long a request waits for a person, how often its
/// client may poll, and how fast requests and typed user codes may come.
#[derive(Clone, Debug, Args)]
pub struct DeviceFlow {
    /// How long a device login request (its codes) waits for a person, in seconds.
    #[arg(long, env = "HPCSERA_DEVICE_CODE_SECONDS", default_value_t = DeviceFlow::DEFAULT.device_code_seconds,
        value_parser = clap::value_parser!(u64).range(DeviceFlow::MIN_CODE_SECONDS..=86_400))]
    pub device_code_seconds: u64,
    /// Seconds a device client must wait between two polls of the token endpoint.
    #[arg(long, env = "HPCSERA_DEVICE_POLL_SECONDS", default_value_t = DeviceFlow::DEFAULT.device_poll_seconds,
        value_parser = clap::value_parser!(u64).range(1..=60))]
    pub device_poll_seconds: u64,
    /// New device login requests allowed per client address and minute, in bursts of as many
    /// (0: no limit).
    #[arg(long, env = "HPCSERA_DEVICE_REQUESTS_PER_MINUTE", default_value_t = DeviceFlow::DEFAULT.device_requests_per_minute)]
    pub device_requests_per_minute: u32,
    /// User codes one client address may try per minute on the verification page, in bursts
    /// of as many (0: no limit).
    #[arg(long, env = "HPCSERA_USER_CODE_ATTEMPTS_PER_MINUTE", default_value_t = DeviceFlow::DEFAULT.user_code_attempts_per_minute)]
    pub user_code_attempts_per_minute: u32,
    /// User codes all addresses together may try per minute (per server replica; 0: no limit).
    #[arg(long, env = "HPCSERA_USER_CODE_ATTEMPTS_TOTAL_PER_MINUTE", default_value_t = DeviceFlow::DEFAULT.user_code_attempts_total_per_minute)]
    pub user_code_attempts_total_per_minute: u32,
}

impl DeviceFlow {
    const DEFAULT: DeviceFlow = DeviceFlow {
        device_code_seconds: 600,
        device_poll_seconds: 5,
        device_requests_per_minute: 10,
        user_code_attempts_per_minute: 10,
        user_code_attempts_total_per_minute: 300,
    };

    /// The shortest wait the command line accepts: a person needs time to open the page and
    /// log in. (Tests set shorter ones through the library to see expiry quickly.)
    pub const MIN_CODE_SECONDS: u64 = 60;
}

impl Default for DeviceFlow {
    fn default() -> Self {
        DeviceFlow::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: Limits,
        #[command(flatten)]
        leases: Leases,
        #[command(flatten)]
        webhooks: Webhooks,
        #[command(flatten)]
        rate_limits: RateLimits,
        #[command(flatten)]
        connections: Connections,
        #[command(flatten)]
        tls: TlsFiles,
        #[command(flatten)]
        ui: Ui,
        #[command(flatten)]
        device: DeviceFlow,
    }

    #[test]
    fn the_flags_defaults_are_the_groups_defaults() {
        let cli = Cli::try_parse_from(["hpcsera"]).unwrap();
        let d = ServerConfig::default();
        assert_eq!(format!("{:?}", cli.limits), format!("{:?}", d.limits));
        assert_eq!(format!("{:?}", cli.leases), format!("{:?}", d.leases));
        assert_eq!(format!("{:?}", cli.webhooks), format!("{:?}", d.webhooks));
        assert_eq!(
            format!("{:?}", cli.rate_limits),
            format!("{:?}", d.rate_limits)
        );
        assert_eq!(
            format!("{:?}", cli.connections),
            format!("{:?}", d.connections)
        );
        assert_eq!(format!("{:?}", cli.tls), format!("{:?}", d.tls));
        assert_eq!(format!("{:?}", cli.ui), format!("{:?}", d.ui));
        assert_eq!(format!("{:?}", cli.device), format!("{:?}", d.device));
    }

    #[test]
    fn tls_needs_both_files_and_proxies_take_ranges() {
        assert!(Cli::try_parse_from(["hpcsera", "--tls-cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["hpcsera", "--tls-key", "k.pem"]).is_err());
        let both =
            Cli::try_parse_from(["hpcsera", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert_eq!(both.tls.tls_cert.as_deref(), Some(Path::new("c.pem")));
        let p =
            Cli::try_parse_from(["hpcsera", "--trusted-proxy", "10.0.0.0/8,192.0.2.1"]).unwrap();
        assert_eq!(p.connections.trusted_proxies.len(), 2);
        let bad = Cli::try_parse_from(["hpcsera", "--trusted-proxy", "proxy.example"]);
        assert!(bad.is_err());
    }

    #[test]
    fn a_lease_below_the_floor_is_refused_at_start() {
        let err = Cli::try_parse_from(["hpcsera", "--lease-seconds", "5"])
            .err()
            .expect("refused");
        assert!(err.to_string().contains("lease-seconds"), "{err}");
        let ok = Cli::try_parse_from(["hpcsera", "--lease-seconds", "10"]).unwrap();
        assert_eq!(ok.leases.lease_seconds, 10);
    }
}
