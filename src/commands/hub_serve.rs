//! `foxxy-bridge hub serve`: the hub of one config file, serving its shared upstreams to
//! every bridge of the user over a Unix socket.

use super::{Context, Outcome};

pub async fn run(context: &Context) -> anyhow::Result<Outcome> {
    let _ = context;
    anyhow::bail!("hub serve: not yet built")
}
