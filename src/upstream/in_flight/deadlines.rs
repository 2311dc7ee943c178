//! The deadline sweeper of a session's requests in flight: one task per session that
//! times out requests quiet for longer than their timeout.

use std::sync::Arc;

use tokio::time::Instant;

use super::{InFlight, Outcome};
use crate::upstream::UpstreamError;

/// Time out requests that have been quiet for their timeout, until the session ends.
/// It sleeps until the earliest deadline, or, with no request in flight, until one is
/// sent.
pub async fn sweep(engine: Arc<InFlight>) {
    let Some(context) = engine.context() else { return };
    loop {
        let (expired, next) = {
            let mut table = engine.table();
            if table.closed {
                return;
            }
            let now = Instant::now();
            let expired: Vec<_> = table.requests.extract_if(|_, request| request.deadline <= now).collect();
            let expired: Vec<_> =
                expired.into_iter().map(|(id, request)| table.ending(id, request, context)).collect();
            let next = table.requests.values().map(|request| request.deadline).min();
            table.sweeper_idle = next.is_none();
            (expired, next)
        };
        for ending in expired {
            engine.cancel_upstream(ending.id, &ending.request, "request timeout");
            let seconds = ending.request.timeout.as_secs();
            let timeout = UpstreamError::Timeout { name: context.name.to_string(), seconds };
            engine.end(ending, Outcome::Made(Err(timeout)));
        }
        // A close wakes it too, so it lets go of the engine at once.
        match next {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = engine.sweeper.notified() => {}
                }
            }
            None => engine.sweeper.notified().await,
        }
    }
}
