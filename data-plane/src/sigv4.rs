//! AWS SigV4 signing of Bedrock requests with the maintained `aws-sigv4` crate: service
//! `bedrock`, the region of the endpoint, the canonical URI double-encoded (a model id's `%3A`
//! becomes `%253A`, edge 14), and only `host`, `content-type`, `x-amz-date` and
//! `x-amz-security-token` signed — never headers an intermediary may change (edge 15).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign as aws_sign};
use aws_sigv4::sign::v4;

pub struct Keys<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

/// The headers to add to a request (`authorization`, `x-amz-date`, and `x-amz-security-token`
/// with temporary credentials).
pub fn sign(
    url: &str,
    content_type: &str,
    body: &[u8],
    region: &str,
    keys: &Keys<'_>,
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid Bedrock URL: {e}"))?;
    let host = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .ok_or("the Bedrock URL has no host")?;
    let identity = Credentials::new(
        keys.access_key_id,
        keys.secret_access_key,
        keys.session_token.map(str::to_string),
        None,
        "aiproxy",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let headers = [("host", host.as_str()), ("content-type", content_type)];
    let signable =
        SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))
            .map_err(|e| e.to_string())?;
    let (instructions, _signature) = aws_sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        // 20250101T000000Z
        let _ = s;
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_735_689_600)
    }

    #[test]
    fn matches_the_sheets_test_vector() {
        let keys = Keys {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: None,
        };
        let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
        let body = br#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#;
        assert_eq!(body.len(), 56);
        let h = sign(
            url,
            "application/json",
            body,
            "us-east-1",
            &keys,
            at("20250101T000000Z"),
        )
        .unwrap();
        let get = |k: &str| {
            h.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-date"), Some("20250101T000000Z"));
        assert_eq!(
            get("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=db14fde81dd9dc90455352ed1921f98b151795af03aacc8312c89b08b8d50a36"
            )
        );
        assert_eq!(get("x-amz-security-token"), None);
    }

    #[test]
    fn session_tokens_are_sent_and_signed_and_arns_sign() {
        let keys = Keys {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "secret",
            session_token: Some("SESSIONTOKEN"),
        };
        let url = format!(
            "https://bedrock-runtime.us-west-2.amazonaws.com{}",
            llm::bedrock::path(
                "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
                true
            )
        );
        let h = sign(&url, "application/json", b"{}", "us-west-2", &keys, at("x")).unwrap();
        let auth = h
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1
            .clone();
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{auth}"
        );
        assert!(auth.contains("/us-west-2/bedrock/aws4_request"));
        assert!(
            h.iter()
                .any(|(n, v)| n == "x-amz-security-token" && v == "SESSIONTOKEN")
        );
    }
}
