//! `hpcsera`: one binary for every part — the API server, the admin commands on the server
//! host, and (in later capabilities) the agent and the client.

mod admin;
mod agent_cmd;
mod bench;
mod cli;
mod dev;
mod manpages;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use hpcsera_server::{config, Application, ServerConfig};
use hpcsera_store::Store;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "hpcsera",
    version,
    about = "HPC Service API: use an HPC cluster as a service backend"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "HPCSERA_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(flatten)]
    global: cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    Server(Box<ServerArgs>),
    /// Administer users, projects, memberships, tokens and sites (on the server host).
    Admin(admin::AdminArgs),
    /// Run the HPC agent (on a login node, as an ordinary user).
    Agent(agent_cmd::AgentArgs),
    /// Start a server on SQLite and an agent for site "local" in one process, with example
    /// job types, a demo project and tokens.
    Dev(dev::DevArgs),
    /// Print the OpenAPI description of the REST API.
    Openapi,
    /// Print a shell completion script: `source <(hpcsera completions bash)`, or save it where
    /// the shell loads completions (see README, "Shell completions and man pages").
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (hpcsera.1 and one per subcommand, e.g. hpcsera-job-submit.1) into
    /// DIR: `hpcsera man ~/.local/share/man/man1`.
    Man { dir: PathBuf },
    #[command(flatten)]
    Client(cli::ClientCommand),
    /// Upload code bundles and follow their approval.
    Code(cli::code::CodeArgs),
    /// Parts of the benchmark harness (scripts/bench.sh).
    #[command(hide = true)]
    Bench(bench::BenchArgs),
}

/// Where the server keeps its data.
#[derive(Args, Clone)]
pub struct DbArgs {
    /// Data directory; the SQLite database lives here when no --database-url is given.
    /// Default: $XDG_DATA_HOME/hpcsera or ~/.local/share/hpcsera.
    #[arg(long, env = "HPCSERA_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL: postgres://user@host/db or sqlite://PATH. Default: SQLite in the data directory.
    #[arg(
        long,
        env = "HPCSERA_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Directory of the code bundle files (shared by all server replicas). Default: `code` in
    /// the data directory.
    #[arg(long, env = "HPCSERA_CODE_DIR", global = true)]
    code_dir: Option<PathBuf>,
}

impl DbArgs {
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("hpcsera");
        }
        match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".local/share/hpcsera"),
            None => PathBuf::from("hpcsera-data"),
        }
    }

    /// Where code bundle files live: `--code-dir`, else `<data dir>/code`.
    pub fn code_dir(&self) -> PathBuf {
        self.code_dir
            .clone()
            .unwrap_or_else(|| self.data_dir().join("code"))
    }

    pub async fn open(&self) -> anyhow::Result<Store> {
        let store = match &self.database_url {
            Some(url) => Store::connect(url).await,
            None => Store::open_data_dir(&self.data_dir()).await,
        };
        store.context("cannot open the database")
    }
}

/// `hpcsera server`: where to listen and where the data is; every other setting is a group
/// of `ServerConfig` (its flags, defaults and floors are defined there, once).
#[derive(Args)]
struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "HPCSERA_LISTEN", default_value = hpcsera_server::config::DEFAULT_LISTEN)]
    listen: String,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    limits: config::Limits,
    #[command(flatten)]
    leases: config::Leases,
    #[command(flatten)]
    webhooks: config::Webhooks,
    #[command(flatten)]
    rate_limits: config::RateLimits,
    #[command(flatten)]
    connections: config::Connections,
    #[command(flatten)]
    tls: config::TlsFiles,
    #[command(flatten)]
    ui: config::Ui,
    #[command(flatten)]
    device: config::DeviceFlow,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HPCSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let store = args.db.open().await?;
    let config = ServerConfig {
        listen: args.listen.clone(),
        code_dir: args.db.code_dir(),
        limits: args.limits,
        leases: args.leases,
        webhooks: args.webhooks,
        rate_limits: args.rate_limits,
        connections: args.connections,
        tls: args.tls,
        ui: args.ui,
        device: args.device,
    };
    let app = Application::build(config, store)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = app.local_addr()?;
    match &args.db.database_url {
        Some(_) => tracing::info!(%addr, "hpcsera server listening (database from --database-url)"),
        None => {
            tracing::info!(%addr, data_dir = %args.db.data_dir().display(), "hpcsera server listening (SQLite)")
        }
    }
    app.run_until(shutdown_signal()).await?;
    Ok(())
}

/// umask 077: files 0600, directories 0700.
fn private_umask() {
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    cli::set_global(cli.global);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        Command::Client(c) => return rt.block_on(cli::run(c)),
        other => other,
    };
    if matches!(
        command,
        Command::Server(_) | Command::Admin(_) | Command::Dev(_)
    ) {
        // The server's files (database, code bundles) hold secrets: whatever this process
        // creates is private to its user (the store and the code upload set modes too).
        private_umask();
    }
    let result = rt.block_on(async move {
        match command {
            Command::Server(a) => run_server(*a).await,
            Command::Admin(a) => admin::run(a).await,
            Command::Agent(a) => agent_cmd::run(a).await,
            Command::Dev(a) => dev::run(a).await,
            Command::Code(a) => cli::code::run(a).await,
            Command::Bench(a) => bench::run(a).await,
            Command::Openapi => {
                print!("{}", hpcsera_server::spec_json());
                Ok(())
            }
            Command::Completions { shell } => manpages::completions(Cli::command(), shell),
            Command::Man { dir } => {
                let pages = manpages::write_man_pages(Cli::command(), &dir)?;
                eprintln!("{} man pages written to {}", pages.len(), dir.display());
                Ok(())
            }
            Command::Client(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
