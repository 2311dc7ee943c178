//! The catalog task: it rebuilds the [`Catalog`] from every new view of the upstreams
//! (or new settings), keeps search mode's index when the tools did not change, and
//! tells the client which lists changed (`notifications/*/list_changed`; in search mode,
//! only when the listed tools changed).

use std::sync::Arc;

use rmcp::model::{
    PromptListChangedNotification, ResourceListChangedNotification, ServerNotification,
    ToolListChangedNotification,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    Catalog,
    catalog::{Naming, search::SearchMode},
    link::DownstreamLink,
};
use crate::{config::Settings, upstream::View};

/// Rebuild the catalog whenever an upstream changes, and tell the client which lists
/// changed.
pub(super) async fn maintain_catalog(
    mut view: watch::Receiver<Arc<View>>,
    mut settings: watch::Receiver<Arc<Settings>>,
    catalog: watch::Sender<Arc<Catalog>>,
    naming: Naming,
    link: Arc<DownstreamLink>,
    cancel: CancellationToken,
) {
    loop {
        let snapshot = view.borrow_and_update().clone();
        let current = settings.borrow_and_update().clone();
        let mut next = Catalog::build(&snapshot, &current, naming);
        let previous = catalog.borrow().clone();
        next.search = SearchMode::follow(previous.search.as_ref(), &previous, &next, &current.bridge);
        // In search mode the client sees the listed tools only: the others may come and
        // go without a notification, since it finds them by searching.
        let tools_changed = match (&previous.search, &next.search) {
            (Some(before), Some(after)) => before.listed_objects != after.listed_objects,
            (None, None) => previous.tool_objects != next.tool_objects,
            _ => true,
        };
        let prompts_changed = previous.prompts != next.prompts;
        let resources_changed =
            previous.resources != next.resources || previous.resource_templates != next.resource_templates;
        catalog.send_replace(Arc::new(next));
        if let Some(peer) = link.peer() {
            let mut notifications = Vec::new();
            if tools_changed {
                notifications.push(ServerNotification::ToolListChangedNotification(
                    ToolListChangedNotification::default(),
                ));
            }
            if prompts_changed {
                notifications.push(ServerNotification::PromptListChangedNotification(
                    PromptListChangedNotification::default(),
                ));
            }
            if resources_changed {
                notifications.push(ServerNotification::ResourceListChangedNotification(
                    ResourceListChangedNotification::default(),
                ));
            }
            for notification in notifications {
                let _ = peer.send_notification(notification).await;
            }
        }
        tokio::select! {
            changed = view.changed() => if changed.is_err() { break },
            changed = settings.changed() => if changed.is_err() { break },
            () = cancel.cancelled() => break,
        }
    }
}
