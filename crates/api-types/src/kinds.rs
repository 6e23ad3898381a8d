//! The closed vocabularies of the wire format besides job statuses: what an event records,
//! where a webhook delivery and a sub-job stand, and who did something. Each is an enum here, so the
//! server, the store, the agent and the clients spell them one way; on the wire and in the
//! database they are the snake_case (or `kind:name`) strings documented in the API.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// Generates `as_str`, `Display`, `FromStr` and a comparison with `&str` for a unit enum whose
/// wire names are given.
macro_rules! wire_names {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($ty::$variant),)*
                    other => Err(format!("unknown {} {other:?}", stringify!($ty))),
                }
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

/// What an entry of a job's event log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The job was submitted.
    Created,
    /// A status change (`fromStatus` → `toStatus`).
    Status,
    /// A client changed the job's parameters, metadata or callback.
    Updated,
    /// A client requested an operation; the message names it.
    OperationRequested,
    /// An operation was carried out; the message names it.
    OperationDone,
    /// The agent could not carry out an operation; the message says why.
    OperationFailed,
    /// A client deleted the job while an agent held it.
    Deleted,
    /// The agent that held a lost job came back and said what it did about it.
    AgentCleanup,
}

wire_names!(EventKind {
    Created => "created",
    Status => "status",
    Updated => "updated",
    OperationRequested => "operation_requested",
    OperationDone => "operation_done",
    OperationFailed => "operation_failed",
    Deleted => "deleted",
    AgentCleanup => "agent_cleanup",
});

/// Where a webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; tried again at `nextAttemptAt`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up after the last attempt.
    Failed,
}

wire_names!(DeliveryStatus {
    Pending => "pending",
    Delivered => "delivered",
    Failed => "failed",
});

/// Where one sub-job of a job stands, as the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubJobStatus {
    /// Not started yet.
    Pending,
    /// A login step runs, or a batch step runs in the batch system.
    Running,
    /// A batch step waits in the batch system's queue.
    Submitted,
    Completed,
    Failed,
    Cancelled,
}

wire_names!(SubJobStatus {
    Pending => "pending",
    Running => "running",
    Submitted => "submitted",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
});

/// Who caused an event: a person through a token (`user:NAME`), an agent (`agent:NAME@SITE`),
/// or the server itself (`server`, e.g. when a lease runs out).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    User(String),
    Agent { user: String, site: String },
    Server,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(u) => write!(f, "user:{u}"),
            Actor::Agent { user, site } => write!(f, "agent:{user}@{site}"),
            Actor::Server => f.write_str("server"),
        }
    }
}

impl FromStr for Actor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "server" {
            return Ok(Actor::Server);
        }
        if let Some(u) = s.strip_prefix("user:") {
            return Ok(Actor::User(u.to_string()));
        }
        if let Some((user, site)) = s.strip_prefix("agent:").and_then(|a| a.rsplit_once('@')) {
            return Ok(Actor::Agent {
                user: user.to_string(),
                site: site.to_string(),
            });
        }
        Err(format!("unknown actor {s:?}"))
    }
}

impl PartialEq<&str> for Actor {
    fn eq(&self, other: &&str) -> bool {
        match self {
            Actor::User(u) => other.strip_prefix("user:") == Some(u.as_str()),
            Actor::Agent { user, site } => other
                .strip_prefix("agent:")
                .and_then(|a| a.rsplit_once('@'))
                .is_some_and(|(u, s)| u == user && s == site),
            Actor::Server => *other == "server",
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Actor {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "who caused it: `user:NAME` (through a token), `agent:NAME@SITE`, or `server`",
            ))
            .into()
    }
}

impl ToSchema for Actor {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>().unwrap(), *k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for d in DeliveryStatus::ALL {
            assert_eq!(d.as_str().parse::<DeliveryStatus>().unwrap(), *d);
        }
        for s in SubJobStatus::ALL {
            assert_eq!(s.as_str().parse::<SubJobStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for a in ["user:alice", "agent:bob@hawk", "server", "agent:a@b@site"] {
            let actor: Actor = a.parse().unwrap();
            assert_eq!(actor.to_string(), a);
            assert_eq!(serde_json::to_value(&actor).unwrap(), a);
        }
        assert!("agent:nosite".parse::<Actor>().is_err());
        assert!(Actor::Server == "server");
        assert!(Actor::User("a".into()) == "user:a" && Actor::User("a".into()) != "user:b");
        assert!("robot".parse::<Actor>().is_err());
    }
}
