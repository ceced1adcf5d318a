//! Who acts: roles, the sites and categories an actor's authority is limited to.

use crate::ids::{ActorId, Category, SiteId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// What an actor is, which decides what they may do (see `docs/domain.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A resident acting for themselves.
    Resident,
    /// Staff at a community kiosk; may submit and supply materials on a resident's behalf (帮办).
    Kiosk,
    /// 社区工作者: works a queue, scoped to sites and categories.
    Caseworker,
    /// Approves, decides extensions, for their sites.
    Supervisor,
    /// Reads metrics for their sites or the whole province; decides rating appeals.
    Manager,
    /// Housekeeping: reassigns and closes.
    Admin,
    /// The server's timer scheduler; may only fire timers.
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Resident => "resident",
            Role::Kiosk => "kiosk",
            Role::Caseworker => "caseworker",
            Role::Supervisor => "supervisor",
            Role::Manager => "manager",
            Role::Admin => "admin",
            Role::System => "system",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Either everything (a province-wide manager) or a listed set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope<T: Ord> {
    All,
    Only(BTreeSet<T>),
}

impl<T: Ord> Scope<T> {
    pub fn contains(&self, item: &T) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(items) => items.contains(item),
        }
    }

    pub fn only(items: impl IntoIterator<Item = T>) -> Self {
        Scope::Only(items.into_iter().collect())
    }

    pub fn none() -> Self {
        Scope::Only(BTreeSet::new())
    }
}

/// The authenticated actor behind a command. The server builds it from the caller's
/// credentials; the domain trusts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: ActorId,
    pub role: Role,
    pub sites: Scope<SiteId>,
    pub categories: Scope<Category>,
}

impl Actor {
    pub fn resident(id: impl Into<String>) -> Actor {
        Actor {
            id: ActorId::new(id),
            role: Role::Resident,
            sites: Scope::All,
            categories: Scope::All,
        }
    }

    pub fn kiosk(id: impl Into<String>, sites: impl IntoIterator<Item = SiteId>) -> Actor {
        Actor {
            id: ActorId::new(id),
            role: Role::Kiosk,
            sites: Scope::only(sites),
            categories: Scope::All,
        }
    }

    pub fn caseworker(
        id: impl Into<String>,
        sites: impl IntoIterator<Item = SiteId>,
        categories: impl IntoIterator<Item = Category>,
    ) -> Actor {
        Actor {
            id: ActorId::new(id),
            role: Role::Caseworker,
            sites: Scope::only(sites),
            categories: Scope::only(categories),
        }
    }

    pub fn supervisor(id: impl Into<String>, sites: impl IntoIterator<Item = SiteId>) -> Actor {
        Actor {
            id: ActorId::new(id),
            role: Role::Supervisor,
            sites: Scope::only(sites),
            categories: Scope::All,
        }
    }

    /// A manager for some sites; use `sites: Scope::All` for a province-wide one.
    pub fn manager(id: impl Into<String>, sites: Scope<SiteId>) -> Actor {
        Actor {
            id: ActorId::new(id),
            role: Role::Manager,
            sites,
            categories: Scope::All,
        }
    }

    pub fn admin(id: impl Into<String>) -> Actor {
        Actor {
            id: ActorId::new(id),
            role: Role::Admin,
            sites: Scope::All,
            categories: Scope::All,
        }
    }

    /// The timer scheduler.
    pub fn system() -> Actor {
        Actor {
            id: ActorId::new("system"),
            role: Role::System,
            sites: Scope::All,
            categories: Scope::All,
        }
    }
}
