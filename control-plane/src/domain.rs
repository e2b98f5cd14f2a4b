//! Validated domain types: ids, names, roles, provider credentials and their metadata.

pub mod ids;
pub mod names;
pub mod provider;
pub mod role;
pub mod time;

pub use ids::*;
pub use role::{KeyRole, OrgRole};
