//! Loads an agent config and prints the job types it publishes, or every problem with
//! file:line:col and key. Usage: `cargo run -p hpcsera-agent --example check_config -- agent.toml`
fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: check_config AGENT.toml");
        std::process::exit(2);
    };
    match hpcsera_agent::AgentConfig::load(&path) {
        Ok(cfg) => {
            let specs = cfg.specs();
            match serde_json::to_string_pretty(&specs) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("{e}"),
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
