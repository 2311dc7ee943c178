//! A [`Bridge`] that serves one upstream as that server itself: the hub's session with
//! each attached bridge.
//!
//! Such a bridge has one upstream and no namespaces, so names, URIs and tool objects
//! are the upstream's own. What differs from an aggregating bridge is `initialize`: it
//! is answered only once the upstream is up, with the upstream's own protocol version,
//! capabilities and instructions, so that the bridge on the other side sees the server
//! as if it ran it itself. An upstream that cannot start makes `initialize` fail with
//! the cause, which the other side reports as its own failure to connect.

use std::{sync::Arc, time::Duration};

use rmcp::{
    ErrorData,
    model::{Implementation, InitializeRequestParams, InitializeResult},
};
use tokio::time::Instant;

use super::{Bridge, link::DownstreamLink};
use crate::{
    config::Settings,
    upstream::{NEEDS_SIGN_IN, Status, Upstreams},
};

/// How long an upstream waiting for a sign-in may take to notice new tokens.
const SIGN_IN_SETTLE: Duration = Duration::from_millis(1500);
/// Waited beyond the upstream's own `timeout`: its supervisor reports the timeout itself.
const GRACE: Duration = Duration::from_secs(1);

impl Bridge {
    /// The bridge that serves `upstream` of `settings` (its only server, without
    /// namespaces) as that server itself, over the upstreams `connect` makes.
    pub fn for_one_upstream(
        settings: Arc<Settings>,
        upstream: Arc<str>,
        connect: impl FnOnce(Arc<DownstreamLink>) -> Arc<dyn Upstreams>,
    ) -> Bridge {
        Self::assemble(settings, None, Some(upstream), connect)
    }

    /// Whether the upstream's answers to tool calls go to the client as the upstream
    /// wrote them, with the client's request ids: so in a bridge made by
    /// [`Bridge::for_one_upstream`], whose client (the bridge on the other side of the
    /// hub) reads and checks each answer itself, as it would the server's own.
    pub(crate) fn relays_answers_as_written(&self) -> bool {
        self.serves_as.is_some()
    }

    /// The answer to `initialize` of a bridge made by [`Bridge::for_one_upstream`]: the
    /// upstream's own, once it is up.
    pub(super) async fn initialize_as(
        &self,
        upstream: &str,
        request: &InitializeRequestParams,
    ) -> Result<InitializeResult, ErrorData> {
        self.begin();
        let timeout = self
            .settings
            .borrow()
            .server(upstream)
            .map_or(Duration::from_secs(60), |server| server.connect_timeout);
        let deadline = Instant::now() + timeout + GRACE;
        let mut view = self.upstreams.view();
        // A bridge that saw new tokens asks at once; this process sees them within its
        // own poll of the token cache, so a sign-in wait is answered only after that.
        let sign_in_settled = Instant::now() + SIGN_IN_SETTLE;
        loop {
            let outcome = {
                let view = view.borrow_and_update();
                match view.get(upstream) {
                    Some(state) if state.is_ready() => state.catalog.clone().map(Ok),
                    Some(state) if state.settled => match &state.status {
                        Status::Connecting | Status::SigningIn => None,
                        Status::NeedsSignIn(_) if Instant::now() < sign_in_settled => None,
                        other => Some(Err((
                            other.error().unwrap_or("it is not connected").to_owned(),
                            matches!(other, Status::NeedsSignIn(_)),
                        ))),
                    },
                    _ => None,
                }
            };
            match outcome {
                Some(Ok(catalog)) => {
                    let protocol_version = serde_json::from_value(catalog.protocol_version.clone().into())
                        .unwrap_or_else(|_| request.protocol_version.clone());
                    let mut result = InitializeResult::new(catalog.capabilities.clone())
                        .with_server_info(Implementation::new(upstream, env!("CARGO_PKG_VERSION")))
                        .with_protocol_version(protocol_version);
                    result.instructions = catalog.instructions.clone();
                    return Ok(result);
                }
                Some(Err((cause, needs_sign_in))) => {
                    // The other side waits for tokens instead of counting a failure.
                    let data = needs_sign_in.then(|| serde_json::json!({ NEEDS_SIGN_IN: true }));
                    return Err(ErrorData::internal_error(
                        format!("`{upstream}` did not start: {cause}"),
                        data,
                    ));
                }
                None => {}
            }
            tokio::select! {
                changed = view.changed() => if changed.is_err() {
                    return Err(ErrorData::internal_error(format!("`{upstream}` is shutting down"), None));
                },
                () = tokio::time::sleep_until(sign_in_settled), if Instant::now() < sign_in_settled => {}
                () = tokio::time::sleep_until(deadline) => {
                    let seconds = timeout.as_secs();
                    return Err(ErrorData::internal_error(
                        format!("`{upstream}` did not start within {seconds} s"),
                        None,
                    ));
                }
            }
        }
    }
}
