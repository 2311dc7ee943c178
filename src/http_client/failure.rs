//! The wording of HTTP failures: one line a user can act on, from any error in rmcp's
//! or reqwest's chains. The first error in the chain that is recognised (a closed
//! connection, a refused one, TLS, DNS, an HTTP status, a body over the size limit)
//! decides the text; rmcp's wrappers, whose messages name Rust types, are skipped
//! when no error is recognised and the outermost readable message is used.

use std::error::Error as StdError;

use rmcp::{service::ClientInitializeError, transport::streamable_http_client::StreamableHttpError};

/// What a dropped connection is called, whichever layer noticed it.
const CLOSED: &str = "the server closed the connection (did it stop or restart?)";

/// A one-line, actionable description of why connecting to or talking to a remote
/// upstream failed, from any error in rmcp's or reqwest's chains.
pub fn describe_http_error(error: &(dyn StdError + 'static)) -> String {
    let mut current = Some(error);
    let mut outermost = None;
    while let Some(error) = current {
        if let Some(text) = describe_one(error) {
            return text;
        }
        // rmcp's wrappers name Rust types ("Transport [TapTransport<…>] error"): the
        // fallback text starts below them.
        if !error.is::<rmcp::transport::DynamicTransportError>() && !error.is::<rmcp::ServiceError>() {
            outermost.get_or_insert_with(|| error.to_string());
        }
        current = next_source(error);
    }
    outermost.unwrap_or_else(|| "unknown error".to_owned())
}

/// Like [`describe_http_error`], for an initialize failure (whose transport error is not linked
/// as its `source`).
pub fn describe_initialize(error: &ClientInitializeError) -> String {
    match error {
        ClientInitializeError::TransportError { error, .. } => describe_http_error(error.error.as_ref()),
        ClientInitializeError::ConnectionClosed(_) => {
            "the server closed the connection during initialize".to_owned()
        }
        ClientInitializeError::JsonRpcError(error) => {
            format!("the server rejected initialize: {}", error.message)
        }
        other => describe_http_error(other),
    }
}

fn next_source<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(dynamic) = error.downcast_ref::<rmcp::transport::DynamicTransportError>() {
        return Some(dynamic.error.as_ref());
    }
    error.source()
}

fn describe_one(error: &(dyn StdError + 'static)) -> Option<String> {
    match error.downcast_ref::<rmcp::ServiceError>() {
        Some(rmcp::ServiceError::TransportClosed) => return Some(CLOSED.to_owned()),
        Some(rmcp::ServiceError::Cancelled { .. }) => {
            return Some("the session ended before the upstream answered".to_owned());
        }
        _ => {}
    }
    if let Some(http) = error.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
        return describe_streamable(http);
    }
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        // TLS failures arrive as I/O errors wrapping rustls's error.
        if let Some(inner) = io.get_ref()
            && let Some(text) = describe_one(inner)
        {
            return Some(text);
        }
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                Some("connection refused (is the server running, and is the URL's port right?)".to_owned())
            }
            std::io::ErrorKind::TimedOut => Some("the connection timed out".to_owned()),
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof => Some(CLOSED.to_owned()),
            _ => None,
        };
    }
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(format!(
            "TLS handshake failed: {tls} (for a development server with a self-signed certificate, set `verify_ssl: false`)"
        ));
    }
    if let Some(reqwest) = error.downcast_ref::<reqwest::Error>() {
        if reqwest.is_timeout() {
            return Some("the request timed out".to_owned());
        }
        if let Some(status) = reqwest.status() {
            return Some(describe_status(status.as_u16(), None));
        }
        // DNS and certificate failures may carry no typed error: recognise the wording.
        let chain = chain_text(error);
        if chain.contains("certificate")
            || chain.contains("tls handshake")
            || chain.contains("InvalidCertificate")
        {
            let detail = match chain.find("invalid peer certificate") {
                Some(start) => &chain[start..],
                None => chain.rsplit(": ").next().unwrap_or("the certificate is not trusted"),
            };
            return Some(format!(
                "TLS handshake failed: {detail} (for a development server with a self-signed certificate, set `verify_ssl: false`)"
            ));
        }
        let lowercase = chain.to_lowercase();
        if ["connection closed", "connection reset", "broken pipe", "incomplete message"]
            .iter()
            .any(|words| lowercase.contains(words))
        {
            return Some(CLOSED.to_owned());
        }
        if chain.contains("dns error") || chain.contains("failed to lookup address") {
            let host = reqwest.url().and_then(|url| url.host_str().map(str::to_owned)).unwrap_or_default();
            return Some(format!("cannot resolve the host name `{host}` (DNS lookup failed)"));
        }
    }
    None
}

