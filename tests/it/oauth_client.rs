//! Signing in from inside an MCP client, on a machine without a display (an SSH
//! session, no browser command): the `<ns>__sign_in` placeholder tool, its URL (or device
//! code), URL-mode elicitation, paste-back through the tool, the real tools replacing
//! the placeholder with `tools/list_changed`, and the error result for a real tool
//! meanwhile. Against the fixture authorization server.

// `ClientInfo` is the name the rest of the harness uses.
#![allow(deprecated)]

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    ClientHandler, ErrorData, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResult, ClientCapabilities, ClientInfo, ElicitRequestParams,
        ElicitResult, ElicitationAction, ElicitationCapability, FormElicitationCapability, Implementation,
        ProtocolVersion, UrlElicitationCapability,
    },
    service::{NotificationContext, RequestContext, RunningService},
    transport::TokioChildProcess,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{oauth::World, support::*};

/// What the client saw: `tools/list_changed` notifications and URL-mode elicitations.
#[derive(Default)]
struct Seen {
    tools_changed: usize,
    url_elicitations: Vec<String>,
}

/// An MCP client that declares URL-mode elicitation (or not).
#[derive(Clone, Default)]
struct UrlClient {
    seen: Arc<Mutex<Seen>>,
    declare_url: bool,
}

impl ClientHandler for UrlClient {
    fn get_info(&self) -> ClientInfo {
        let mut elicitation = ElicitationCapability::new().with_form(FormElicitationCapability::default());
        if self.declare_url {
            elicitation = elicitation.with_url(UrlElicitationCapability::default());
        }
        let capabilities = ClientCapabilities::builder().enable_elicitation_with(elicitation).build();
        ClientInfo::new(capabilities, Implementation::new("foxxy-url-client", "1.0"))
            .with_protocol_version(ProtocolVersion::V_2025_06_18)
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let ElicitRequestParams::UrlElicitationParams { url, .. } = params {
            self.seen.lock().expect("seen").url_elicitations.push(url);
        }
        Ok(ElicitResult::new(ElicitationAction::Accept))
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.seen.lock().expect("seen").tools_changed += 1;
    }
}

/// `foxxy-bridge stdio` on a headless machine reached over SSH, driven by `client`.
async fn headless_stdio(world: &World, client: UrlClient) -> RunningService<RoleClient, UrlClient> {
    let mut command = world.env.command();
    command
        .env("FOXXY_BRIDGE_BROWSER", "none")
        .env("SSH_CONNECTION", "10.0.0.2 50000 10.0.0.1 22")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .arg("stdio");
    let (process, _) =
        TokioChildProcess::builder(command).stderr(Stdio::null()).spawn().expect("spawn foxxy-bridge stdio");
    tokio::time::timeout(Duration::from_secs(10), client.serve(process))
        .await
        .expect("initialize within 10 s")
        .expect("initialize succeeds")
}

async fn names(service: &RunningService<RoleClient, UrlClient>) -> Vec<String> {
    let tools = service.list_all_tools().await.expect("tools/list");
    tools.iter().map(|tool| tool.name.to_string()).collect()
}

