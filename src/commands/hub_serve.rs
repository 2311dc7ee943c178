//! `foxxy-bridge hub serve`: run the hub of the config file, which serves its `shared`
//! upstreams to every bridge of that config (`hub`). A bridge starts it detached when it
//! finds none; it is not meant to be run by hand, though it may be.
//!
//! Logging starts tagged `hub`; SIGTERM, SIGINT and SIGHUP stop it like `hub stop` does.

use tokio_util::sync::CancellationToken;

use super::{Context, Outcome, stdio::spawn_signal_watch};
use crate::{descriptor_limit, hub, hub_socket::HubAddress, logging};

pub async fn run(context: &Context) -> anyhow::Result<Outcome> {
    logging::tag_process("hub");
    let settings = context.load_settings()?;
    let _log = context.start_logging(Some(&settings), true);
    let address = HubAddress::for_config(&context.paths, &settings.source);
    let oauth = context.sign_in_context(&settings)?;
    match descriptor_limit::raise() {
        Ok(limit) => tracing::debug!(limit, "open descriptors allowed"),
        Err(error) => tracing::warn!("cannot raise the limit on open descriptors: {error}"),
    }
    let stop = CancellationToken::new();
    spawn_signal_watch(stop.clone())?;
    hub::serve(address, settings, oauth, stop).await?;
    Ok(Outcome::Success)
}
