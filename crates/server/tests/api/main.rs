//! The server's integration tests, one binary (one link) with a module per area: each test
//! starts a real server on port 0 over a fresh database (SQLite, or PostgreSQL when
//! `HPCSERA_TEST_DATABASE_URL` names one; see `common`).

mod agent;
mod approvals;
mod auth_cache;
mod code;
mod common;
mod device;
mod jobs;
mod observability;
mod provenance;
mod resources;
mod roles;
mod service;
mod sweeps;
mod tokens;
mod tokens_session;
mod ui;
mod ui_admin;
mod ui_code;
mod ui_jobs;
mod ui_sites;
mod webhooks;
