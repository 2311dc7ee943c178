//! Tests of the engine: the progress route a lane request keeps in its entry.

use std::sync::Mutex;

use futures::future::BoxFuture;
use rmcp::{
    ErrorData,
    model::{ClientResult, ProgressNotificationParam, ServerNotification, ServerRequest},
};
use tokio::sync::mpsc;

use super::*;
use crate::upstream::{
    ClientLink,
    tap::{self, Tapped},
};

struct NoUpstream;

impl UpstreamCanceller for NoUpstream {
    fn cancel_upstream(&self, _id: RequestId, _reason: &str) {}
}

/// Records what a request ends with.
struct Capture(mpsc::UnboundedSender<Result<ToolAnswer, UpstreamError>>);

impl AnswerSink for Capture {
    fn deliver(self: Box<Self>, outcome: Result<ToolAnswer, UpstreamError>) {
        let _ = self.0.send(outcome);
    }
}

/// A client that records the progress tokens it is sent.
#[derive(Default)]
struct Client(Mutex<Vec<ProgressToken>>);

impl Client {
    fn progress(&self) -> Vec<ProgressToken> {
        self.0.lock().unwrap().clone()
    }
}

impl ClientLink for Client {
    fn request(
        &self,
        _from: &str,
        _request: ServerRequest,
        _cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<ClientResult, ErrorData>> {
        Box::pin(async { Err(ErrorData::internal_error("no requests in this test", None)) })
    }

    fn notify(&self, _from: &str, notification: ServerNotification) -> BoxFuture<'_, ()> {
        if let ServerNotification::ProgressNotification(progress) = notification {
            self.0.lock().unwrap().push(progress.params.progress_token);
        }
        Box::pin(async {})
    }
}

/// An answer line to request `id` with an empty successful result.
fn answered(id: i64) -> ResponseLine {
    let head = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"#);
    let result = r#"{"content":[]}"#;
    let line = format!("{head}{result}}}").into_bytes();
    ResponseLine { line, result: Some(head.len()..head.len() + result.len()), id_at: None }
}

#[tokio::test]
async fn a_lane_requests_progress_is_routed_from_its_entry_and_reaches_the_client_before_its_outcome() {
    let engine = Arc::new(InFlight::default());
    let routes = Arc::new(ProgressRoutes::default());
    let (tapped, forwarder) = tap::queue();
    let lane: Arc<dyn UpstreamCanceller> = Arc::new(NoUpstream);
    let context = InFlightContext {
        name: "up".into(),
        routes: routes.clone(),
        tapped: tapped.clone(),
        timeout: Duration::from_secs(60),
        broken: CancellationToken::new(),
    };
    engine.attach(context, Some(Arc::downgrade(&lane)), Box::new(NoUpstream));
    let client_token = ProgressToken(NumberOrString::String("p1".into()));
    let upstream_token = |id| ProgressToken(NumberOrString::Number(id));
    let (outcome_tx, mut outcomes) = mpsc::unbounded_channel();
    let send = |client_token: Option<ProgressToken>| {
        let id = engine.next_id().expect("an open engine");
        let sink = Box::new(Capture(outcome_tx.clone()));
        assert!(engine.insert(id, sink, None, client_token).is_ok());
        id
    };

    // In flight: its progress goes to the client's token; a request whose client asked
    // for none, and an id not in flight, have no route.
    let routed = send(Some(client_token.clone()));
    let quiet = send(None);
    assert_eq!(engine.lane_progress(&upstream_token(routed)), Some(client_token.clone()));
    assert_eq!(engine.lane_progress(&upstream_token(quiet)), None);
    assert_eq!(engine.lane_progress(&upstream_token(routed + 100)), None);

    // Answered while its progress is still queued: the outcome waits for that progress,
    // and the route stays until it is forwarded.
    let progress = ProgressNotificationParam::new(upstream_token(routed), 1.0);
    assert!(tapped.push(Tapped::Progress(progress)).await.is_ok());
    assert!(engine.complete(|| Some((routed, ())), |()| answered(routed)));
    assert!(outcomes.try_recv().is_err(), "the outcome waits for the progress queued before it");
    assert_eq!(engine.lane_progress(&upstream_token(routed)), Some(client_token.clone()));
    let client = Arc::new(Client::default());
    tokio::spawn(progress::forward_tapped("up".into(), client.clone(), routes, forwarder));
    assert!(matches!(outcomes.recv().await, Some(Ok(_))));
    assert_eq!(client.progress(), [client_token], "the progress reached the client first");
    assert_eq!(engine.lane_progress(&upstream_token(routed)), None, "then the route is forgotten");

    // Answered with nothing queued: the outcome goes at once.
    assert!(engine.complete(|| Some((quiet, ())), |()| answered(quiet)));
    assert!(matches!(outcomes.try_recv(), Ok(Ok(_))));
}