fn describe_streamable(error: &StreamableHttpError<reqwest::Error>) -> Option<String> {
    Some(match error {
        StreamableHttpError::Client(inner) => return describe_one(inner).or_else(|| describe_deeper(inner)),
        StreamableHttpError::UnexpectedContentType(content_type) => format!(
            "the server answered with `{}`, which is not MCP (is the URL right? is it a login page?)",
            content_type.as_deref().unwrap_or("no content type")
        ),
        StreamableHttpError::UnexpectedServerResponse(text) => {
            let status =
                text.strip_prefix("HTTP ").and_then(|rest| rest.get(..3)).and_then(|code| code.parse().ok());
            match status {
                Some(status) => describe_status(status, Some(text)),
                None => format!("unexpected answer from the server: {}", shorten(text)),
            }
        }
        StreamableHttpError::HttpStatus(status) => describe_status(status.status, None),
        StreamableHttpError::AuthRequired(_) => describe_status(401, None),
        StreamableHttpError::InsufficientScope(_) => describe_status(403, None),
        StreamableHttpError::Deserialize(error) => {
            format!("the server sent something that is not JSON-RPC ({error})")
        }
        StreamableHttpError::ResponseBodyTooLarge { max_size } => {
            format!("the server's response is larger than {max_size} bytes (`bridge.maxMessageBytes`)")
        }
        _ => return None,
    })
}

fn describe_deeper(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut current = error.source();
    while let Some(error) = current {
        if let Some(text) = describe_one(error) {
            return Some(text);
        }
        current = error.source();
    }
    None
}

/// What an HTTP status means for the user.
pub fn describe_status(status: u16, detail: Option<&str>) -> String {
    match status {
        401 => {
            "the server requires authorization (HTTP 401); configure `oauth` for it, or check its `headers`"
                .to_owned()
        }
        403 => "the server refused access (HTTP 403); check the credentials or scopes".to_owned(),
        404 => "nothing at that URL (HTTP 404); check the `url`".to_owned(),
        429 => "the server is rate limiting (HTTP 429); retrying later".to_owned(),
        502..=504 => {
            format!("HTTP {status} from a proxy or gateway in front of the server (is the server up?)")
        }
        _ => match detail {
            Some(detail) => format!("HTTP error: {}", shorten(detail)),
            None => format!("HTTP {status}"),
        },
    }
}

fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(error) = current {
        text.push_str(": ");
        text.push_str(&error.to_string());
        current = error.source();
    }
    text
}

fn shorten(text: &str) -> String {
    const LIMIT: usize = 200;
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= LIMIT {
        return flat;
    }
    let kept: String = flat.chars().take(LIMIT).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_connection_is_described_as_such() {
        for kind in [std::io::ErrorKind::ConnectionReset, std::io::ErrorKind::BrokenPipe] {
            assert_eq!(describe_http_error(&std::io::Error::from(kind)), CLOSED);
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(describe_http_error(&refused).starts_with("connection refused"));
        // rmcp's transport wrapper, which names Rust types, is skipped in the fallback.
        let inner = std::io::Error::other("something odd");
        let wrapped = rmcp::ServiceError::TransportSend(rmcp::transport::DynamicTransportError::new::<
            rmcp::transport::async_rw::AsyncRwTransport<rmcp::RoleClient, tokio::io::Empty, tokio::io::Sink>,
            _,
        >(inner));
        assert_eq!(describe_http_error(&wrapped), "something odd");
    }
}
