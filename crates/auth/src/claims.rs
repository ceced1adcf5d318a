//! The claims an anju token carries: who, in which role, for which sites and categories.

use serde::{Deserialize, Serialize};

/// The `sites` entry that grants every site of the province (managers and admins).
pub const ALL_SITES: &str = "*";

/// What a token holder may do; each RPC names the roles it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A resident using their own device.
    Resident,
    /// Staff at a community kiosk or service window, submitting for residents.
    Kiosk,
    /// Handles requests of their sites and categories.
    Caseworker,
    /// A caseworker who also decides extensions, appeals and reassignments.
    Supervisor,
    /// Reads reports across their sites.
    Manager,
    /// Operates the service: everything, including the event log.
    Admin,
}

impl Role {
    /// Every role, in the order of the docs.
    pub const ALL: [Role; 6] = [
        Role::Resident,
        Role::Kiosk,
        Role::Caseworker,
        Role::Supervisor,
        Role::Manager,
        Role::Admin,
    ];

    /// The role's name as it appears in tokens and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Resident => "resident",
            Role::Kiosk => "kiosk",
            Role::Caseworker => "caseworker",
            Role::Supervisor => "supervisor",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name; `None` for anything that is not one of [`Role::ALL`].
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified content of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: a stable id of the person or device (caseworker login, kiosk id).
    pub sub: String,
    pub role: Role,
    /// Site ids the holder may act on; [`ALL_SITES`] means every site.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Service category codes the holder may act on; empty means every category.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
}

impl Claims {
    /// Whether the holder may act on `site_id`.
    pub fn covers_site(&self, site_id: &str) -> bool {
        self.sites
            .iter()
            .any(|site| site == ALL_SITES || site == site_id)
    }

    /// Whether the holder may act on every site of the province.
    pub fn covers_all_sites(&self) -> bool {
        self.sites.iter().any(|site| site == ALL_SITES)
    }

    /// Whether the holder may act on `category`; an empty list covers all.
    pub fn covers_category(&self, category: &str) -> bool {
        self.categories.is_empty() || self.categories.iter().any(|c| c == category)
    }

    /// Whether the holder's role is one of `roles`.
    pub fn has_role(&self, roles: &[Role]) -> bool {
        roles.contains(&self.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sites: &[&str], categories: &[&str]) -> Claims {
        Claims {
            sub: "wang".into(),
            role: Role::Caseworker,
            sites: sites.iter().map(|s| s.to_string()).collect(),
            categories: categories.iter().map(|s| s.to_string()).collect(),
            exp: 10,
            iat: 0,
        }
    }

    #[test]
    fn star_covers_every_site() {
        assert!(claims(&["*"], &[]).covers_site("any-site"));
        assert!(claims(&["s1"], &[]).covers_site("s1"));
        assert!(!claims(&["s1"], &[]).covers_site("s2"));
        assert!(!claims(&[], &[]).covers_site("s1"));
    }

    #[test]
    fn empty_categories_cover_all() {
        assert!(claims(&[], &[]).covers_category("elderly-care"));
        assert!(!claims(&[], &["childcare"]).covers_category("elderly-care"));
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
