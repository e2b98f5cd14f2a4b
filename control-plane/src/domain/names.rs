//! Validation of human-chosen names (orgs, projects, keys, credentials) and emails.

use crate::error::ApiError;

/// A display name: trimmed, 1..=max characters, no control characters.
pub fn name(field: &str, raw: &str, max: usize) -> Result<String, ApiError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    if s.chars().count() > max {
        return Err(ApiError::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s.to_string())
}

/// An organization name: also used in `x-bt-org-name`, so restricted to a header-safe set.
pub fn org_name(raw: &str) -> Result<String, ApiError> {
    let s = name("name", raw, 64)?;
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
    {
        return Err(ApiError::validation(
            "name",
            "may contain only letters, digits, spaces, '-', '_' and '.'",
        ));
    }
    Ok(s)
}

/// A credential name: used in `x-bt-endpoint-name` and `x-bt-used-endpoint` headers.
pub fn credential_name(raw: &str) -> Result<String, ApiError> {
    let s = name("name", raw, 128)?;
    if !s.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return Err(ApiError::validation(
            "name",
            "may contain only printable ASCII characters",
        ));
    }
    Ok(s)
}

/// An email address, lowercased; a light syntax check (one '@', a dot in the domain).
pub fn email(raw: &str) -> Result<String, ApiError> {
    let s = raw.trim().to_lowercase();
    let ok = s.len() <= 254
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        });
    if ok {
        Ok(s)
    } else {
        Err(ApiError::validation("email", "not a valid email address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name("name", "  x ", 10).unwrap(), "x");
        assert!(name("name", "   ", 10).is_err());
        assert!(name("name", "a\u{0}b", 10).is_err());
        assert!(name("name", &"a".repeat(11), 10).is_err());
        assert!(org_name("acme corp").is_ok());
        assert!(org_name("acme/corp").is_err());
        assert!(credential_name("OPENAI_API_KEY").is_ok());
        assert!(credential_name("é").is_err());
        assert_eq!(email(" Alice@Example.COM ").unwrap(), "alice@example.com");
        assert!(email("nope").is_err());
        assert!(email("a@b@c").is_err());
    }
}