/// Poll `tools/list` until `condition` holds (bounded); the last list.
async fn wait_for_names(
    service: &RunningService<RoleClient, UrlClient>,
    condition: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let names = names(service).await;
        if condition(&names) {
            return names;
        }
        assert!(tokio::time::Instant::now() < deadline, "tools/list never matched: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call_tool(
    service: &RunningService<RoleClient, UrlClient>,
    name: &str,
    arguments: Value,
) -> CallToolResult {
    let mut params = CallToolRequestParams::new(name.to_owned());
    if let Value::Object(arguments) = arguments {
        params = params.with_arguments(arguments);
    }
    tokio::time::timeout(Duration::from_secs(40), service.call_tool(params))
        .await
        .expect("tools/call answered")
        .expect("tools/call")
}

/// The first `http…` word of `text` that contains `part`.
fn url_in(text: &str, part: &str) -> String {
    text.split_whitespace()
        .find(|word| word.starts_with("http") && word.contains(part))
        .unwrap_or_else(|| panic!("no URL with `{part}` in {text}"))
        .trim_end_matches(['.', ',', ')'])
        .to_owned()
}

/// GET `url` (plain http on loopback); the status code and the `Location` header.
async fn get(url: &str) -> (u16, Option<String>) {
    let parsed = url::Url::parse(url).expect("url");
    let authority = format!("{}:{}", parsed.host_str().unwrap_or_default(), parsed.port().unwrap_or(80));
    let path = &url[url.find(parsed.path()).unwrap_or(0)..];
    let mut stream = tokio::net::TcpStream::connect(&authority).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let location = response
        .lines()
        .find_map(|line| line.strip_prefix("location: ").or_else(|| line.strip_prefix("Location: ")))
        .map(|value| value.trim().to_owned());
    (status, location)
}

#[tokio::test]
async fn the_placeholder_signs_in_by_url_elicitation_and_paste_back() {
    let world = World::start(&[], Some(json!({})), json!({ "startupTimeout": 2 })).await;
    let client = UrlClient { declare_url: true, ..UrlClient::default() };
    let service = headless_stdio(&world, client.clone()).await;

    let tools = service.list_all_tools().await.expect("tools/list");
    let placeholder =
        tools.iter().find(|tool| tool.name == "sec__sign_in").expect("the placeholder is listed");
    assert_eq!(placeholder.title.as_deref(), Some("Sign in to sec"));
    assert!(placeholder.description.as_deref().unwrap_or_default().contains("127.0.0.1"), "{placeholder:?}");
    assert!(!tools.iter().any(|tool| tool.name == "sec__echo"), "{tools:?}");

    // A real tool meanwhile: an error result that names the placeholder.
    let early = call_tool(&service, "sec__echo", json!({ "message": "too early" })).await;
    assert_eq!(early.is_error, Some(true), "{early:?}");
    assert!(text_of(&early).contains("sec__sign_in"), "{}", text_of(&early));

    let answer = call_tool(&service, "sec__sign_in", json!({})).await;
    assert_ne!(answer.is_error, Some(true), "{answer:?}");
    let url = url_in(&text_of(&answer), "/authorize?");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.seen.lock().expect("seen").url_elicitations.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no URL-mode elicitation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(client.seen.lock().expect("seen").url_elicitations, std::slice::from_ref(&url));
    assert_eq!(world.opens(), 0, "no browser on a headless machine");

    // The browser signs in elsewhere and ends on an address this machine serves; the
    // user pastes it back through the tool.
    let (status, location) = get(&url).await;
    assert_eq!(status, 302, "{url}");
    let redirect = location.expect("Location");
    let baseline = client.seen.lock().expect("seen").tools_changed;
    let done = call_tool(&service, "sec__sign_in", json!({ "redirect_url": redirect })).await;
    assert_ne!(done.is_error, Some(true), "{done:?}");
    assert!(text_of(&done).contains("Signed in"), "{}", text_of(&done));

    let names = wait_for_names(&service, |names| names.iter().any(|name| name == "sec__echo")).await;
    assert!(!names.iter().any(|name| name == "sec__sign_in"), "{names:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.seen.lock().expect("seen").tools_changed <= baseline {
        assert!(tokio::time::Instant::now() < deadline, "no tools/list_changed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let echo = call_tool(&service, "sec__echo", json!({ "message": "signed in" })).await;
    assert_eq!(text_of(&echo), "sec: signed in");
    let _ = tokio::time::timeout(Duration::from_secs(5), service.cancel()).await;
}

#[tokio::test]
async fn without_url_elicitation_the_placeholder_gives_the_device_code() {
    // The automatic sign-in gives up after 1 s; the paused upstream keeps the placeholder,
    // and the user's call still signs in, with the device grant the server offers.
    let world =
        World::start(&["--device-flow"], Some(json!({})), json!({ "startupTimeout": 2, "signInTimeout": 1 }))
            .await;
    let client = UrlClient::default();
    let service = headless_stdio(&world, client.clone()).await;
    wait_for_names(&service, |names| names.iter().any(|name| name == "sec__sign_in")).await;
    world.env.wait_log("upstream is waiting for a sign-in").await;

    let answer = call_tool(&service, "sec__sign_in", json!({})).await;
    let text = text_of(&answer);
    assert_ne!(answer.is_error, Some(true), "{text}");
    assert!(text.contains("enter the code USER-"), "{text}");
    assert!(client.seen.lock().expect("seen").url_elicitations.is_empty(), "not declared: not sent");

    // Approving the device code (the verification page with the code) signs in.
    let (status, _) = get(&url_in(&text, "user_code=")).await;
    assert_eq!(status, 200);
    wait_for_names(&service, |names| {
        names.iter().any(|name| name == "sec__echo") && !names.iter().any(|name| name == "sec__sign_in")
    })
    .await;
    let echo = call_tool(&service, "sec__echo", json!({ "message": "device" })).await;
    assert_eq!(text_of(&echo), "sec: device");
    let _ = tokio::time::timeout(Duration::from_secs(5), service.cancel()).await;
}

#[tokio::test]
async fn after_a_logout_the_placeholder_is_listed_in_search_mode_and_still_signs_in() {
    let world =
        World::start(&[], Some(json!({})), json!({ "startupTimeout": 2, "toolMode": "search" })).await;
    assert_eq!(world.run(&["oauth", "login", "sec"]).await.code, Some(0));
    assert_eq!(world.run(&["oauth", "logout", "sec"]).await.code, Some(0));
    let service = headless_stdio(&world, UrlClient::default()).await;

    // The remembered logout pauses automatic sign-ins; the placeholder is listed next to
    // the meta-tools, not only found by a search.
    let names = wait_for_names(&service, |names| names.iter().any(|name| name == "sec__sign_in")).await;
    assert!(names.iter().any(|name| name == "foxxy__search_tools"), "{names:?}");
    let through = call_tool(
        &service,
        "foxxy__call_tool",
        json!({ "name": "sec__echo", "arguments": { "message": "too early" } }),
    )
    .await;
    assert_eq!(through.is_error, Some(true), "{through:?}");
    assert!(text_of(&through).contains("sec__sign_in"), "{}", text_of(&through));

    // A sign-in the user asks for runs although automatic ones are paused.
    let answer = call_tool(&service, "sec__sign_in", json!({})).await;
    let url = url_in(&text_of(&answer), "/authorize?");
    let (status, location) = get(&url).await;
    assert_eq!(status, 302, "{url}");
    let code = url::Url::parse(&location.expect("Location"))
        .expect("redirect")
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, value)| value.into_owned())
        .expect("code");
    let done = call_tool(&service, "sec__sign_in", json!({ "code": code })).await;
    assert!(text_of(&done).contains("Signed in"), "{}", text_of(&done));
    wait_for_names(&service, |names| !names.iter().any(|name| name == "sec__sign_in")).await;
    let echo = call_tool(
        &service,
        "foxxy__call_tool",
        json!({ "name": "sec__echo", "arguments": { "message": "back" } }),
    )
    .await;
    assert_eq!(text_of(&echo), "sec: back");
    assert_eq!(world.opens(), 1, "only the shell login opened a browser");
    let _ = tokio::time::timeout(Duration::from_secs(5), service.cancel()).await;
}

#[tokio::test]
async fn a_logout_shows_the_placeholder_in_a_running_bridge() {
    let world = World::start(&[], Some(json!({})), json!({})).await;
    assert_eq!(world.run(&["oauth", "login", "sec"]).await.code, Some(0));
    let client = UrlClient::default();
    let service = headless_stdio(&world, client.clone()).await;
    wait_for_names(&service, |names| names.iter().any(|name| name == "sec__echo")).await;
    let baseline = client.seen.lock().expect("seen").tools_changed;

    assert_eq!(world.run(&["oauth", "logout", "sec"]).await.code, Some(0));
    let names = wait_for_names(&service, |names| names.iter().any(|name| name == "sec__sign_in")).await;
    assert!(!names.iter().any(|name| name == "sec__echo"), "{names:?}");
    assert!(client.seen.lock().expect("seen").tools_changed > baseline, "tools/list_changed");
    let answer = call_tool(&service, "sec__sign_in", json!({})).await;
    assert!(text_of(&answer).contains("/authorize?"), "{}", text_of(&answer));
    assert_eq!(world.opens(), 1, "no browser after the logout");
    let _ = tokio::time::timeout(Duration::from_secs(5), service.cancel()).await;
}
