//! Sign-ins the user asks for from the MCP client ([`Upstreams::sign_in`]): start one in
//! the background (or join the one under way), and answer with what the user must do as
//! soon as the sign-in knows it; or hand a pasted address to the sign-in waiting for it.
//!
//! The sign-in itself is the upstream's [`TokenSource`](crate::oauth::TokenSource); this
//! file only drives it and tells the supervisor to connect once it succeeded.
//!
//! [`Upstreams::sign_in`]: super::Upstreams::sign_in

use std::{sync::Arc, time::Duration};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{SignInStep, UpstreamError};
use crate::oauth::{TokenSource, prompt::SignInPrompt};

/// How long a call waits for the sign-in to show its URL, or for a pasted address to
/// be checked and exchanged.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// One upstream, as a sign-in the user asked for needs it.
pub struct SignInTarget {
    pub name: String,
    /// Its token source; `None` when it does not use OAuth.
    pub source: Option<Arc<TokenSource>>,
    /// Fires when the upstream stops.
    pub cancel: CancellationToken,
    /// Tells its supervisor to connect now.
    pub connect_now: Box<dyn Fn() + Send + Sync>,
}

/// Start or join the sign-in of `target`, or hand it `pasted`. A started sign-in runs on
/// `tasks` until it ends or the upstream stops.
pub async fn sign_in(
    target: SignInTarget,
    tasks: &TaskTracker,
    pasted: Option<String>,
) -> Result<SignInStep, UpstreamError> {
    let failed = |cause: String| UpstreamError::SignIn { name: target.name.clone(), cause };
    let Some(source) = target.source.clone() else {
        return Err(failed("it does not use OAuth".to_owned()));
    };
    let board = source.board();
    if let Some(pasted) = pasted {
        let mut ends = board.watch_ends();
        ends.mark_unchanged();
        if !board.paste(pasted) {
            return Err(failed(
                "no sign-in is waiting for an address or a code; call the tool without arguments to start one"
                    .to_owned(),
            ));
        }
        return match tokio::time::timeout(ANSWER_WAIT, ends.changed()).await {
            Ok(Ok(())) => match ends.borrow().1.clone() {
                None => {
                    (target.connect_now)();
                    Ok(SignInStep::Done)
                }
                Some(cause) => Err(failed(cause)),
            },
            _ => Err(failed(format!("it did not finish within {} s", ANSWER_WAIT.as_secs()))),
        };
    }
    if let Some(prompt) = board.current() {
        return Ok(step(prompt));
    }
    let mut shown = board.watch();
    shown.mark_unchanged();
    let mut ends = board.watch_ends();
    ends.mark_unchanged();
    // Only one sign-in the user asked for is queued at a time; later asks join it.
    let mut done_rx = None;
    if board.claim_user_sign_in() {
        let (done_tx, receiver) = tokio::sync::oneshot::channel();
        done_rx = Some(receiver);
        let running = source.clone();
        let SignInTarget { cancel, connect_now, .. } = target;
        tasks.spawn(async move {
            tokio::select! {
                result = running.user_sign_in() => {
                    if result.is_ok() {
                        connect_now();
                    }
                    let _ = done_tx.send(result.map(|_| ()).map_err(|error| error.to_string()));
                }
                () = cancel.cancelled() => {}
            }
            running.board().release_user_sign_in();
        });
    }
    let spawned = done_rx.is_some();
    let done = async {
        match done_rx {
            Some(receiver) => receiver.await.unwrap_or_else(|_| Err("the upstream stopped".to_owned())),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(done);
    let deadline = tokio::time::sleep(ANSWER_WAIT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            changed = shown.changed() => {
                if changed.is_err() {
                    return Err(failed("the upstream stopped".to_owned()));
                }
                if let Some(prompt) = shown.borrow_and_update().clone() {
                    return Ok(step(prompt));
                }
            }
            changed = ends.changed() => {
                if changed.is_err() {
                    return Err(failed("the upstream stopped".to_owned()));
                }
                // A sign-in that ended: success serves this ask too; a failure ends it
                // unless the sign-in this ask queued is still to run.
                match ends.borrow_and_update().1.clone() {
                    None => return Ok(SignInStep::Done),
                    Some(cause) if !spawned => return Err(failed(cause)),
                    Some(_) => {}
                }
            }
            result = &mut done => return result.map(|()| SignInStep::Done).map_err(failed),
            () = &mut deadline => return Err(failed(format!(
                "no sign-in URL within {} s; another foxxy-bridge process may be signing in to it, finish that one",
                ANSWER_WAIT.as_secs()
            ))),
        }
    }
}

fn step(prompt: SignInPrompt) -> SignInStep {
    SignInStep::Open { url: prompt.url, user_code: prompt.user_code, accepts_paste: prompt.accepts_paste }
}
