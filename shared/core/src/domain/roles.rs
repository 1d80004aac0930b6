//! Membership roles in a residence.

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the residence; may do everything.
    Owner,
    /// Joined; may read and write tasks and records.
    Member,
    /// Joined read-only.
    Viewer,
}

impl Role {
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Role::Owner),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }
    /// May change the residence's tasks and records.
    pub fn can_write(self) -> bool {
        !matches!(self, Role::Viewer)
    }
}
