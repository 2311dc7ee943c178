//! [`PromptBoard`]: what the sign-in under way for one upstream asks of the user, for
//! surfaces other than stderr (the placeholder tool an MCP client calls): the URL to
//! open, the device code to enter, and the addresses or codes the user hands back.
//!
//! The sign-in (`flow.rs`, `device.rs`) writes the prompt; readers watch it. A paste is
//! taken only while a sign-in waits for one, and each sign-in that ran reports how it
//! ended, so the caller that handed in a paste learns whether it worked.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Mutex, mpsc, watch};

/// What the user must do to finish the sign-in under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInPrompt {
    /// The URL to open in a browser.
    pub url: String,
    /// For the device grant: the code to enter on that page.
    pub user_code: Option<String>,
    /// The address the browser ended on (or just its code) may be handed back.
    pub accepts_paste: bool,
}

/// How many pastes may wait for the sign-in to read them.
const PASTE_QUEUE: usize = 4;

/// The prompt of one upstream's sign-in, shared by the sign-in and its readers.
pub struct PromptBoard {
    shown: watch::Sender<Option<SignInPrompt>>,
    /// How many sign-ins ran to their end, and why the last one failed (`None`: it
    /// signed in).
    ended: watch::Sender<(u64, Option<String>)>,
    pasted_tx: mpsc::Sender<String>,
    pasted_rx: Mutex<mpsc::Receiver<String>>,
    /// A sign-in the user asked for is queued or running.
    user_pending: AtomicBool,
}

impl Default for PromptBoard {
    fn default() -> Self {
        let (pasted_tx, pasted_rx) = mpsc::channel(PASTE_QUEUE);
        Self {
            shown: watch::Sender::new(None),
            ended: watch::Sender::new((0, None)),
            pasted_tx,
            pasted_rx: Mutex::new(pasted_rx),
            user_pending: AtomicBool::new(false),
        }
    }
}

impl PromptBoard {
    /// The prompt of the sign-in under way, if one is waiting for the user.
    pub fn current(&self) -> Option<SignInPrompt> {
        self.shown.borrow().clone()
    }

    /// Watch the prompt change.
    pub fn watch(&self) -> watch::Receiver<Option<SignInPrompt>> {
        self.shown.subscribe()
    }

    /// Watch sign-ins end: a count, and the last one's failure.
    pub fn watch_ends(&self) -> watch::Receiver<(u64, Option<String>)> {
        self.ended.subscribe()
    }

    /// Hand `text` (an address or a bare code) to the sign-in waiting for one; `false`
    /// when none waits for a paste.
    pub fn paste(&self, text: String) -> bool {
        self.current().is_some_and(|prompt| prompt.accepts_paste) && self.pasted_tx.try_send(text).is_ok()
    }

    /// Mark a sign-in the user asked for as queued; `false` when one already is, so
    /// repeated asks join it instead of queueing more.
    pub fn claim_user_sign_in(&self) -> bool {
        !self.user_pending.swap(true, Ordering::AcqRel)
    }

    /// The sign-in the user asked for has ended.
    pub fn release_user_sign_in(&self) {
        self.user_pending.store(false, Ordering::Release);
    }

    /// Show `prompt`; pastes meant for an earlier sign-in are dropped.
    pub(super) fn show(&self, prompt: SignInPrompt) {
        if let Ok(mut pasted) = self.pasted_rx.try_lock() {
            while pasted.try_recv().is_ok() {}
        }
        self.shown.send_replace(Some(prompt));
    }

    /// The sign-in that showed a prompt ended; `failure` says why it did not sign in.
    pub(super) fn end(&self, failure: Option<String>) {
        self.shown.send_replace(None);
        self.ended.send_modify(|(count, last)| {
            *count += 1;
            *last = failure;
        });
    }

    /// The next paste; waits for ever (the sign-in's own timeout bounds it).
    pub(super) async fn next_paste(&self) -> String {
        let mut pasted = self.pasted_rx.lock().await;
        match pasted.recv().await {
            Some(text) => text,
            // The board holds a sender, so the channel never closes.
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(accepts_paste: bool) -> SignInPrompt {
        SignInPrompt { url: "http://127.0.0.1/authorize".to_owned(), user_code: None, accepts_paste }
    }

    #[tokio::test]
    async fn pastes_reach_only_a_sign_in_that_waits_for_one() {
        let board = PromptBoard::default();
        assert!(!board.paste("early".to_owned()), "no sign-in under way");
        board.show(prompt(false));
        assert!(!board.paste("device".to_owned()), "the device grant takes no paste");
        board.show(prompt(true));
        assert!(board.paste("stale".to_owned()));
        // A new sign-in drops what was pasted for the one before.
        board.show(prompt(true));
        assert!(board.paste("fresh".to_owned()));
        assert_eq!(board.next_paste().await, "fresh");

        let mut ends = board.watch_ends();
        board.end(Some("denied".to_owned()));
        assert!(ends.has_changed().unwrap_or(false));
        assert_eq!(*ends.borrow_and_update(), (1, Some("denied".to_owned())));
        assert_eq!(board.current(), None);
        assert!(board.claim_user_sign_in());
        assert!(!board.claim_user_sign_in(), "one queued at a time");
        board.release_user_sign_in();
        assert!(board.claim_user_sign_in());
    }
}
