//! Ids are UUIDv7 strings (time-ordered, so they page well), wrapped in one newtype per kind so
//! an org id cannot be passed where a project id is expected.

use crate::error::ApiError;

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn generate() -> Self {
                $name(uuid::Uuid::now_v7().to_string())
            }

            /// Parses an id from a path or body; malformed ids are a 400 naming the field.
            pub fn parse(field: &str, s: &str) -> Result<Self, ApiError> {
                match uuid::Uuid::parse_str(s) {
                    Ok(u) => Ok($name(u.hyphenated().to_string())),
                    Err(_) => Err(ApiError::validation(field, concat!("not a valid ", $what, " id"))),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(OrgId, "organization");
id_type!(ProjectId, "project");
id_type!(UserId, "user");
id_type!(ApiKeyId, "API key");
id_type!(CredentialId, "provider");
id_type!(LogId, "log");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_normalise() {
        let id = OrgId::generate();
        assert_eq!(OrgId::parse("org_id", &id.0).unwrap(), id);
        assert_eq!(OrgId::parse("org_id", &id.0.to_uppercase()).unwrap(), id);
        let e = ProjectId::parse("project_id", "../etc").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("project_id"));
    }
}
